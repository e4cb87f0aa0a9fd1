"""Command line: `diffusionforge train | sample | eval | info | ema | demo`.

Parses and validates arguments, then calls train/ and pipelines/; no math here. Every problem a
person can cause ends in one line on stderr, `error: ...`, and exit code 2 (3 when training
diverged); tracebacks are kept for bugs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from diffusionforge import (
    cli_audio,
    cli_generate,
    cli_prompts,
    cli_schedule,
    cli_serve,
    cli_text,
)
from diffusionforge.errors import ConfigError, TrainingDiverged, UserError

EXIT_USAGE, EXIT_DIVERGED = 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        self.exit(EXIT_USAGE, f"error: {message} (see `{self.prog} --help`)\n")


# --- train ----------------------------------------------------------------------------------


def _cmd_train(args) -> int:
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.data.toy import TOY_SETS
    from diffusionforge.train.config import (
        apply_overrides,
        load_config_file,
        load_preset,
        parse_duration,
        preset_names,
    )
    from diffusionforge.train.datasets import IMAGE_KINDS
    from diffusionforge.train.trainer import Trainer

    if args.list_presets:
        print("\n".join(preset_names()))
        return 0
    if args.preset and args.config:
        raise ConfigError("give --preset or --config, not both")
    if not args.preset and not args.config:
        raise ConfigError(
            f"give --preset NAME or --config FILE (presets: {', '.join(preset_names())})"
        )
    cfg = load_preset(args.preset) if args.preset else load_config_file(args.config)
    overrides = list(args.set or [])
    if args.data:
        images = cfg.data.kind in IMAGE_KINDS
        if args.data in TOY_SETS and not Path(args.data).exists():
            overrides += ["data.kind=toy", f"data.name={args.data}"]
        elif args.data in ("digits", "glyphs") and not Path(args.data).exists():
            overrides += [f"data.kind={args.data}"]
        else:
            if not Path(args.data).exists():
                raise UserError(f"--data {args.data}: no such file or folder")
            # a folder is an image folder; a .npy is images when the preset trains on images
            kind = "images" if Path(args.data).is_dir() or images else "npy"
            kind = "audio" if cfg.data.kind in ("spoken-digits", "audio") else kind  # audio folder
            kind = "captions" if cfg.data.kind in ("scenes", "captions") else kind  # captioned
            overrides += [f"data.kind={kind}", f"data.path={args.data}"]
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    cfg = apply_overrides(cfg, overrides)
    if args.max_time:
        parse_duration(args.max_time)
    if args.max_cpu_time:
        parse_duration(args.max_cpu_time, "--max-cpu-time")
    if args.until_step is not None and args.until_step <= 0:
        raise ConfigError(f"--until-step: expected a positive step, got {args.until_step}")
    if args.no_progress:
        cfg.train.progress = False
    name = cfg.preset or Path(args.config).stem
    run_dir = Path(args.run_dir or Path("runs") / name)
    if args.resume and args.resume != "auto" and not Path(args.resume).exists():
        raise UserError(f"--resume {args.resume}: no such checkpoint (use a path or 'auto')")
    trainer = Trainer(
        cfg,
        run_dir,
        resume=args.resume,
        until_step=args.until_step,
        max_time=args.max_time,
        max_cpu_time=args.max_cpu_time,
        log=_log,
    )
    result = trainer.fit()
    if trainer.acc.is_main_process:
        words = {
            "done": "finished",
            "stopped": "stopped at --until-step",
            "time": "stopped by the time budget",
            "interrupted": "interrupted",
        }[result.status]
        print(
            f"{words} at step {result.step}/{cfg.train.steps} in {result.seconds:.1f}s, "
            f"loss {result.loss:.4f}; checkpoint: {result.checkpoint}"
        )
        # deferred: loaded only when this command runs, so `--help` stays fast
        from diffusionforge.cli_latent import train_summary

        if summary := train_summary(result.checkpoint):
            print(summary)
    return 0


def _log(message: str) -> None:
    # deferred: loaded only when this command runs, so `--help` stays fast
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


# --- sample ---------------------------------------------------------------------------------


def _cmd_sample(args) -> int:
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge import cli_diffusers

    if cli_diffusers.handles(args.checkpoint):  # a folder made with diffusers
        return cli_diffusers.cmd_sample(args)
    # deferred: loaded only when this command runs, so `--help` stays fast
    import numpy as np

    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.core.samplers import SAMPLERS
    from diffusionforge.core.schedules import SCHEDULES
    from diffusionforge.limits import check_values
    from diffusionforge.pipelines.generate import load_pipeline
    from diffusionforge.pipelines.outputs import (
        atomic_write,
        check_finite_output,
        output_or_nothing,
    )
    from diffusionforge.pipelines.text import is_text_checkpoint
    from diffusionforge.plot import picture, save_png

    if is_text_checkpoint(args.checkpoint):
        raise UserError(f"{args.checkpoint}: a text model; use `diffusionforge generate-text`")
    if args.n is not None and args.n <= 0:
        raise UserError(f"--n: expected a positive number of samples, got {args.n}")
    if args.threads <= 0:
        raise UserError(f"--threads: expected a positive number, got {args.threads}")
    if args.nfe is not None and args.nfe <= 0:
        raise UserError(f"--nfe: expected a positive number of steps, got {args.nfe}")
    if args.sampler and args.sampler not in SAMPLERS:
        raise UserError(f"--sampler: expected one of {', '.join(SAMPLERS)}, got {args.sampler!r}")
    if args.schedule and args.schedule not in SCHEDULES:
        raise UserError(
            f"--schedule: expected one of {', '.join(SCHEDULES)}, got {args.schedule!r}"
        )
    # deferred: loaded only when this command runs, so `--help` stays fast
    import torch

    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise UserError(f"--device: expected cpu, cuda or cuda:N, got {args.device!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: no CUDA device is available here")
    out = Path(args.out or "samples.npy")
    if out.suffix not in (".npy", ".png"):
        raise UserError(f"--out {out}: expected a .npy or .png file name")
    _check_writable_dir(out.parent, f"--out {out}")
    if args.like is not None:
        _apply_like(args)
    torch.set_num_threads(args.threads)  # CPU results depend on it; recorded in image metadata
    pipe = load_pipeline(args.checkpoint, use_ema=not args.no_ema)
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.cli_latent import check_samplable, edit_inputs

    check_samplable(pipe, args)
    args.edit = edit_inputs(args, pipe)
    if args.out is None and len(pipe.shape) == 3:
        out = Path("samples.png")
    if len(pipe.shape) == 3:
        return _sample_images(args, pipe, out)
    if args.cls is not None or args.guidance is not None or args.like is not None:
        raise UserError(
            f"--class/--guidance/--like: {args.checkpoint} is not an image model "
            f"(examples of shape {pipe.shape})"
        )
    args.n = args.n or 1000
    check_values(args.n, math.prod(pipe.shape))
    samples = pipe.generate(
        args.n,
        nfe=args.nfe,
        sampler=args.sampler,
        schedule=args.schedule,
        seed=args.seed,
        device=args.device,
    )
    check_finite_output(samples, str(pipe.checkpoint.path))
    if out.suffix == ".npy":
        atomic_write(out, lambda f: np.save(f, samples.numpy()), f"--out {out}")
    else:
        image = picture([(f"samples, step {pipe.checkpoint.step}", samples)])
        if image is None:
            raise UserError(
                f"--out {out}: examples of shape {pipe.shape} have no picture; use .npy"
            )
        with output_or_nothing(out, f"--out {out}"):
            save_png(image, out)
    print(
        f"wrote {args.n} samples of shape {pipe.shape} from {pipe.checkpoint.path} "
        f"({pipe.weights} weights) to {out}"
    )
    return 0


def _apply_like(args) -> None:
    """--like IMAGE.png: take seed, class, guidance, sampler, schedule, NFE and threads from the
    PNG's metadata (flags given explicitly must agree), to regenerate that image."""
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.pipelines.images import read_metadata

    if not Path(args.like).is_file():
        raise UserError(f"--like {args.like}: no such file")
    try:
        rec = read_metadata(args.like)
    except ValueError as e:
        raise UserError(f"--like {e}") from None
    wanted = {
        "seed": rec["seed"],
        "cls": None if rec["class"] is None else str(rec["class"]),
        "guidance": rec["guidance"],
        "sampler": rec["sampler"],
        "schedule": rec["schedule"],
        "nfe": rec["nfe"],
    }
    for key, value in wanted.items():
        setattr(args, key, value)
    args.n, args.threads = 1, int(rec.get("threads", args.threads))
    args.like_sha = rec.get("checkpoint_sha256")
    if rec.get("edited"):
        raise UserError(
            f"--like {args.like}: made by img2img/inpainting; rerun its command with the same "
            f"--init-image/--mask and --strength {rec.get('strength')}"
        )


