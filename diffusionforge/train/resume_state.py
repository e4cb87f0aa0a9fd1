"""Read everything a resume needs from a checkpoint and check it fits the run, before any of it
is applied.

A checkpoint whose files pass their checksums can still hold content that does not belong to
this run (weights of other shapes, an optimizer state of another model, a forged state.json).
`read` turns each such defect into a one-line CheckpointError and changes nothing, so
`--resume auto` can skip that checkpoint and try the previous one, and the Trainer applies a
`Restored` that cannot fail half-way.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from diffusionforge.errors import CheckpointError, ConfigError
from diffusionforge.train import checkpoint as ckpt_io
from diffusionforge.train.loading import split_config

MAX_STEP = 10**12


@dataclass
class Restored:
    model: dict[str, Tensor]
    optimizer: dict
    ema: dict[str, Tensor] | None
    rng: dict[str, Tensor]
    step: int
    skipped: int


def _differing(saved: dict, now: dict, prefix: str, limit: int = 3) -> str:
    """'data.kind: toy -> images, ...': the first keys whose values differ, saved -> now."""
    out: list[str] = []

    def walk(a, b, key: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in dict.fromkeys([*a, *b]):
                walk(a.get(k), b.get(k), f"{key}.{k}")
        elif a != b:
            out.append(f"{key}: {a!r} -> {b!r}")

    walk(saved, now, prefix)
    more = f", and {len(out) - limit} more" if len(out) > limit else ""
    return "; ".join(out[:limit]) + more


def read(ckpt: ckpt_io.Checkpoint, trainer) -> Restored:
    """Everything `trainer` (set up, not yet resumed) restores from `ckpt`, checked."""
    saved, _ = split_config(ckpt.config, str(ckpt.path))
    for section in ("model", "formulation", "data"):
        if getattr(saved, section) != getattr(trainer.cfg, section):
            keys = _differing(
                dataclasses.asdict(getattr(saved, section)),
                dataclasses.asdict(getattr(trainer.cfg, section)),
                section,
            )
            raise ConfigError(
                f"{ckpt.path}: its {section} config differs from this run's ({keys}); "
                f"resume with the same {section} settings (e.g. without --preset/--config/"
                "--data: the run's own config) or start a new run folder"
            )
    model = ckpt.tensors("model.safetensors")
    _check_like(model, trainer.net.state_dict(), f"{ckpt.path}/model.safetensors", exact=True)
    ema = None
    if trainer.ema is not None:
        rel = "training_state/ema_all.safetensors"
        if not ckpt.has(rel):
            raise CheckpointError(f"{ckpt.path}: incomplete checkpoint (no {rel})")
        ema = ckpt.tensors(rel)
        _check_like(ema, trainer.ema.state(), f"{ckpt.path}/{rel}", exact=False)
    rng = ckpt.tensors("training_state/rng.safetensors")
    now = torch.get_rng_state()
    t = rng.get("torch")
    if t is None or t.dtype != now.dtype or t.shape != now.shape:
        raise CheckpointError(
            f"{ckpt.path}/training_state/rng.safetensors: expected a 'torch' generator state "
            f"of {now.numel()} bytes"
        )
    state = ckpt.json("training_state/state.json")
    where = f"{ckpt.path}/training_state/state.json"
    if not isinstance(state, dict):
        raise CheckpointError(f"{where}: expected a JSON object, got {type(state).__name__}")
    step, skipped = state.get("step"), state.get("skipped_steps", 0)
    if not _whole(step) or not 0 <= step <= MAX_STEP:
        raise CheckpointError(f"{where}: step: expected a whole number >= 0, got {step!r}")
    if not _whole(skipped) or not 0 <= skipped <= step:
        raise CheckpointError(
            f"{where}: skipped_steps: expected a whole number in [0, step], got {skipped!r}"
        )
    optimizer = _read_optimizer(ckpt, trainer.optimizer)
    return Restored(model, optimizer, ema, rng, step, skipped)


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_like(
    loaded: dict[str, Tensor], expected: dict[str, Tensor], where: str, *, exact: bool
) -> None:
    """Same names (all of `expected`; no others when `exact`), same shapes, finite values."""
    missing = [k for k in expected if k not in loaded]
    extra = [k for k in loaded if k not in expected] if exact else []
    if missing or extra:
        what = f"no {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
        raise CheckpointError(f"{where}: weights do not fit this run's model ({what})")
    for k, ref in expected.items():
        t = loaded[k]
        if t.shape != ref.shape or t.is_floating_point() != ref.is_floating_point():
            raise CheckpointError(
                f"{where}: weights do not fit this run's model ({k}: {t.dtype} "
                f"{tuple(t.shape)}, expected {ref.dtype} {tuple(ref.shape)})"
            )
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{where}: weights are not finite (NaN or inf in {k})")


def _read_optimizer(ckpt: ckpt_io.Checkpoint, optimizer: torch.optim.Optimizer) -> dict:
    where = f"{ckpt.path}/training_state/optimizer.json"
    tensors = ckpt.tensors("training_state/optimizer.safetensors")
    meta = ckpt.json("training_state/optimizer.json")
    try:
        loaded = ckpt_io.optimizer_from_files(tensors, meta)
    except (KeyError, ValueError, TypeError, AttributeError):
        raise CheckpointError(f"{where}: malformed optimizer state") from None
    params = [p for g in optimizer.param_groups for p in g["params"]]
    current = optimizer.state_dict()["param_groups"]
    groups = loaded["param_groups"]
    if not isinstance(groups, list) or len(groups) != len(current):
        raise CheckpointError(f"{where}: expected {len(current)} parameter group(s)")
    for i, (got, ref) in enumerate(zip(groups, current, strict=True)):
        if not isinstance(got, dict) or got.get("params") != ref["params"]:
            raise CheckpointError(f"{where}: parameter group {i} does not match this run's model")
        for key, value in ref.items():
            if key != "params" and not _same_kind(got.get(key, _MISSING), value):
                raise CheckpointError(
                    f"{where}: parameter group {i}: {key} expected like {value!r}, "
                    f"got {got.get(key, 'nothing')!r}"
                )
    for idx, entry in loaded["state"].items():
        if not 0 <= idx < len(params):
            raise CheckpointError(f"{where}: state of parameter {idx}, which this model lacks")
        for key, value in entry.items():
            ok = (
                isinstance(value, Tensor)
                and value.shape in (torch.Size([]), params[idx].shape)
                and (not value.is_floating_point() or bool(torch.isfinite(value).all()))
            ) or (_number(value))
            if not ok:
                raise CheckpointError(
                    f"{where}: state {idx}/{key} does not fit parameter {idx} "
                    f"{tuple(params[idx].shape)}"
                )
    return loaded


_MISSING = object()


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _same_kind(got, ref) -> bool:
    """A saved optimizer hyperparameter of the same kind as the run's (absent: torch's
    default): numbers finite, tuples of as many finite numbers, flags and names alike."""
    if got is _MISSING:
        return True
    if _number(ref):
        return _number(got)
    if isinstance(ref, tuple):
        return isinstance(got, tuple) and len(got) == len(ref) and all(map(_number, got))
    if ref is None or isinstance(ref, bool):
        return got is None or isinstance(got, bool)
    return type(got) is type(ref)
