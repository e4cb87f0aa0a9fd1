"""fit-schedule for models that are not a plain (class-conditional) image checkpoint: our
text-to-image checkpoints (fitted on `--prompt` captions, guided as `generate` guides) and
imported diffusers folders (written beside the folder, never into it: FOLDER.schedules.json,
or `--out FILE`). `report` prints what every fit found, held-out check included."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffusionforge.errors import UserError


def budget(args: argparse.Namespace) -> str:
    """The budget flag as given, for messages: `--calls N` or `--seconds S`."""
    return f"--calls {args.calls}" if args.calls is not None else f"--seconds {args.seconds:g}"


def report(entries: list[dict], given: str) -> list[dict]:
    """Print each fit (sigmas, budget, held-out check) and return the entries worth writing
    (those the budget allowed to fit at all); `given` names the budget (see `budget`)."""
    fitted = []
    for e in entries:
        if e["rms_to_teacher"] is None:  # the budget did not cover one teacher batch
            print(f"NFE {e['nfe']}: {given} is too short to fit; not written")
            continue
        sig = " ".join(f"{v:.4g}" for v in e["sigmas"])
        print(
            f"NFE {e['nfe']} ({e['sampler']}, {e['steps']} steps): sigmas {sig} "
            f"({e['cpu_seconds']:.0f} CPU-s, {e['calls']} network calls, "
            f"{e['trajectories']} teacher draws, "
            f"rms to the teacher {e['rms_to_teacher']:.4f})"
        )
        h = e["heldout"]
        if h is not None:
            verdict = "kept" if e["kept"] else "not kept: the default is better"
            z = f" (gain {h['z']:.1f} standard errors)" if "z" in h else ""
            slow = h.get("ended_by") == "clock"
            clock = "; calls ran slower than measured: the clock ended the search" if slow else ""
            print(
                f"NFE {e['nfe']}: fitted {h['rms_fitted']:.4f} vs default "
                f"{h['rms_default']:.4f} on {h['trajectories']} held-out draws{z}, {verdict}"
                f"{clock}"
            )
        fitted.append(e)
    if not fitted:
        raise UserError(f"{given}: too short to fit any schedule; allow more")
    return fitted


def wrote(path: Path, fitted: list[dict]) -> None:
    kept = sum(e["kept"] for e in fitted)
    print(
        f"wrote {len(fitted)} fitted schedule(s) to {path} ({kept} kept; sampling uses the "
        "kept ones)"
    )


def _prompts(args: argparse.Namespace, batch: int) -> list[str]:
    if not args.prompt:
        raise UserError(
            f"{args.checkpoint}: a text-to-image model; give the captions to fit on with "
            "--prompt TEXT (repeatable), e.g. the kind of prompts you will generate"
        )
    for p in args.prompt:
        if not p.strip():
            raise UserError("--prompt: empty; describe an image, e.g. 'a red circle'")
    return [args.prompt[i % len(args.prompt)] for i in range(batch)]


def _fit(args, nfes, denoise, shape, cond, process) -> list[dict]:
    # deferred: loaded only when this command runs, so `--help` stays fast
    import torch

    from diffusionforge.pipelines.fitted_schedules import fit_entries

    torch.set_num_threads(args.threads)

    def progress(nfe: int, d: dict) -> None:
        if d["phase"] == "search" and args.verbose:
            print(f"  NFE {nfe}: {d['cpu_seconds']:.0f} CPU-s, rms to teacher {d['rms']:.4f}")

    with torch.no_grad():
        entries = fit_entries(
            denoise, (args.batch, *shape), nfes, sigma_min=process.sigma_min,
            sigma_max=process.sigma_max, cond=cond, seconds=args.seconds, seed=args.seed,
            progress=progress, sampler=args.sampler, calls=args.calls,
        )  # fmt: skip
    return report(entries, budget(args))


def fit_text2image(args: argparse.Namespace, nfes: list[int]) -> int:
    """Our text-to-image checkpoint: the fit draws with --prompt captions (cycled over the
    batch) and the guidance `generate` uses (--guidance, default 1), negative prompt ""."""
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.core.guidance import cfg
    from diffusionforge.pipelines.fitted_schedules import write_entries
    from diffusionforge.pipelines.text2image import load_text2image

    prompts = _prompts(args, args.batch)
    pipe = load_text2image(args.checkpoint, use_ema=not args.no_ema)
    cond = pipe.encode(prompts)
    denoise = pipe.formulation.precondition(pipe.net.eval())
    guidance = 1.0 if args.guidance is None else args.guidance
    if guidance != 1.0:
        denoise = cfg(denoise, guidance, pipe.encode([""], allow_empty=True).expand_as(cond))
    fitted = _fit(args, nfes, denoise, pipe.shape, cond, pipe.formulation)
    for e in fitted:
        e["prompts"], e["guidance"] = list(dict.fromkeys(prompts)), guidance
    path = write_entries(pipe.checkpoint, fitted, Path(args.out) if args.out else None)
    wrote(path / "schedules.json", fitted)
    return 0


def fit_diffusers(args: argparse.Namespace, nfes: list[int]) -> int:
    """An imported diffusers folder: fitted as `sample`/`generate` draw from it (its own
    denoiser, x0 clipping as its scheduler config says), written to FOLDER.schedules.json
    beside the folder or to --out FILE; the folder itself is never modified."""
    # deferred: loaded only when this command runs, so `--help` stays fast
    import torch

    from diffusionforge.cli.common import on_device
    from diffusionforge.cli.diffusers import _load
    from diffusionforge.core.guidance import cfg
    from diffusionforge.pipelines.fitted_schedules import sidecar, write_file

    out = Path(args.out).expanduser() if args.out else sidecar(args.checkpoint)
    if out.suffix != ".json" or out.is_dir():
        raise UserError(f"--out {out}: for a diffusers folder, name a .json file to write")
    model = _load(args)  # on --device, weights in --dtype, as sample/generate load it
    prompts = labels = None
    if model.is_text_to_image:
        prompts = _prompts(args, args.batch)
    elif model.num_classes:
        want = list(range(model.num_classes))
        if args.cls not in (None, "all"):
            try:
                want = [int(c) for c in args.cls.split(",")]
            except ValueError:
                raise UserError(
                    f"--class {args.cls!r}: expected indices, e.g. 3,7, or 'all'"
                ) from None
        if not want or any(not 0 <= c < model.num_classes for c in want):
            raise UserError(f"--class: expected indices below {model.num_classes}")
        labels = torch.tensor([want[i % len(want)] for i in range(args.batch)])
    elif args.cls is not None:
        raise UserError(f"--class: {args.checkpoint} is an unconditional model")
    cond, uncond = model._conds(args.batch, prompts, "", labels)
    guidance = 1.0 if args.guidance is None else args.guidance
    denoise = model.denoiser
    if guidance != 1.0:
        if uncond is None:
            raise UserError(f"--guidance: {args.checkpoint} has no unconditional branch")
        denoise = cfg(denoise, guidance, uncond)
    # the network runs on --device; the fit's own arithmetic stays on the cpu in float32
    denoise = on_device(denoise, model._net, model.device)
    fitted = _fit(args, nfes, denoise, model.shape, cond, model.process)
    for e in fitted:
        e["classes"] = None if labels is None else sorted(set(labels.tolist()))
        e["prompts"] = None if prompts is None else list(dict.fromkeys(prompts))
        e["guidance"] = guidance
    wrote(write_file(out, fitted), fitted)
    return 0