def _parse_classes(text: str, pipe) -> list[int]:
    """'3', '3,7', 'A,b' (class names) or 'all' -> label indices; one-line error otherwise."""
    if pipe.num_classes == 0:
        raise UserError(f"--class: {pipe.checkpoint.path} is an unconditional model")
    if text == "all":
        return list(range(pipe.num_classes))
    out = []
    for part in text.split(","):
        part = part.strip()
        if part in pipe.classes:
            out.append(pipe.classes.index(part))
        elif part.isdigit() and int(part) < pipe.num_classes:
            out.append(int(part))
        else:
            names = ", ".join(pipe.classes[:12]) + (", ..." if pipe.num_classes > 12 else "")
            raise UserError(
                f"--class {part!r}: expected a class name ({names}), an index below "
                f"{pipe.num_classes}, or 'all'"
            )
    return out


def _sample_images(args, pipe, out: Path) -> int:
    # deferred: loaded only when this command runs, so `--help` stays fast
    import numpy as np

    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.limits import check_values
    from diffusionforge.pipelines.images import ImageRequest, draw, weights_sha256, write_images
    from diffusionforge.pipelines.outputs import (
        atomic_write,
        check_finite_output,
        output_or_nothing,
    )

    guidance = pipe.cfg.sample.guidance if args.guidance is None else args.guidance
    if not guidance >= 0 or guidance > 100:
        raise UserError(f"--guidance: expected a number in [0, 100], got {guidance}")
    if pipe.num_classes == 0 and args.guidance is not None and guidance != 1:
        raise UserError(
            f"--guidance: {pipe.checkpoint.path} is unconditional; guidance needs labels"
        )
    if pipe.num_classes == 0:
        guidance = 1.0
    sha = getattr(args, "like_sha", None)
    if sha and sha != weights_sha256(pipe):
        raise UserError(
            f"--like {args.like}: made by other weights (sha256 {sha[:12]}...), not by "
            f"{pipe.checkpoint.path} ({pipe.weights})"
        )
    edit = getattr(args, "edit", None)  # img2img / inpainting inputs (cli_latent)
    plan = pipe.plan(
        args.nfe, args.sampler, args.schedule, inpainting=bool(edit and edit.mask is not None)
    )
    nfe, sampler, schedule = plan.nfe, plan.sampler, plan.schedule
    if pipe.num_classes:
        classes = _parse_classes(args.cls or "all", pipe)
        per = args.n // len(classes) if args.n else 10
        n = args.n or per * len(classes)
        if per == 0:
            raise UserError(f"--n {n}: fewer than the {len(classes)} requested classes")
        labels = [classes[min(i // per, len(classes) - 1)] for i in range(n)]
        cols = per if n == per * len(classes) else min(n, 10)
    else:
        if args.cls is not None:
            _parse_classes(args.cls, pipe)  # raises: unconditional
        n, labels = args.n or 64, None
        cols = min(n, int(n**0.5 + 0.999))
    req = ImageRequest(args.seed, labels, guidance, plan, args.device, edit)
    check_values(n, math.prod(pipe.image_shape))
    images = draw(pipe, req, n)
    check_finite_output(images, str(pipe.checkpoint.path))
    if out.suffix == ".npy":
        atomic_write(out, lambda f: np.save(f, images.numpy()), f"--out {out}")
        print(f"wrote {n} images of shape {pipe.image_shape} to {out}")
        return 0
    with output_or_nothing(out, f"--out {out}"):
        singles = write_images(pipe, req, images, out, cols)
    print(
        f"wrote a grid of {n} images to {out} and single PNGs to {singles[0].parent}/ "
        f"({sampler}, {schedule}, NFE {nfe}, guidance {guidance:g}, seeds "
        f"{args.seed}..{args.seed + n - 1}, {pipe.weights} weights of {pipe.checkpoint.path})"
    )
    return 0


def _check_writable_dir(folder: Path, what: str) -> None:
    folder = folder if str(folder) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"{what}: folder {folder} is not writable ({e.strerror})") from None


# --- eval -----------------------------------------------------------------------------------


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{flag}: expected comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) <= 0:
        raise UserError(f"{flag}: expected positive numbers, got {text!r}")
    return values


def _cmd_eval(args) -> int:
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge import cli_diffusers

    if cli_diffusers.handles(args.checkpoint):  # a folder made with diffusers
        return cli_diffusers.cmd_eval(args)
    # deferred: loaded only when this command runs, so `--help` stays fast
    import torch

    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge import cli_text
    from diffusionforge.pipelines.text import is_text_checkpoint

    if is_text_checkpoint(args.checkpoint):
        return cli_text.cmd_eval_text(args)
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge import cli_latent

    if cli_latent.is_autoencoder(args.checkpoint):
        return cli_latent.cmd_eval_autoencoder(args)
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.core.samplers import SAMPLERS
    from diffusionforge.limits import check_list
    from diffusionforge.pipelines.evaluate import EvalSettings, evaluate, extractor_for
    from diffusionforge.pipelines.generate import load_pipeline
    from diffusionforge.train.datasets import build_dataset

    for flag, value in (("--n", args.n), ("--sweep-n", args.sweep_n), ("--threads", args.threads)):
        if value <= 0:
            raise UserError(f"{flag}: expected a positive number, got {value}")
    if args.n < 2 or args.sweep_n < 2:
        raise UserError("--n / --sweep-n: statistics need at least 2 samples")
    if args.nfe is not None and args.nfe <= 0:
        raise UserError(f"--nfe: expected a positive number of steps, got {args.nfe}")
    if args.guidance is not None and not 0 <= args.guidance <= 100:
        raise UserError(f"--guidance: expected a number in [0, 100], got {args.guidance}")
    if not 0 < args.alpha < 1:
        raise UserError(f"--alpha: expected a number in (0, 1), got {args.alpha}")
    samplers = [v.strip() for v in args.sweep_samplers.split(",") if v.strip()]
    for name in samplers + ([args.sampler] if args.sampler else []):
        if name not in SAMPLERS and not (name == "recommended" and name in samplers):
            raise UserError(
                f"--sampler / --sweep-samplers: unknown sampler {name!r} "
                f"(expected one of {', '.join(SAMPLERS)})"
            )
    nfes = _int_list(args.sweep_nfe, "--sweep-nfe") if samplers else []
    check_list(nfes, "--sweep-nfe", bound="nfe")
    if args.inception_weights and not Path(args.inception_weights).is_file():
        raise UserError(f"--inception-weights {args.inception_weights}: no such file")
    torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.checkpoint, use_ema=not args.no_ema)
    if len(pipe.shape) != 3:
        raise UserError(f"{args.checkpoint}: eval is for image models; this one makes {pipe.shape}")
    data = build_dataset(cli_latent.pixel_config(pipe.cfg))  # a latent model's data as pixels
    if not args.inception_weights and data.labels is None:
        raise UserError(
            f"{args.checkpoint}: its data has no labels to train the classifier features on; "
            "give --inception-weights FILE"
        )
    ckpt_path = pipe.checkpoint.path
    default = (  # <run>/eval for a run's checkpoint; eval-<name> here for any other folder
        ckpt_path.parent.parent / "eval"
        if ckpt_path.parent.name == "checkpoints"
        else Path(f"eval-{ckpt_path.name}")
    )
    out = Path(args.out) if args.out else default
    _check_writable_dir(out, f"--out {out}")
    try:
        extractor = extractor_for(data.data, data.labels, args.inception_weights, _log)
    except (ValueError, FileNotFoundError) as e:
        raise UserError(f"--inception-weights: {str(e).splitlines()[0]}") from None
    settings = EvalSettings(
        n=args.n,
        nfe=args.nfe or pipe.cfg.sample.nfe,
        sampler=args.sampler,
        guidance=pipe.cfg.sample.guidance if args.guidance is None else args.guidance,
        seed=args.seed,
        sweep_samplers=samplers,
        sweep_nfe=nfes,
        sweep_n=args.sweep_n,
        alpha=args.alpha,
    )
    evaluate(pipe, data.data, extractor, settings, out, _log)
    print(f"wrote metrics.json, sweep.csv, sweep.png, samples.png, memorization.png to {out}")
    return 0


