"""Turn a Config into objects: dataset, model, formulation, optimizer.

`nets/`, `data/` and `core/` take plain constructor arguments; only this module reads the
config, so no import runs back up the layers. Registries are dict literals.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from diffusionforge.core.formulations import FORMULATIONS
from diffusionforge.errors import CheckpointError, ConfigError
from diffusionforge.limits import check_parameters
from diffusionforge.nets.dit import DIT_PRESETS, DiT
from diffusionforge.nets.mlp import MLPDenoiser
from diffusionforge.nets.unet import UNET_PRESETS, UNet
from diffusionforge.train import builders_audio, builders_latent, builders_t2i, builders_text
from diffusionforge.train.checkpoint import stored_values
from diffusionforge.train.config import Config


def _build_mlp(cfg: Config, shape: tuple[int, ...]) -> nn.Module:
    m = cfg.model.mlp
    return MLPDenoiser(shape, hidden=m.hidden, depth=m.depth, emb_dim=m.emb_dim)


def _image_shape(kind: str, shape: tuple[int, ...]) -> tuple[int, int]:
    # C 1 or 3 for pixels; latent models (data.autoencoder) see a few latent channels
    if len(shape) != 3 or not 1 <= shape[0] <= 16 or shape[1] != shape[2]:
        raise ConfigError(
            f"model.kind: {kind} needs square images or latents (C, H, H), C 1 to 16, got {shape}"
        )
    return shape[0], shape[1]


def _num_classes(cfg: Config) -> int:
    return max(cfg.model.num_classes, 0)


def _build_unet(cfg: Config, shape: tuple[int, ...]) -> nn.Module:
    u = cfg.model.unet
    channels, res = _image_shape("unet", shape)
    if u.preset not in UNET_PRESETS:
        raise ConfigError(
            f"model.unet.preset: expected one of {', '.join(UNET_PRESETS)}, got {u.preset!r}"
        )
    kw = dict(UNET_PRESETS[u.preset])
    overrides = {
        "channels": u.channels or None,
        "channel_mult": tuple(u.channel_mult) or None,
        "num_res_blocks": u.num_res_blocks or None,
        "attn_resolutions": None if u.attn_resolutions is None else tuple(u.attn_resolutions),
    }
    kw.update({k: v for k, v in overrides.items() if v is not None})
    if u.dropout:
        kw["dropout"] = u.dropout
    levels = len(kw["channel_mult"]) - 1
    if res % 2**levels:
        raise ConfigError(
            f"model.unet: image size {res} is not divisible by 2^{levels} "
            f"(channel_mult {list(kw['channel_mult'])})"
        )
    return UNet(
        res,
        in_channels=channels,
        num_classes=_num_classes(cfg),
        gradient_checkpointing=u.gradient_checkpointing,
        text=builders_t2i.text_module(cfg),
        cross_attn_resolutions=tuple(cfg.model.text_encoder.cross_attn_resolutions),
        **kw,
    )


def _build_dit(cfg: Config, shape: tuple[int, ...]) -> nn.Module:
    t = cfg.model.dit
    channels, res = _image_shape("dit", shape)
    if t.preset not in DIT_PRESETS:
        raise ConfigError(
            f"model.dit.preset: expected one of {', '.join(DIT_PRESETS)}, got {t.preset!r}"
        )
    kw = dict(DIT_PRESETS[t.preset])
    for key in ("dim", "depth", "heads", "patch_size"):
        if getattr(t, key):
            kw[key] = getattr(t, key)
    if res % kw["patch_size"] or kw["dim"] % kw["heads"] or kw["dim"] % 4:
        raise ConfigError(
            f"model.dit: needs image size {res} divisible by patch_size {kw['patch_size']} and "
            f"dim {kw['dim']} divisible by heads {kw['heads']} and by 4"
        )
    return DiT(
        res,
        in_channels=channels,
        dropout=t.dropout,
        num_classes=_num_classes(cfg),
        gradient_checkpointing=t.gradient_checkpointing,
        text=builders_t2i.text_module(cfg),
        **kw,
    )


# model.kind -> builder(cfg, example_shape).
MODELS = {
    "mlp": _build_mlp,
    "unet": _build_unet,
    "dit": _build_dit,
    "transformer": builders_text.build_transformer,
    "autoencoder": builders_latent.build_autoencoder,
    "diffwave": builders_audio.build_diffwave,
}


def build_model(
    cfg: Config, shape: tuple[int, ...], *, weights: bytes | None = None, where: str = ""
) -> nn.Module:
    """The network for examples of `shape`, initialised from train.seed (same seed, same bytes).
    Class-conditional when model.num_classes > 0 (resolve -1 from the data first).

    Its size is counted first on the meta device (nothing allocated) and refused above
    limits.limit('parameters'); with `weights` (the bytes of the .safetensors file that will be
    loaded into it, named `where`) also when it holds more values than that file's header lists,
    so a forged config cannot make a loader allocate what the weights do not hold."""
    if cfg.model.kind not in MODELS:
        raise ConfigError(
            f"model.kind: expected one of {', '.join(MODELS)}, got {cfg.model.kind!r}"
        )
    if cfg.model.kind == "mlp" and math.prod(shape) > 65536:
        raise ConfigError(f"model.kind: mlp is meant for small vectors, not examples of {shape}")
    if weights is None:
        check_parameters(parameter_count(cfg, shape), "model")
    else:
        check_weights_fit(cfg, shape, weights, where)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        return MODELS[cfg.model.kind](cfg, tuple(shape))


def check_weights_fit(cfg: Config, shape: tuple[int, ...], weights: bytes, where: str) -> int:
    """The parameter count of the model `cfg` describes, refused (CheckpointError) when it is
    larger than what the .safetensors bytes `weights` hold by their header; nothing allocated."""

    count, stored = parameter_count(cfg, shape), stored_values(weights, where)
    if count > stored:
        raise CheckpointError(
            f"{where}: config.json describes a model of {count:,} values but the weights "
            f"hold {stored:,}"
        )
    check_parameters(count, "model", error=CheckpointError)
    return count


def parameter_count(cfg: Config, shape: tuple[int, ...]) -> int:
    """Values in the state dict `build_model` would make, counted on the meta device."""
    with torch.device("meta"), torch.random.fork_rng(devices=[]):
        net = MODELS[cfg.model.kind](cfg, tuple(shape))
    return sum(t.numel() for t in net.state_dict().values())


def _continuous(cfg: Config):
    """A Gaussian formulation of core.formulations, from the formulation section's fields."""

    cls = FORMULATIONS[cfg.formulation.kind]
    accepted = {fld.name for fld in dataclasses.fields(cls) if fld.init}
    kwargs = {k: v for k, v in dataclasses.asdict(cfg.formulation).items() if k in accepted}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"formulation: {e}") from None


# formulation.kind -> builder(cfg) of the training objective: anything with
# `loss(model, x, cond, generator=g) -> (B,) per-example loss`. The continuous formulations
# come first; other modalities add theirs (masked tokens, autoregressive, autoencoder...).
OBJECTIVES = {
    "edm": _continuous,
    "vp": _continuous,
    "flow": _continuous,
    "masked": builders_text.masked_objective,
    "block": builders_text.block_objective,
    "ar": builders_text.ar_objective,
    "vae": builders_latent.vae_objective,
}


def build_formulation(cfg: Config):
    """The training objective named by formulation.kind (a key of OBJECTIVES)."""
    kind = cfg.formulation.kind
    if kind not in OBJECTIVES:
        raise ConfigError(
            f"formulation.kind: expected one of {', '.join(OBJECTIVES)}, got {kind!r}"
        )
    return OBJECTIVES[kind](cfg)


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
