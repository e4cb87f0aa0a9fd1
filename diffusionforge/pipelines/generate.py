"""Load a checkpoint folder and draw samples from it: the one path from files to samples."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from diffusionforge.errors import CheckpointError, ConfigError
from diffusionforge.train.builders import build_formulation, build_model
from diffusionforge.train.checkpoint import Checkpoint, resolve_checkpoint
from diffusionforge.train.config import Config, from_dict


@dataclass
class Pipeline:
    net: nn.Module
    formulation: object
    cfg: Config
    shape: tuple[int, ...]  # shape of one example
    checkpoint: Checkpoint
    weights: str  # "ema" or "model"

    def generate(
        self,
        n: int,
        *,
        nfe: int | None = None,
        sampler: str | None = None,
        schedule: str | None = None,
        seed: int = 0,
        device: str | torch.device = "cpu",
        callback=None,
    ) -> Tensor:
        return generate(
            self.net,
            self.formulation,
            n,
            self.shape,
            nfe=nfe or self.cfg.sample.nfe,
            sampler=sampler or _auto(self.cfg.sample.sampler),
            schedule=schedule or _auto(self.cfg.sample.schedule),
            seed=seed,
            device=device,
            callback=callback,
        )


def _auto(name: str) -> str | None:
    return None if name == "auto" else name


def split_config(raw: dict, where: str) -> tuple[Config, tuple[int, ...]]:
    """config.json -> (Config, example shape); the header holds what the Config does not."""
    raw = dict(raw)
    header = raw.pop("diffusionforge", None)
    if not isinstance(header, dict) or "example_shape" not in header:
        raise CheckpointError(f"{where}: config.json lacks the diffusionforge header")
    try:
        cfg = from_dict(raw, source=f"{where}/config.json")
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    return cfg, tuple(int(s) for s in header["example_shape"])


def load_pipeline(path: str | Path, *, use_ema: bool = True) -> Pipeline:
    """Rebuild the network of a checkpoint (or a run folder's newest one) from its files alone."""
    ckpt = resolve_checkpoint(path)
    cfg, shape = split_config(ckpt.config, str(ckpt.path))
    net = build_model(cfg, shape)
    weights = "ema" if use_ema and ckpt.has("ema.safetensors") else "model"
    state = ckpt.tensors(f"{weights}.safetensors")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{ckpt.path}: weights do not fit the model ({first})") from None
    net.eval().requires_grad_(False)
    return Pipeline(net, build_formulation(cfg), cfg, shape, ckpt, weights)


@torch.no_grad()
def generate(
    net: nn.Module,
    formulation,
    n: int,
    shape: tuple[int, ...],
    *,
    nfe: int,
    sampler: str | None = None,
    schedule: str | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    callback=None,
) -> Tensor:
    """n samples of `shape` from `net` under `formulation`; the same seed gives the same bytes."""
    from diffusionforge import sample

    net = copy.deepcopy(net).to(device).eval() if _device_of(net) != torch.device(device) else net
    generator = torch.Generator(device=device).manual_seed(seed)
    return sample(
        formulation.precondition(net),
        (n, *shape),
        nfe=nfe,
        sampler=sampler,
        schedule=schedule,
        sigma_min=formulation.sigma_min,
        sigma_max=formulation.sigma_max,
        generator=generator,
        device=device,
        callback=callback,
    ).cpu()


def _device_of(net: nn.Module) -> torch.device:
    p = next(net.parameters(), None)
    return p.device if p is not None else torch.device("cpu")