# --- info -----------------------------------------------------------------------------------


def _cmd_info(args) -> int:
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge import cli_diffusers

    if cli_diffusers.handles(args.checkpoint):  # a folder made with diffusers
        return cli_diffusers.cmd_info(args)
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.train.checkpoint import list_checkpoints, resolve_checkpoint
    from diffusionforge.train.loading import split_config

    ckpt = resolve_checkpoint(args.checkpoint)
    cfg, shape = split_config(ckpt.config, str(ckpt.path))
    header = ckpt.config["diffusionforge"]
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.train.builders import check_weights_fit

    rel = "model.safetensors"  # a forged config that its weights cannot fill is refused here too
    counted = check_weights_fit(cfg, shape, ckpt.files[rel], str(ckpt.path / rel))
    if args.json:
        print(json.dumps({"path": str(ckpt.path), "step": ckpt.step, **ckpt.config}, indent=2))
        return 0
    d, f, m = cfg.data, cfg.formulation, cfg.model
    data = {
        "toy": f"toy set {d.name!r} ({d.size} points)",
        "digits": "built-in digits (8x8)",
        "glyphs": "built-in glyphs (32x32)",
    }.get(d.kind, d.path)
    if m.num_classes > 0:
        data += f", {m.num_classes} classes"
    state = "yes" if ckpt.has("training_state/state.json") else "no"
    n_params = header.get("parameters")
    if not isinstance(n_params, int) or isinstance(n_params, bool):  # count them instead
        n_params = counted
    lines = [
        f"checkpoint   {ckpt.path}",
        f"step         {ckpt.step} of {cfg.train.steps}   (training state for resume: {state})",
        f"model        {m.kind}, {n_params:,} parameters, example shape {tuple(shape)}",
        f"data         {data}, {header.get('examples', '?')} examples, augment={d.augment}",
        f"formulation  {f.kind}" + (f" (sigma_data={f.sigma_data})" if f.kind == "edm" else ""),
        f"ema          {cfg.ema.kind}"
        + (f" (decay {cfg.ema.decay})" if cfg.ema.kind == "classic" else "")
        + (f" (sigma_rel {cfg.ema.stds})" if cfg.ema.kind == "power" else ""),
        f"optimizer    {cfg.optim.name}, lr {cfg.optim.lr:g}, batch {cfg.train.batch_size}",
        f"sampling     sampler={cfg.sample.sampler}, nfe={cfg.sample.nfe}",
        f"preset       {cfg.preset or '(config file)'}",
    ]
    run = ckpt.path.parent.parent
    others = list_checkpoints(run) if ckpt.path.parent.name == "checkpoints" else []
    if others:
        lines.append(f"in this run  {', '.join(p.name for p in others)}")
    print("\n".join(lines))
    return 0


