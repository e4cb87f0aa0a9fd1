"""Output files of `sample` and friends: whole or not at all, and never NaN.

An array is written to a temp file in the same folder, fsynced and renamed over the target, so a
reader sees the old file or the new one. Writers that make several files (a grid PNG and a
folder of single PNGs) run inside `output_or_nothing`, which removes what the failed call
created (temp files, a new folder) before the one-line error. Samples holding NaN or inf are
refused before anything is written: they can only come from broken weights.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import torch
from torch import Tensor

from diffusionforge.errors import UserError
from diffusionforge.train.checkpoint import describe


def check_finite_output(samples: Tensor, source: str) -> None:
    if samples.is_floating_point() and not bool(torch.isfinite(samples).all()):
        bad = int((~torch.isfinite(samples)).sum())
        raise UserError(
            f"{source}: drew {bad:,} NaN or infinite values (broken weights?); nothing written"
        )


def atomic_write(path: Path, write: Callable[[BinaryIO], None], what: str) -> Path:
    """Write `path` through `write(file)`: temp file beside it, fsync, rename; on OSError the
    temp file is removed and a one-line UserError names `what` and the reason."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(
            f"{what}: could not write {path} ({describe(e)}); nothing written"
        ) from None
    return path


@contextlib.contextmanager
def output_or_nothing(out: Path, what: str) -> Iterator[None]:
    """Run writers of `out` and of the folder named like it (`out` without its suffix); on
    OSError remove the files they created and that folder when it is new, then one line."""
    out = Path(out)
    folder = out.with_suffix("")
    parent = out.parent if str(out.parent) else Path(".")
    new_folder = not folder.exists()
    before = set(folder.iterdir()) if folder.is_dir() else set()
    temps = set(parent.glob(".tmp-*"))
    try:
        yield
    except OSError as e:
        if new_folder and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
        elif folder.is_dir():
            for p in set(folder.iterdir()) - before:
                p.unlink(missing_ok=True) if not p.is_dir() else shutil.rmtree(p, True)
        for p in set(parent.glob(".tmp-*")) - temps:
            p.unlink(missing_ok=True)
        raise UserError(f"{what}: could not write ({describe(e)}); nothing kept") from None
