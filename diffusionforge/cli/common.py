"""What every command shares: the one-line error parser, exit codes, output checks."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from diffusionforge.errors import UserError

EXIT_USAGE, EXIT_DIVERGED = 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        self.exit(EXIT_USAGE, f"error: {message} (see `{self.prog} --help`)\n")


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