# --- post-hoc EMA ---------------------------------------------------------------------------


def _cmd_ema(args) -> int:
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.train.checkpoint import (
        resolve_checkpoint,
        tensors_to_bytes,
        write_folder,
    )
    from diffusionforge.train.ema import posthoc_ema

    if not 0 < args.sigma_rel < 0.2887:
        raise UserError(f"--sigma-rel: expected a number in (0, 0.2887), got {args.sigma_rel}")
    if args.step is not None and args.step <= 0:
        raise UserError(f"--step: expected a positive step, got {args.step}")
    target = Path(args.out)
    if target.exists() and not (
        target.is_dir() and ((target / "manifest.json").is_file() or not any(target.iterdir()))
    ):  # never replace a file or a folder of other things by a checkpoint
        raise UserError(f"--out {target}: exists and is not a checkpoint folder; name a new one")
    run = Path(args.run)
    snapshots = run / "phema"
    if not snapshots.is_dir() or not any(snapshots.glob("phema-*.safetensors")):
        raise UserError(
            f"{run}: no post-hoc EMA snapshots; train with ema.kind=power and "
            "ema.snapshot_every > 0"
        )
    ckpt = resolve_checkpoint(run)
    state = posthoc_ema(snapshots, args.sigma_rel, step=args.step)
    out = Path(args.out)
    files = {rel: ckpt.files[rel] for rel in ("model.safetensors", "config.json")}
    files["ema.safetensors"] = tensors_to_bytes(state, {"sigma_rel": args.sigma_rel})
    write_folder(out, files, step=args.step or ckpt.step)
    print(f"wrote post-hoc EMA (sigma_rel {args.sigma_rel}) to {out}")
    return 0


