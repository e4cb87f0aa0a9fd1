"""What every command shares: the one-line error parser (help showing defaults), exit codes,
output checks, and the one --device/--dtype helper every drawing/evaluating command uses."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from diffusionforge.errors import UserError

EXIT_USAGE, EXIT_DIVERGED = 2, 3


class _DefaultsHelp(argparse.HelpFormatter):
    """Each option's help ends in its default, unless it says it already or has none."""

    def _get_help_string(self, action):
        text = action.help or ""
        quiet = action.default is None or action.default is False or action.default == ""
        if (
            "default" in text
            or not action.option_strings
            or quiet
            or action.default == "==SUPPRESS=="
        ):
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _DefaultsHelp)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # one line instead of usage + message
        self.exit(EXIT_USAGE, f"error: {message} (see `{self.prog} --help`)\n")


DTYPES = ("float32", "bfloat16", "float16")
OUT_HELP = (  # the drawing verbs' one --out rule (cli/outputs.py)
    "a folder: one file per sample, <verb>-<seed>[-<label>].<ext>, with samples.json (reusing "
    "it replaces only the files its samples.json lists)"
)


def add_device_flags(parser, dtype_help: str | None = None) -> None:
    """--device and --dtype, the same on every command that runs a network."""
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (cuda when available, else mps, else cpu), cpu, cuda, cuda:N or mps "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        help=dtype_help
        or "float32; bfloat16/float16 compute (autocast) on cuda/mps, a warning on cpu (no "
        "faster there, float16 far slower); diffusers folders: the weights' dtype (default: "
        "%(default)s)",
    )


def resolve_device(args, cpu_only: str | None = None):
    """args.device ('auto' resolved: cuda, else mps, else cpu) as a torch.device, args.dtype
    checked; both written back resolved. One-line UserError for anything unusable here.
    `cpu_only`: what runs on the cpu only so far (auto is then cpu; another device an error)."""
    # deferred: loaded only when this command runs, so `--help` stays fast
    import torch

    text = getattr(args, "device", "auto") or "auto"
    if cpu_only and text not in ("auto", "cpu"):
        raise UserError(f"--device {text}: {cpu_only} runs on the cpu only so far; use cpu")
    text = "cpu" if cpu_only else text
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    try:
        device = torch.device(text)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"--device: expected auto, cpu, cuda, cuda:N or mps, got {text!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {text}: no CUDA device is available here")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not has_mps:
        raise UserError(f"--device {text}: no MPS (Apple GPU) device is available here")
    dtype = getattr(args, "dtype", "float32")
    if dtype not in DTYPES:
        raise UserError(f"--dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype != "float32" and device.type == "cpu":
        _log(
            f"warning: --dtype {dtype} on the cpu: no faster than float32 there (glyphs32: "
            "bfloat16 0.95x the time, float16 19x) and less exact; meant for cuda/mps"
        )
    args.device = str(device)
    return device


def precision(args):
    """The context that computes in args.dtype: torch.autocast for bfloat16/float16 on the
    resolved args.device, nothing for float32 (call resolve_device first)."""
    # deferred: loaded only when this command runs, so `--help` stays fast
    import contextlib

    import torch

    dtype = getattr(args, "dtype", "float32")
    if dtype == "float32":
        return contextlib.nullcontext()
    kind = torch.device(getattr(args, "device", "cpu")).type
    return torch.autocast(kind, dtype=getattr(torch, dtype))


def place(pipe, device) -> None:
    """Move a pipeline's networks (net, autoencoder) to device; draws follow the net's device."""
    for name in ("net", "autoencoder"):
        module = getattr(pipe, name, None)
        if module is not None and hasattr(module, "to"):
            module.to(device)


def on_device(fn, module, device):
    """fn (a denoiser) with `module` on device: tensor arguments go there, the result comes
    back to the cpu in float32 (the sampling loop stays on the cpu). The cpu: fn itself."""
    if device.type == "cpu":
        return fn
    # deferred: loaded only when this command runs, so `--help` stays fast
    from torch import Tensor

    module.to(device)

    def moved(*args, **kwargs):
        args = [a.to(device) if isinstance(a, Tensor) else a for a in args]
        kwargs = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in kwargs.items()}
        return fn(*args, **kwargs).float().cpu()

    return moved


