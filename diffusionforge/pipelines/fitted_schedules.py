"""Per-checkpoint fitted step schedules: `schedules.json` in the checkpoint folder.

`diffusionforge fit-schedule CHECKPOINT --nfe 5,8,10,16` fits, per NFE, the sigmas of the
recommended sampler to the checkpoint's own network (core.fit_schedule) and writes them into the
checkpoint as one more manifest-listed file, atomically (train.checkpoint.write_folder). Every
sampling path then uses a fitted entry for its NFE when the sampler matches and no schedule is
named (core.plan.Plan.resolve's `fitted` table, keyed by sampler steps); `--schedule` overrides.
A fit that did not beat the default schedule on held-out draws (core.fit_schedule's acceptance
check) is recorded with "kept": false and never used.

File format (JSON): {"format": 1, "entries": [{"nfe", "sampler", "steps", "sigmas" (steps + 1
numbers, decreasing, ending in 0), "classes" (labels the fit drew, or null), "cpu_seconds",
"calls" (network calls the fit made; absent in older files), "trajectories", "rms_to_teacher",
"heldout": {"rms_fitted", "rms_default", "trajectories", "z" (the fit's paired gain in
standard errors, within +-1e6), "ended_by" ("plan" or "clock")} or null, "kept" (absent in
files written before the check: kept)}]}.

Imported diffusers folders are never modified unless asked: `fit-schedule FOLDER` writes the
same format to the sidecar file `FOLDER.schedules.json` beside the folder (or to `--out FILE`),
and a diffusers model reads `FOLDER/schedules.json` if the user put one there, else the sidecar
(`schedules_file_for`).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from torch import Tensor

from diffusionforge.core.fit_schedule import fit_schedule
from diffusionforge.core.plan import Plan
from diffusionforge.core.sample import recommended
from diffusionforge.core.samplers import SAMPLER_INFO, SAMPLERS
from diffusionforge.errors import CheckpointError
from diffusionforge.limits import limit
from diffusionforge.pipelines.outputs import atomic_write
from diffusionforge.train.checkpoint import Checkpoint, write_folder
from diffusionforge.train.config import SampleConfig

SCHEDULES_FILE = "schedules.json"
FORMAT = 1
MAX_FILE_BYTES = 16 << 20  # a schedules file is a few kB; refuse anything near memory-sized


def read_entries(ckpt: Checkpoint) -> list[dict]:
    """The checkpoint's fitted entries (none without schedules.json); a CheckpointError names
    a malformed file."""
    if not ckpt.has(SCHEDULES_FILE):
        return []
    return _checked(ckpt.json(SCHEDULES_FILE), f"{ckpt.path / SCHEDULES_FILE}")


def _checked(raw, where: str) -> list[dict]:
    entries = raw.get("entries") if isinstance(raw, dict) else None
    if not isinstance(entries, list) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{where}: expected {{'format': 1, 'entries': [...]}}")
    for e in entries:
        ok = isinstance(e, dict) and e.get("sampler") in SAMPLERS and type(e.get("nfe")) is int
        sig = e.get("sigmas") if ok else None
        ok = ok and isinstance(sig, list) and 2 <= len(sig) <= limit("nfe") + 1
        # no bools, no ints beyond float (OverflowError), no sigma torch cannot hold in float32
        ok = ok and all(type(v) in (int, float) and abs(v) <= 1e30 for v in sig)
        ok = ok and all(math.isfinite(v) for v in sig)
        ok = ok and sig[-1] == 0 and all(a > b for a, b in zip(sig, sig[1:], strict=False))
        ok = ok and type(e.get("kept", True)) is bool
        if not ok:
            raise CheckpointError(
                f"{where}: an entry is not {{nfe, sampler, decreasing sigmas, kept true/false}}"
            )
    return entries


def fitted_table(
    ckpt: Checkpoint | list[dict], sampler: str, guidance: float | None = None
) -> dict[int, Tensor]:
    """{steps: sigmas} of the kept entries fitted for `sampler` (Plan.resolve's `fitted`),
    from a checkpoint or from entries already read (read_file). With `guidance`, an entry
    fitted for another guidance scale is left out (the guided denoiser is another ODE); entries
    that record none (unconditional models) and calls that give none match any."""
    entries = ckpt if isinstance(ckpt, list) else read_entries(ckpt)
    return {
        len(e["sigmas"]) - 1: torch.tensor(e["sigmas"], dtype=torch.float64)
        for e in entries
        if e["sampler"] == sampler and e.get("kept", True) and _same_guidance(e, guidance)
    }


def _same_guidance(entry: dict, guidance: float | None) -> bool:
    fitted = entry.get("guidance")
    if guidance is None or not isinstance(fitted, (int, float)):
        return True
    return math.isclose(float(fitted), float(guidance), rel_tol=1e-9, abs_tol=1e-9)


def sidecar(folder: str | Path) -> Path:
    """Where fit-schedule writes a diffusers folder's schedules: FOLDER.schedules.json."""
    folder = Path(folder).expanduser()
    return folder.with_name(folder.name + ".schedules.json")


def schedules_file_for(folder: str | Path) -> Path | None:
    """The schedules file a diffusers folder uses: FOLDER/schedules.json, else the sidecar."""
    for path in (Path(folder).expanduser() / SCHEDULES_FILE, sidecar(folder)):
        if path.is_file():
            return path
    return None


def read_file(path: str | Path) -> list[dict]:
    """The entries of a schedules file outside a checkpoint; CheckpointError names a bad one."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file() or size > MAX_FILE_BYTES:
            raise CheckpointError(f"{path}: not a schedules file (a regular file under 16 MiB)")
        raw = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{path}: cannot read it as JSON ({type(e).__name__})") from None
    return _checked(raw, str(path))


def _merged(old: list[dict], new: list[dict]) -> dict:
    """The schedules table of `old` entries with `new` ones replacing those of the same NFE and
    sampler (a fit for another sampler at that NFE is kept beside it)."""
    fresh = {(e["nfe"], e["sampler"]) for e in new}
    kept = [e for e in old if (e["nfe"], e["sampler"]) not in fresh]
    return {
        "format": FORMAT,
        "entries": sorted(kept + new, key=lambda e: (e["nfe"], e["sampler"])),
    }


def write_file(path: str | Path, entries: list[dict]) -> Path:
    """`entries` into the schedules file `path` (replacing its entries of the same NFE and
    sampler), atomically (temp file, fsync, rename)."""
    path = Path(path).expanduser()
    table = _merged(read_file(path) if path.exists() else [], entries)
    data = json.dumps(table, indent=1).encode()
    return atomic_write(path, lambda f: f.write(data), "fit-schedule --out")


def fitted_for_plan(
    ckpt: Checkpoint | list[dict],
    nfe: int,
    sampler: str | None,
    *,
    inpainting: bool = False,
    guidance: float | None = None,
) -> dict[int, Tensor]:
    """The fitted table for the sampler a plan of `nfe` would run (`sampler`, else the
    recommended one, for inpainting when `inpainting`): what a pipeline passes to
    Plan.resolve."""
    sampler = sampler or recommended(nfe, inpainting=inpainting)[0]
    return fitted_table(ckpt, sampler, guidance)


PREVIOUSLY_RECOMMENDED = ("unipc",)  # samplers fit-schedule fitted for by default before


def fitted_sampler(
    ckpt: Checkpoint | list[dict], nfe: int, *, inpainting: bool = False, guidance=None
) -> str | None:
    """With no sampler named: `unipc` when a kept entry was fitted for it at exactly this NFE
    and the recommended sampler has none, so that fits made while `unipc` was the recommended
    sampler at NFE 8+ (before 2026-12-06) stay in use; else None. A fit for another sampler
    (`fit-schedule --sampler heun`) is used only when that sampler is named."""
    if inpainting:
        return None
    entries = ckpt if isinstance(ckpt, list) else read_entries(ckpt)
    rec = recommended(nfe)[0]
    if SAMPLER_INFO[rec].steps_for(nfe) in fitted_table(entries, rec, guidance):
        return None
    others = [
        e["sampler"]
        for e in entries
        if e.get("nfe") == nfe and e["sampler"] in PREVIOUSLY_RECOMMENDED and e.get("kept", True)
        and _same_guidance(e, guidance)
    ]  # fmt: skip
    return others[0] if others else None


def checkpoint_plan(
    ckpt: Checkpoint | None,
    sample: SampleConfig,
    nfe: int | None = None,
    sampler: str | None = None,
    schedule: str | Tensor | None = None,
    *,
    inpainting: bool = False,
    guidance: float | None = None,
) -> Plan:
    """A checkpoint's sampling plan, for every pipeline: what is given, else its config's
    `sample` settings; with no schedule named, the checkpoint's own schedule fitted for that NFE,
    sampler and (when given) guidance scale (`diffusionforge fit-schedule`, schedule name
    "fitted") when it has one (none without a checkpoint)."""
    fitted = None
    if ckpt is not None:
        entries = read_entries(ckpt)  # read once for both questions below
        want = sampler or (None if sample.sampler == "auto" else sample.sampler)
        if want is None and schedule is None:
            want = sampler = fitted_sampler(
                entries, nfe or sample.nfe, inpainting=inpainting, guidance=guidance
            )
        fitted = fitted_for_plan(
            entries, nfe or sample.nfe, want, inpainting=inpainting, guidance=guidance
        )
    return sample.plan(nfe, sampler, schedule, inpainting=inpainting, fitted=fitted)


def fit_entries(
    denoise,
    shape: tuple[int, ...],
    nfes: list[int],
    *,
    sigma_min: float,
    sigma_max: float,
    cond: Tensor | None = None,
    seconds: float = 60.0,
    seed: int = 0,
    progress=None,
    sampler: str | None = None,
    calls: int | None = None,
) -> list[dict]:
    """One entry per NFE: `sampler`'s sigmas (default: the recommended sampler for that NFE)
    fitted to `denoise` within `seconds` CPU seconds each (or `calls` network calls each, see
    core.fit_schedule). `shape` is one fit batch's (B, ...); `cond` per batch (e.g. labels).
    An entry whose fit lost to the default on held-out draws has "kept": False and the fitted
    (rejected) sigmas, for the record."""
    entries = []
    for nfe in nfes:
        run = sampler or recommended(nfe)[0]
        c0 = time.process_time()
        seen: dict = {}

        def tell(d: dict, nfe: int = nfe, seen: dict = seen) -> None:
            seen.update({"check": d} if d["phase"] == "check" else d)
            if progress is not None:
                progress(nfe, d)

        sig = fit_schedule(
            denoise, shape, nfe, sampler=run, cond=cond, seconds=seconds,
            generator=torch.Generator().manual_seed(seed), sigma_min=sigma_min,
            sigma_max=sigma_max, callback=tell, calls=calls,
        )  # fmt: skip
        check = seen.get("check")
        if check is not None and not check["kept"]:
            sig = seen["sigmas"]  # the rejected fit, recorded but never used
        heldout = None
        if check is not None:
            keys = ("rms_fitted", "rms_default", "trajectories", "z", "ended_by")
            heldout = {k: check[k] for k in keys if k in check}
            if "z" in heldout:  # finite, for strict JSON readers (z is inf with no spread)
                heldout["z"] = max(-1e6, min(1e6, float(heldout["z"])))
        entries.append(
            {
                "nfe": nfe,
                "sampler": run,
                "steps": SAMPLER_INFO[run].steps_for(nfe),
                "sigmas": [float(v) for v in sig],
                "cpu_seconds": round(time.process_time() - c0, 1),
                "calls": (check or seen).get("calls", 0),
                "trajectories": seen.get("trajectories", 0),
                "rms_to_teacher": seen.get("rms"),
                "heldout": heldout,
                "kept": check is None or bool(check["kept"]),
            }
        )
    return entries


def write_entries(ckpt: Checkpoint, entries: list[dict], out: Path | None = None) -> Path:
    """The checkpoint with schedules.json holding `entries` (replacing earlier entries of the
    same NFE and sampler), written atomically in place, or as a new checkpoint folder `out`."""
    table = _merged(read_entries(ckpt), entries)
    files = dict(ckpt.files)
    files[SCHEDULES_FILE] = json.dumps(table, indent=1).encode()
    return write_folder(Path(out) if out is not None else ckpt.path, files, step=ckpt.step)