# --- demo -----------------------------------------------------------------------------------


def _cmd_demo(args) -> int:
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.demo import SECTIONS, run_demo

    for name in args.section or []:
        if name not in SECTIONS:
            raise UserError(f"--section: expected one of {', '.join(SECTIONS)}, got {name!r}")
    _check_writable_dir(Path(args.out), f"--out {args.out}")
    return run_demo(Path(args.out), sections=args.section or list(SECTIONS), quick=args.quick)


# --- entry point ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="diffusionforge", description="Train and sample diffusion models.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a model from a preset or config file")
    t.add_argument("--preset", help="named preset (see --list-presets)")
    t.add_argument("--config", help="TOML or JSON config file")
    t.add_argument(
        "--data",
        help=".npy file of shape (N, ...), an image folder, digits, glyphs or a toy set name",
    )
    t.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override, e.g. optim.lr=2e-4"
    )
    t.add_argument("--run-dir", help="run folder (default: runs/<preset>)")
    t.add_argument("--resume", help="'auto' (newest complete checkpoint of the run) or a path")
    t.add_argument("--max-time", help="wall-clock budget of this invocation, e.g. 10m or 1h30m")
    t.add_argument(
        "--max-cpu-time",
        help="CPU-time budget of the training process, e.g. 10m (comparable on a busy machine)",
    )
    t.add_argument("--steps", type=int, help="total steps (same as --set train.steps=N)")
    t.add_argument("--until-step", type=int, help="save and stop after this step")
    t.add_argument("--seed", type=int, help="same as --set train.seed=N")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--list-presets", action="store_true", help="print preset names and exit")
    t.set_defaults(func=_cmd_train)

    s = sub.add_parser("sample", help="draw samples from a checkpoint")
    s.add_argument("checkpoint", help="checkpoint folder, or a run folder (its newest)")
    s.add_argument(
        "--n", type=int, help="number of samples (default 1000; images: 10 per class or 64)"
    )
    s.add_argument(
        "--class",
        dest="cls",
        help="image models: class names or indices, comma-separated, or 'all' (default)",
    )
    s.add_argument(
        "--guidance", type=float, help="classifier-free guidance scale (default: the config's)"
    )
    s.add_argument(
        "--like", help="a PNG written by `sample`: regenerate it from its metadata, bit for bit"
    )
    s.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (results depend on it)"
    )
    s.add_argument("--sampler", help=sampler_help())
    s.add_argument("--schedule", help=schedule_help())
    s.add_argument("--nfe", "--steps", type=int, dest="nfe", help="network evaluations")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--out",
        help=".npy (array) or .png (picture; image models also write single PNGs in a folder "
        "named like it); default samples.npy, or samples.png for image models",
    )
    s.add_argument("--no-ema", action="store_true", help="use raw weights, not the EMA")
    s.add_argument("--device", default="cpu")
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge import cli_latent

    cli_latent.add_sample_flags(s)  # --init-image, --strength, --mask
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge import cli_diffusers

    cli_diffusers.add_dtype_flag(s)
    s.set_defaults(func=_cmd_sample)

    v = sub.add_parser("eval", help="FID/KID/precision-recall, NFE sweep, memorization")
    v.add_argument("checkpoint", help="image model checkpoint folder, or a run folder")
    v.add_argument("--n", type=int, default=1000, help="samples for the headline metrics")
    v.add_argument("--nfe", type=int, help="NFE for the headline metrics (default: config's)")
    v.add_argument("--sampler", help="sampler for the headline metrics (default: recommended)")
    v.add_argument("--guidance", type=float, help="guidance scale (default: config's)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument(
        "--sweep-samplers",
        default="recommended,euler,heun,dpmpp_2m",
        help="comma-separated; 'recommended' is the default pair per NFE; each named sampler "
        "runs its own default schedule; empty: none (default: %(default)s)",
    )
    v.add_argument("--sweep-nfe", default="4,8,16,32", help="comma-separated NFE values")
    v.add_argument("--sweep-n", type=int, default=500, help="samples per sweep point")
    v.add_argument("--alpha", type=float, default=1 / 3, help="memorization: d1 < alpha * d2")
    v.add_argument("--inception-weights", help="Inception-v3 .pth/.safetensors (else classifier)")
    v.add_argument("--out", help="output folder (default: <run>/eval, or ./eval-<folder name>)")
    v.add_argument("--no-ema", action="store_true", help="use raw weights, not the EMA")
    v.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    v.add_argument("--data", help="diffusers folders: the data to compare with (digits, glyphs)")
    cli_diffusers.add_dtype_flag(v)
    v.set_defaults(func=_cmd_eval)

    i = sub.add_parser("info", help="describe a checkpoint")
    i.add_argument("checkpoint", help="checkpoint folder, or a run folder (its newest)")
    i.add_argument("--json", action="store_true", help="print the full config as JSON")
    cli_diffusers.add_dtype_flag(i)
    i.set_defaults(func=_cmd_info)

    e = sub.add_parser("ema", help="rebuild an EMA of any width from power-EMA snapshots")
    e.add_argument("run", help="run folder trained with ema.kind=power")
    e.add_argument("--sigma-rel", type=float, required=True, help="EMA width, e.g. 0.08")
    e.add_argument("--step", type=int, help="reconstruct at this step (default: last snapshot)")
    e.add_argument("--out", required=True, help="new checkpoint folder")
    e.set_defaults(func=_cmd_ema)

    d = sub.add_parser("demo", help="train and sample built-in models; write pictures")
    d.add_argument("--out", default="runs/demo", help="output folder")
    d.add_argument("--section", action="append", help="run only this section")
    d.add_argument("--quick", action="store_true", help="a few seconds per section (for tests)")
    d.set_defaults(func=_cmd_demo)
    # The other modalities' commands live in their own modules, each adding its subcommands.
    for module in (cli_generate, cli_prompts, cli_text, cli_audio, cli_serve, cli_schedule):
        module.add_commands(sub)
    return p


