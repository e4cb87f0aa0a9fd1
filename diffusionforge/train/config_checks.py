"""Semantic checks of a training Config: the range and choice checks types alone cannot express.

Every number is checked where the config enters (file, preset, `--set`, a checkpoint's
config.json): floats finite, seeds in [0, limits.MAX_SEED], counts non-negative or positive,
integers under their limit of diffusionforge/limits.py, so that nothing later overflows a
generator, divides by zero or allocates without end; sampler and schedule names are checked
against the registries. `validate` is what `config.from_dict` and `apply_overrides` call.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import TYPE_CHECKING, Any

from diffusionforge.core.samplers import SAMPLERS
from diffusionforge.core.schedules import SCHEDULES
from diffusionforge.errors import ConfigError
from diffusionforge.limits import MAX_SEED, limit

if TYPE_CHECKING:
    from diffusionforge.train.config import Config


_CHOICES = {
    "data.augment": ("none", "flip", "jitter"),
    "optim.name": ("adam", "adamw"),
    "optim.decay": ("constant", "linear", "cosine", "rsqrt"),
    "ema.kind": ("none", "classic", "power"),
    "train.mixed_precision": ("no", "bf16", "fp16"),
}


def validate(cfg: Config) -> None:
    """Range and choice checks that types alone cannot express."""
    _check_numbers(cfg, "")

    for key, registry in (("sample.sampler", SAMPLERS), ("sample.schedule", SCHEDULES)):
        value = getattr(cfg.sample, key.split(".")[1])
        if value != "auto" and value not in registry:
            raise ConfigError(
                f"{key}: expected auto or one of {', '.join(registry)}, got {value!r}"
            )
    for key, choices in _CHOICES.items():
        section, leaf = key.split(".")
        value = getattr(getattr(cfg, section), leaf)
        if value not in choices:
            raise ConfigError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")
    positive = {
        "train.steps": cfg.train.steps,
        "train.grad_accum": cfg.train.grad_accum,
        "train.nan_limit": cfg.train.nan_limit,
        "train.keep_last": cfg.train.keep_last,
        "train.log_every": cfg.train.log_every,
        "data.size": cfg.data.size,
        "sample.nfe": cfg.sample.nfe,
        "sample.n": cfg.sample.n,
        "model.mlp.hidden": cfg.model.mlp.hidden,
        "model.mlp.depth": cfg.model.mlp.depth,
        "model.mlp.emb_dim": cfg.model.mlp.emb_dim,
        "optim.lr": cfg.optim.lr,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}: expected a positive number, got {value!r}")
    for key in _NOT_NEGATIVE:
        section, *rest = key.split(".")
        value = getattr(cfg, section)
        for part in rest:
            value = getattr(value, part)
        if value is not None and value < 0:
            raise ConfigError(f"{key}: expected 0 or more, got {value!r}")
    if not 0 <= cfg.optim.min_lr_ratio <= 1:
        raise ConfigError(
            f"optim.min_lr_ratio: expected a number in [0, 1], got {cfg.optim.min_lr_ratio}"
        )
    if not 0 <= cfg.data.text.heldout < 1:
        raise ConfigError(
            f"data.text.heldout: expected a number in [0, 1), got {cfg.data.text.heldout}"
        )
    if len(cfg.optim.betas) != 2 or not all(0 <= b < 1 for b in cfg.optim.betas):
        raise ConfigError(f"optim.betas: expected two numbers in [0, 1), got {cfg.optim.betas}")
    if not 0 <= cfg.train.label_dropout < 1:
        raise ConfigError(
            f"train.label_dropout: expected a number in [0, 1), got {cfg.train.label_dropout}"
        )
    if cfg.data.channels not in (1, 3):
        raise ConfigError(f"data.channels: expected 1 or 3, got {cfg.data.channels}")
    if cfg.data.image_size == 1 or cfg.data.image_size < 0:
        raise ConfigError(
            f"data.image_size: expected at least 2 (0: from the data), got {cfg.data.image_size}"
        )
    if cfg.data.image_size > limit("image_side"):
        raise ConfigError(
            f"data.image_size: {cfg.data.image_size} is above the limit of "
            f"{limit('image_side'):,} (raise with DIFFUSIONFORGE_MAX_IMAGE_SIDE)"
        )
    clip = cfg.data.audio.seconds * cfg.data.audio.rate
    if clip > limit("values"):
        raise ConfigError(
            f"data.audio: seconds x rate = {clip:,.0f} samples per clip, above the limit of "
            f"{limit('values'):,} (raise with DIFFUSIONFORGE_MAX_VALUES)"
        )
    if cfg.model.num_classes < -1:
        raise ConfigError(
            f"model.num_classes: expected -1 (from the data) or 0 or more, "
            f"got {cfg.model.num_classes}"
        )
    if not 0 <= cfg.model.unet.dropout < 1 or not 0 <= cfg.model.dit.dropout < 1:
        raise ConfigError("model.unet.dropout / model.dit.dropout: expected a number in [0, 1)")
    if cfg.sample.guidance < 0:
        raise ConfigError(f"sample.guidance: expected 0 or more, got {cfg.sample.guidance}")
    if not 0 < cfg.ema.decay < 1:
        raise ConfigError(f"ema.decay: expected a number in (0, 1), got {cfg.ema.decay}")
    if cfg.ema.kind == "power" and not (
        cfg.ema.stds and all(0 < s < 0.2887 for s in cfg.ema.stds)
    ):  # sigma_rel of a power-function EMA lies below 1/sqrt(12) (EDM2, eq. 3)
        raise ConfigError(f"ema.stds: expected numbers in (0, 0.2887), got {cfg.ema.stds}")
    if cfg.train.max_time:
        parse_duration(cfg.train.max_time, "train.max_time")
    if cfg.train.max_cpu_time:
        parse_duration(cfg.train.max_cpu_time, "train.max_cpu_time")


# Numbers that may be 0 but never negative (counts whose 0 means "never"/"none", scales).
_NOT_NEGATIVE = (
    "train.batch_size",  # 0: by the image side (train/auto_size.py)
    "data.num_workers",
    "data.cache_mb",
    "train.ckpt_every",
    "train.sample_every",
    "train.threads",
    "optim.warmup_steps",
    "optim.weight_decay",
    "optim.grad_clip",
    "ema.snapshot_every",
    "data.jitter",
    "formulation.kl_weight",
    "formulation.min_snr_gamma",
    "model.unet.channels",
    "model.unet.num_res_blocks",
    "model.dit.dim",
    "model.dit.depth",
    "model.dit.heads",
    "model.dit.patch_size",
    "model.transformer.dim",
    "model.transformer.depth",
    "model.transformer.heads",
    "model.transformer.vocab_size",
    "model.autoencoder.channels",
    "model.autoencoder.num_res_blocks",
    "model.autoencoder.decoder_blocks",
    "model.autoencoder.patch_size",
    "model.text_encoder.spatial_channels",
)
# Keys that must be positive (beside `positive` in validate): scales, sizes, counts.
_AT_LEAST_ONE = {
    "optim.eps",
    "formulation.sigma_data",
    "formulation.p_std",
    "formulation.shift",
    "formulation.logit_std",
    "model.transformer.mlp_ratio",
    "model.autoencoder.latent_channels",
    "model.text_encoder.max_tokens",
    "model.text_encoder.dim",
    "model.text_encoder.depth",
    "model.text_encoder.heads",
    "model.text_encoder.planner_steps",
    "model.diffwave.channels",
    "model.diffwave.layers",
    "model.diffwave.cycle",
    "data.text.vocab_size",
    "data.text.length",
    "data.text.sentences",
    "data.sudoku.bases",
    "data.sudoku.variants",
    "data.audio.rate",
    "data.audio.seconds",
    "data.audio.n_mels",
    "data.audio.n_fft",
    "data.audio.hop",
    "data.audio.per_voice",
}
# Which limit of diffusionforge.limits bounds an integer key (by its last name); "width" else.
_INT_BOUND = {
    "steps": "steps",
    "ckpt_every": "steps",
    "sample_every": "steps",
    "log_every": "steps",
    "warmup_steps": "steps",
    "snapshot_every": "steps",
    "planner_steps": "steps",
    "nan_limit": "steps",
    "size": "values",
    "sentences": "values",
    "nfe": "nfe",
    "n": "n",
    "threads": "threads",
    "depth": "depth",
    "layers": "depth",
    "num_res_blocks": "depth",
    "decoder_blocks": "depth",
    "heads": "depth",
    "cycle": "depth",
}


def _check_numbers(obj: Any, prefix: str) -> None:
    """Every number of the config: floats finite, seeds in range, integers under their limit
    (diffusionforge.limits), so nothing later overflows a generator or allocates without end."""

    for f in dataclasses.fields(obj):
        key, value = prefix + f.name, getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _check_numbers(value, key + ".")
            continue
        for i, v in enumerate(value if isinstance(value, list) else [value]):
            name = f"{key}[{i}]" if isinstance(value, list) else key
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{name}: expected a finite number, got {v}")
            if key in _AT_LEAST_ONE and not v > 0:
                raise ConfigError(f"{name}: expected a positive number, got {v!r}")
            if not isinstance(v, int):
                continue
            if f.name == "seed":
                if not 0 <= v <= MAX_SEED:
                    raise ConfigError(
                        f"{name}: expected a whole number in [0, {MAX_SEED}], got {v}"
                    )
                continue
            bound = _INT_BOUND.get(f.name, "width")
            if abs(v) > limit(bound):
                raise ConfigError(
                    f"{name}: {v} is above the limit of {limit(bound):,} "
                    f"(raise with DIFFUSIONFORGE_MAX_{bound.upper()})"
                )


def parse_duration(text: str, name: str = "--max-time") -> float:
    """'90', '90s', '10m', '1h30m' -> seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?", text)
    if not text or not parts or not any(parts.groups()):
        raise ConfigError(f"{name}: expected a duration such as 90s, 10m or 1h30m, got {text!r}")
    h, m, s = (float(g) if g else 0.0 for g in parts.groups())
    return h * 3600 + m * 60 + s