def add_nfe_flag(parser, default: int | None, help: str) -> None:
    """--nfe (network evaluations); --steps is kept as a deprecated spelling of it (see
    steps_alias), since `train --steps` counts training steps."""
    parser.add_argument("--nfe", type=int, help=help)
    parser.add_argument("--steps", type=int, dest="steps_as_nfe", help=argparse.SUPPRESS)
    parser.set_defaults(nfe_default=default)


def steps_alias(args) -> str | None:
    """A drawing verb's --steps N becomes --nfe N; then --nfe's default. Returns the line to
    show once the flags are checked (a refused value stays one line)."""
    if not hasattr(args, "nfe_default"):
        return None
    steps = args.__dict__.pop("steps_as_nfe", None)
    default = args.__dict__.pop("nfe_default")
    note = None
    if steps is not None:
        if args.nfe is not None and args.nfe != steps:
            raise UserError(f"--steps {steps} and --nfe {args.nfe}: give --nfe only")
        note = "warning: --steps means --nfe here (network evaluations per sample); use --nfe"
        args.nfe = steps
    if args.nfe is None:
        args.nfe = default
    return note


RUN_OUTPUTS = ("checkpoints", "tensorboard", "samples", "phema", "config.json")


def _one_run_per_folder(run_dir: Path, args) -> None:
    """A run folder holds one run: training again in it needs --resume (continue that run) or
    --overwrite (delete its checkpoints, logs, samples and config, then start over)."""
    # deferred: loaded only when this command runs, so `--help` stays fast
    import shutil

    from diffusionforge.train.checkpoint import list_checkpoints

    held = [n for n in RUN_OUTPUTS if (run_dir / n).exists()]
    if not held or args.resume:
        return
    if not args.overwrite:
        ckpts = list_checkpoints(run_dir)
        what = f"{len(ckpts)} checkpoint(s), newest {ckpts[-1].name}" if ckpts else "no checkpoint"
        raise UserError(
            f"{run_dir} already holds a run ({what}); pass --resume auto to continue it, "
            "--overwrite to delete it and start over, or another --run-dir"
        )
    for n in held:  # only what a run writes: other files in the folder are the user's
        p = run_dir / n
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    _log(f"--overwrite: deleted the earlier run's {', '.join(held)} in {run_dir}")


def launcher_precision(cfg, overrides: list[str]):
    """`accelerate launch --mixed_precision bf16|fp16` (ACCELERATE_MIXED_PRECISION) wins over
    the config's train.mixed_precision (the trainer passes the config's value to Accelerator,
    which would otherwise override the launcher); `--set train.mixed_precision=...` wins over
    both. The launcher's "no" is its default, so it changes nothing. One line says which."""
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.train.config import apply_overrides

    launcher = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    if launcher not in ("bf16", "fp16") or launcher == cfg.train.mixed_precision:
        return cfg
    if any(o.startswith("train.mixed_precision=") for o in overrides):
        _log(
            f"mixed precision: {cfg.train.mixed_precision} (--set train.mixed_precision), not "
            f"accelerate launch's {launcher}"
        )
        return cfg
    _log(
        f"mixed precision: {launcher} (accelerate launch --mixed_precision), not the config's "
        f"{cfg.train.mixed_precision}"
    )
    return apply_overrides(cfg, [f"train.mixed_precision={launcher}"])


def _log(message: str) -> None:
    # deferred: loaded only when this command runs, so `--help` stays fast
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


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


def _check_writable_dir(folder: Path, what: str) -> None:
    folder = folder if str(folder) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"{what}: folder {folder} is not writable ({e.strerror})") from None


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{flag}: expected comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) <= 0:
        raise UserError(f"{flag}: expected positive numbers, got {text!r}")
    return values


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
    pairs = [
        f"{RECOMMENDED[k][0]} ({RECOMMENDED[k][1]} schedule) at NFE {e}"
        for k, e in zip(keys, ends, strict=True)
    ]
    return ", ".join(pairs)


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


def _load_png(path: str, what: str, mode: str):
    # deferred: loaded only when this command runs, so `--help` stays fast
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{what}: {p}: no such file")
    try:
        with Image.open(p) as im:
            arr = np.asarray(im.convert(mode), dtype=np.float32)
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"{what}: {p}: not a readable image ({type(e).__name__})") from None
    t = torch.from_numpy(arr)
    return t.permute(2, 0, 1) / 127.5 - 1 if mode == "RGB" else t / 255.0  # (3,H,W) | (H,W)