def _schedule_defaults() -> str:
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.core.samplers import SAMPLER_INFO

    by: dict[str, list[str]] = {}
    for name, info in SAMPLER_INFO.items():
        by.setdefault(info.schedule, []).append(name)
    return "; ".join(f"{', '.join(names)}: {sched}" for sched, names in by.items())


def _recommended_text() -> str:
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.core.plan import RECOMMENDED

    keys = sorted(RECOMMENDED)
    ends = [f"{k}-{n - 1}" if n - 1 > k else str(k) for k, n in zip(keys, keys[1:], strict=False)]
    ends.append(f"{keys[-1]}+")
    return ", ".join(f"{RECOMMENDED[k][0]} at NFE {e}" for k, e in zip(keys, ends, strict=True))


def sampler_help() -> str:
    """--sampler's help: the recommended sampler per NFE (core.plan.RECOMMENDED)."""
    return f"sampler name (default: recommended for the NFE: {_recommended_text()})"


def schedule_help() -> str:
    """--schedule's help: which schedule runs when none is named (core.plan.default_schedule)."""
    return (
        "noise schedule name (default: a checkpoint's fitted schedule for the sampler if it has "
        "one, else the recommended pair's, or with another --sampler that sampler's own: "
        + _schedule_defaults().replace("%", "%%")
        + ")"
    )


def _flag_spellings(parser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """dest -> the flag a person typed for it (`--nfe`), for the chosen subcommand."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            sub = action.choices[command]
            return {a.dest: (a.option_strings or [a.dest])[0] for a in sub._actions}
    return {}


def main(argv: list[str] | None = None) -> int:
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.limits import check_cli_args

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_cli_args(args, _flag_spellings(parser, args.command))
        return args.func(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # the disk, permissions, a vanished file: the machine, not a bug
        # deferred: loaded only when this command runs, so `--help` stays fast
        from diffusionforge.train.checkpoint import describe

        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{describe(e)}", file=sys.stderr)
        return EXIT_USAGE
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
