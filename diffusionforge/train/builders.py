"""Turn a Config into objects: dataset, model, formulation, optimizer.

`nets/`, `data/` and `core/` take plain constructor arguments; only this module reads the
config, so no import runs back up the layers. Registries are dict literals.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
from torch import nn

from diffusionforge.data.arrays import ArrayDataset, load_npy
from diffusionforge.data.toy import TOY_SETS, make_toy
from diffusionforge.errors import ConfigError, DataError
from diffusionforge.nets.mlp import MLPDenoiser
from diffusionforge.train.config import Config


def build_dataset(cfg: Config) -> ArrayDataset:
    d = cfg.data
    if d.kind == "toy":
        if d.name not in TOY_SETS:
            raise ConfigError(
                f"data.name: unknown toy set {d.name!r} (expected one of: {', '.join(TOY_SETS)})"
            )
        data = make_toy(d.name, d.size, d.seed)
    else:
        if not d.path:
            raise DataError("data.path: a .npy file is needed when data.kind = npy (pass --data)")
        data = load_npy(Path(d.path).expanduser())
    return ArrayDataset(data, seed=cfg.train.seed, augment=d.augment, jitter=d.jitter)


def _build_mlp(cfg: Config, shape: tuple[int, ...]) -> nn.Module:
    m = cfg.model.mlp
    return MLPDenoiser(shape, hidden=m.hidden, depth=m.depth, emb_dim=m.emb_dim)


MODELS = {"mlp": _build_mlp}


def build_model(cfg: Config, shape: tuple[int, ...]) -> nn.Module:
    """The network for examples of `shape`, initialised from train.seed (same seed, same bytes)."""
    if cfg.model.kind not in MODELS:
        raise ConfigError(
            f"model.kind: expected one of {', '.join(MODELS)}, got {cfg.model.kind!r}"
        )
    if cfg.model.kind == "mlp" and math.prod(shape) > 65536:
        raise ConfigError(f"model.kind: mlp is meant for small vectors, not examples of {shape}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        return MODELS[cfg.model.kind](cfg, tuple(shape))


def build_formulation(cfg: Config):
    from diffusionforge.core.formulations import FORMULATIONS

    f = cfg.formulation
    if f.kind not in FORMULATIONS:
        raise ConfigError(
            f"formulation.kind: expected one of {', '.join(FORMULATIONS)}, got {f.kind!r}"
        )
    cls = FORMULATIONS[f.kind]
    accepted = {fld.name for fld in dataclasses.fields(cls) if fld.init}
    kwargs = {k: v for k, v in dataclasses.asdict(f).items() if k in accepted}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"formulation: {e}") from None


def build_optimizer(cfg: Config, params) -> torch.optim.Optimizer:
    o = cfg.optim
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[o.name]
    return cls(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)


def lr_at(cfg: Config, step: int) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warm-up, then decay.
    A pure function of the step, so resuming needs no scheduler object."""
    o, total = cfg.optim, cfg.train.steps
    if o.warmup_steps and step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    if o.decay == "constant":
        return o.lr
    if o.decay == "rsqrt":  # EDM2-style inverse square root after warm-up
        return o.lr / math.sqrt(max(step, 1) / max(o.warmup_steps, 1))
    frac = min(1.0, (step - o.warmup_steps) / max(1, total - o.warmup_steps))
    floor = o.lr * o.min_lr_ratio
    if o.decay == "linear":
        return floor + (o.lr - floor) * (1 - frac)
    return floor + (o.lr - floor) * 0.5 * (1 + math.cos(math.pi * frac))
