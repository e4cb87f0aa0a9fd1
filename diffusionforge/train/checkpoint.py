"""Checkpoint folders: atomic writes, verified reads, keep-last-N, newest-complete lookup.

Layout of one checkpoint (`<run>/checkpoints/step-000001000/`):

    model.safetensors      weights                    ema.safetensors   EMA weights (if any)
    config.json            resolved Config + shapes   manifest.json     size + sha256 of each file
    training_state/        optimizer.safetensors + optimizer.json, rng.safetensors, state.json,
                           ema_all.safetensors (every tracked EMA, for exact resume)

A checkpoint is built in a hidden temp folder beside the others, every file fsynced, then
renamed into place in one step, so a reader sees either the whole folder or nothing. The
manifest, written last, carries a checksum of every file, so a truncated, emptied or bit-flipped
file is caught before anything is loaded. Only safetensors and JSON are read: loading never
executes code or unpickles objects.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import Tensor

from diffusionforge.errors import CheckpointError
from diffusionforge.train.safe_files import describe, read_inside
from diffusionforge.train.safe_files import stored_values as stored_values  # for loaders

FORMAT = 1
_STEP_RE = re.compile(r"step-(\d{9})")
_TEMP_PREFIX = ".tmp-"


# --- low-level file io ----------------------------------------------------------------------


def write_file(path: Path, data: bytes) -> None:
    """Write and fsync one file. The single place bytes reach the disk (tests patch it)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_safetensors(path: Path, tensors: dict[str, Tensor], metadata: dict | None = None) -> None:
    """Write one .safetensors file atomically (temp file, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(f"{_TEMP_PREFIX}{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file(tmp, tensors_to_bytes(tensors, metadata))
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"{path}: could not write ({describe(e)})") from None


def read_safetensors(path: Path) -> dict[str, Tensor]:
    try:
        return bytes_to_tensors(Path(path).read_bytes(), str(path))
    except OSError as e:
        raise CheckpointError(f"{path}: could not read ({describe(e)})") from None


def tensors_to_bytes(tensors: dict[str, Tensor], metadata: dict | None = None) -> bytes:
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    return safetensors.torch.save(tensors, metadata=meta)


def bytes_to_tensors(data: bytes, name: str) -> dict[str, Tensor]:
    try:
        return safetensors.torch.load(data)
    except (safetensors.SafetensorError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{name}: not a valid safetensors file ({e})") from None


# --- optimizer state as safetensors + JSON --------------------------------------------------


def optimizer_to_files(state: dict) -> tuple[dict[str, Tensor], dict]:
    """torch optimizer state_dict -> (tensors, JSON-able scalars); no pickles involved."""
    tensors, scalars = {}, {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"{idx}/{key}"] = value
            else:
                scalars[f"{idx}/{key}"] = value
    groups = [{k: _json_value(v) for k, v in g.items()} for g in state["param_groups"]]
    return tensors, {"scalars": scalars, "param_groups": groups}


def optimizer_from_files(tensors: dict[str, Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for flat, value in [*tensors.items(), *meta["scalars"].items()]:
        idx, key = flat.split("/", 1)
        state.setdefault(int(idx), {})[key] = value
    groups = [{k: _from_json_value(v) for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def _json_value(v: Any) -> Any:
    return {"tuple": list(v)} if isinstance(v, tuple) else v


def _from_json_value(v: Any) -> Any:
    return tuple(v["tuple"]) if isinstance(v, dict) and set(v) == {"tuple"} else v


# --- writing a checkpoint folder ------------------------------------------------------------


def save_checkpoint(run_dir: Path, step: int, files: dict[str, bytes], keep_last: int) -> Path:
    """Write `files` (relative path -> bytes) as checkpoint `step` of a run; keep the newest
    `keep_last`. On failure earlier checkpoints are untouched (see `write_folder`)."""
    folder = Path(run_dir) / "checkpoints"
    final = write_folder(folder / f"step-{step:09d}", files, step=step)
    prune(folder, keep_last)
    return final


def write_folder(final: Path, files: dict[str, bytes], *, step: int) -> Path:
    """Write a checkpoint folder atomically: temp folder beside it, fsync, rename.

    On any OSError (disk full, permissions) the temp folder is removed, nothing else is
    touched, and a one-line CheckpointError is raised.
    """
    final = Path(final)
    folder = final.parent
    tmp = folder / f"{_TEMP_PREFIX}{final.name}-{os.getpid()}"
    manifest = {"format": FORMAT, "step": step, "files": {}}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for rel, data in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            write_file(tmp / rel, data)
            manifest["files"][rel] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        write_file(tmp / "manifest.json", json.dumps(manifest, indent=1).encode())
        for sub in {(tmp / rel).parent for rel in files}:
            _fsync_dir(sub)
        if final.exists():  # re-saving the same step (e.g. after a resume): swap, then delete
            old = folder / f"{_TEMP_PREFIX}old-{final.name}-{os.getpid()}"
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
        _fsync_dir(folder)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(
            f"{final}: could not save checkpoint ({describe(e)}); earlier checkpoints kept"
        ) from None
    return final


def prune(folder: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` checkpoints, and stale temp folders of dead writers."""
    steps = sorted(p for p in folder.iterdir() if _STEP_RE.fullmatch(p.name))
    for old in steps[:-keep_last]:
        trash = folder / f"{_TEMP_PREFIX}del-{old.name}-{os.getpid()}"
        os.rename(old, trash)  # atomic: the folder is never seen half-deleted
        shutil.rmtree(trash, ignore_errors=True)
    for stale in folder.glob(f"{_TEMP_PREFIX}*"):
        pid = stale.name.rsplit("-", 1)[-1].split(".")[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- reading a checkpoint folder ------------------------------------------------------------


@dataclass
class Checkpoint:
    """A verified checkpoint folder: every file's size and checksum matched the manifest."""

    path: Path
    step: int
    files: dict[str, bytes]

    def has(self, rel: str) -> bool:
        return rel in self.files

    def json(self, rel: str) -> dict:
        try:
            return json.loads(self.files[rel])
        except RecursionError:  # [[[[...: nested deeper than the parser recurses
            raise CheckpointError(f"{self.path / rel}: not valid JSON (nested too deep)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{self.path / rel}: not valid JSON ({e})") from None

    def tensors(self, rel: str) -> dict[str, Tensor]:
        return bytes_to_tensors(self.files[rel], str(self.path / rel))

    @property
    def config(self) -> dict:
        return self.json("config.json")


def load_checkpoint(path: str | Path, *, need_training_state: bool = False) -> Checkpoint:
    """Read and verify a checkpoint folder; any defect is a one-line CheckpointError."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    if not path.is_dir():
        raise CheckpointError(f"{path}: expected a checkpoint folder, got a file")
    if not (path / "manifest.json").exists() and not (path / "manifest.json").is_symlink():
        if (path / "model_index.json").is_file() or (path / "unet").is_dir():
            raise CheckpointError(
                f"{path}: a diffusers pipeline folder, not a diffusionforge checkpoint: info, "
                "sample and generate read it directly (needs the diffusers extra: pip install "
                "'diffusionforge[diffusers]')"
            )
        if not any(path.iterdir()) or not (path / "config.json").exists():
            raise CheckpointError(
                f"{path}: not a checkpoint or run folder (no manifest.json, no checkpoints/); "
                "give a run folder, a checkpoint folder or a bundled model name"
            )
        raise CheckpointError(f"{path}: incomplete checkpoint (no manifest.json)")
    raw = read_inside(path, "manifest.json", None)
    try:
        manifest = json.loads(raw)
        entries = manifest["files"]
        step = int(manifest["step"])
        assert isinstance(entries, dict) and all(
            isinstance(v, dict)
            and isinstance(v.get("sha256"), str)
            and isinstance(v.get("size"), int)
            and not isinstance(v.get("size"), bool)
            for v in entries.values()
        )
        assert 0 <= step < 10**12
    except (
        json.JSONDecodeError,
        UnicodeDecodeError,
        KeyError,
        TypeError,
        ValueError,
        AssertionError,
    ):
        raise CheckpointError(f"{path}: corrupt checkpoint (manifest.json unreadable)") from None
    required = ["model.safetensors", "config.json"]
    if need_training_state:
        required += ["training_state/state.json", "training_state/optimizer.safetensors"]
    for rel in required:
        if rel not in entries:
            raise CheckpointError(f"{path}: incomplete checkpoint (no {rel})")
    files = {}
    for rel, info in entries.items():
        data = read_inside(path, rel, info["size"])
        if hashlib.sha256(data).hexdigest() != info["sha256"]:
            raise CheckpointError(f"{path}: corrupt checkpoint ({rel} fails its checksum)")
        files[rel] = data
    return Checkpoint(path=path, step=step, files=files)


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Completed checkpoint folders of a run, oldest first (temp folders are never listed)."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _STEP_RE.fullmatch(p.name) and p.is_dir())


def latest_checkpoint(
    run_dir: str | Path, *, need_training_state: bool = True
) -> tuple[Checkpoint | None, list[str]]:
    """Newest checkpoint of a run that verifies, and a note for each newer one skipped."""
    skipped = []
    for path in reversed(list_checkpoints(run_dir)):
        try:
            return load_checkpoint(path, need_training_state=need_training_state), skipped
        except CheckpointError as e:
            skipped.append(str(e))
    return None, skipped


def resolve_checkpoint(path: str | Path, *, need_training_state: bool = False) -> Checkpoint:
    """A checkpoint folder, a run folder meaning its newest good checkpoint, or the name of a
    model bundled with the package (``digits``, ``grammar``...) when no such path exists here."""
    path = Path(path)
    if len(path.parts) == 1 and not _is_ours(path):
        # a bundled name wins over a local path that is no checkpoint or run, e.g. the
        # ./digits/ of single PNGs that `sample digits --out digits.png` writes
        bundled = _assets() / path.name
        if (bundled / "manifest.json").is_file():
            path = bundled
    if not path.exists():
        raise CheckpointError(
            f"{path}: no such checkpoint, run folder or bundled model "
            f"(bundled: {', '.join(bundled_names())})"
        )
    if path.is_file():
        raise CheckpointError(f"{path}: {_what_file(path)}")
    if path.is_dir() and not (path / "manifest.json").exists() and (path / "checkpoints").is_dir():
        ckpt, skipped = latest_checkpoint(path, need_training_state=need_training_state)
        if ckpt is None:
            reason = f" ({skipped[0]})" if skipped else ""
            raise CheckpointError(f"{path}: run folder has no complete checkpoint{reason}")
        return ckpt
    return load_checkpoint(path, need_training_state=need_training_state)


def _assets() -> Path:
    from importlib import resources

    return Path(str(resources.files("diffusionforge.assets")))


def bundled_names() -> list[str]:
    """Names of the models shipped with the package (folders of assets/ with a manifest)."""
    return sorted(p.name for p in _assets().iterdir() if (p / "manifest.json").is_file())


def _is_ours(path: Path) -> bool:
    """A checkpoint folder (manifest.json) or a run folder (checkpoints/)."""
    return (path / "manifest.json").exists() or (path / "checkpoints").is_dir()


def _what_file(path: Path) -> str:
    """What a file given where a checkpoint folder is expected is, and what to give instead."""
    if path.suffix == ".safetensors":
        return (
            "a weights file, not a checkpoint: give the folder that holds it (with its "
            "config.json and manifest.json), or the run folder"
        )
    if path.name in ("config.json", "manifest.json"):
        return f"a checkpoint's {path.name}: give the folder that holds it"
    if path.suffix in (".ckpt", ".pt", ".pth", ".bin"):
        return (
            "a pickled weights file, which is never loaded (it can run code): convert it to "
            "safetensors in a diffusers or diffusionforge folder"
        )
    return "expected a checkpoint folder, got a file"


def rng_state() -> dict[str, Tensor]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            state[f"cuda{i}"] = s
    return state


def set_rng_state(state: dict[str, Tensor]) -> None:
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available():
        cuda = [state[f"cuda{i}"] for i in range(torch.cuda.device_count()) if f"cuda{i}" in state]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
