"""`diffusionforge fit-schedule CHECKPOINT --nfe 5,8,10,16`: fit step schedules to a checkpoint's
own network and store them in it (pipelines/fitted_schedules.py). Sampling then uses them for
those NFE unless `--schedule` names another."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffusionforge.cli.common import add_device_flags
from diffusionforge.errors import UserError


def _cmd_fit_schedule(args: argparse.Namespace) -> int:
    # deferred: loaded only when this command runs, so `--help` stays fast
    import torch

    from diffusionforge.cli import diffusers as cli_diffusers
    from diffusionforge.cli import fit_schedule_targets as targets

    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.cli.common import (
        _check_writable_dir,
        _int_list,
        _parse_classes,
        on_device,
        precision,
        resolve_device,
    )
    from diffusionforge.pipelines.fitted_schedules import fit_entries, write_entries
    from diffusionforge.pipelines.pipeline import load_pipeline
    from diffusionforge.pipelines.text import is_text_checkpoint

    nfes = list(dict.fromkeys(_int_list(args.nfe, "--nfe")))  # 5,5: one entry per NFE
    if max(nfes) > 1000:
        raise UserError(f"--nfe: expected at most 1000 evaluations, got {max(nfes)}")
    if not args.seconds > 0 or args.seconds > 86400:
        raise UserError(
            f"--seconds: expected a CPU-second budget in (0, 86400], got {args.seconds}"
        )
    if args.calls is not None and not 1 <= args.calls <= 10**9:
        raise UserError(f"--calls: expected a positive number of network calls, got {args.calls}")
    if not 1 <= args.batch <= 4096:
        raise UserError(f"--batch: expected 1 to 4096 draws per network call, got {args.batch}")
    if args.threads <= 0:
        raise UserError(f"--threads: expected a positive number, got {args.threads}")
    if args.sampler is not None:
        # deferred: loaded only when this command runs, so `--help` stays fast
        from diffusionforge.core.samplers import SAMPLERS

        if args.sampler not in SAMPLERS:
            raise UserError(
                f"--sampler: unknown sampler {args.sampler!r} (one of {', '.join(SAMPLERS)})"
            )
    if cli_diffusers.handles(args.checkpoint):  # written beside the folder, never into it
        return targets.fit_diffusers(args, nfes)
    if is_text_checkpoint(args.checkpoint):
        raise UserError(f"{args.checkpoint}: a text model has no sigma schedule to fit")
    pipe = load_pipeline(args.checkpoint, use_ema=not args.no_ema)
    bundled = "diffusionforge/assets" in str(Path(pipe.checkpoint.path).resolve()).replace(
        "\\", "/"
    )
    if bundled and args.out is None:
        raise UserError(
            f"{args.checkpoint}: a model bundled with the package; give --out FOLDER to write "
            "a copy of it with its fitted schedules"
        )
    if args.out is not None:
        if Path(args.out).exists():
            raise UserError(f"--out {args.out}: already exists; name a new folder")
        _check_writable_dir(Path(args.out).parent, f"--out {args.out}")
    if pipe.cfg.model.text_encoder.kind:  # text-to-image: fitted on --prompt captions
        return targets.fit_text2image(args, nfes)
    if args.prompt:
        raise UserError(f"--prompt: {args.checkpoint} is not a text-to-image model")
    device = resolve_device(args)
    torch.set_num_threads(args.threads)
    labels = None
    if pipe.num_classes:
        classes = _parse_classes(args.cls or "all", pipe)
        labels = torch.tensor([classes[i % len(classes)] for i in range(args.batch)])
    elif args.cls is not None:
        _parse_classes(args.cls, pipe)  # raises: unconditional
    f = pipe.formulation
    denoise = on_device(f.precondition(pipe.net.eval()), pipe.net, device)
    guidance = pipe.cfg.sample.guidance if args.guidance is None else args.guidance
    if labels is not None and guidance != 1.0:  # fit what sampling runs: the guided denoiser
        # deferred: loaded only when this command runs, so `--help` stays fast
        from diffusionforge.core.guidance import cfg

        denoise = cfg(denoise, guidance, torch.full_like(labels, pipe.num_classes))

    def progress(nfe: int, d: dict) -> None:
        if d["phase"] == "search" and args.verbose:
            print(f"  NFE {nfe}: {d['cpu_seconds']:.0f} CPU-s, rms to teacher {d['rms']:.4f}")

    with torch.no_grad(), precision(args):
        entries = fit_entries(
            denoise, (args.batch, *pipe.shape), nfes, sigma_min=f.sigma_min,
            sigma_max=f.sigma_max, cond=labels, seconds=args.seconds, seed=args.seed,
            progress=progress, sampler=args.sampler, calls=args.calls,
        )  # fmt: skip
    fitted = targets.report(entries, targets.budget(args))
    for e in fitted:
        e["classes"] = None if labels is None else sorted(set(labels.tolist()))
        e["guidance"] = guidance if labels is not None else None
    path = write_entries(pipe.checkpoint, fitted, Path(args.out) if args.out else None)
    targets.wrote(path / "schedules.json", fitted)
    return 0


def add_commands(sub) -> None:
    f = sub.add_parser(
        "fit-schedule", help="fit step schedules to a checkpoint's network (per NFE)"
    )
    f.add_argument("checkpoint", help="checkpoint folder, or a run folder (its newest)")
    f.add_argument("--nfe", default="5,8,10,16", help="comma-separated NFE (default 5,8,10,16)")
    f.add_argument(
        "--class", dest="cls", help="class-conditional models: classes to fit on (default all)"
    )
    f.add_argument(
        "--guidance", type=float, help="class-conditional models: guidance (default: config's)"
    )
    f.add_argument(
        "--sampler",
        help="fit for this sampler (default: the recommended one for each NFE); sampling with "
        "--sampler NAME at that NFE then uses it",
    )
    f.add_argument("--seconds", type=float, default=60.0, help="CPU seconds per NFE")
    f.add_argument(
        "--calls",
        type=int,
        help="budget per NFE in network calls instead of --seconds: the same sigmas on any "
        "machine (each call is one --batch of draws)",
    )
    f.add_argument("--batch", type=int, default=64, help="draws per network call")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    f.add_argument(
        "--out",
        help="write a copy of the checkpoint here instead of in place (a diffusers folder: "
        "the .json file to write; default FOLDER.schedules.json beside it, never inside)",
    )
    f.add_argument(
        "--prompt",
        action="append",
        help="text-to-image models: a caption to fit on (repeatable; cycled over the batch)",
    )
    f.add_argument("--no-ema", action="store_true", help="fit to the raw weights, not the EMA")
    f.add_argument("--verbose", action="store_true", help="print the search's progress")
    add_device_flags(f)
    f.set_defaults(func=_cmd_fit_schedule)
