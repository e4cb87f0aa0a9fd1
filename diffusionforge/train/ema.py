"""Exponential moving averages of model weights, kept as plain state dicts of tensors.

`ClassicEMA`: fixed decay with the usual warm-up min(decay, (1 + t) / (10 + t)).
`PowerEMA`: EDM2 power-function EMAs for one or more sigma_rel (see `phema.py`); its first
width is the one used for sampling, and snapshots of all widths allow post-hoc reconstruction.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from diffusionforge.train import phema
from diffusionforge.train.checkpoint import read_safetensors, write_safetensors


def _float_state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def _lerp_into(avg: dict[str, Tensor], model: nn.Module, weight: float | Tensor) -> None:
    for name, value in model.state_dict().items():
        if value.is_floating_point():
            avg[name].lerp_(value.detach().to(avg[name].dtype), weight)
        else:
            avg[name].copy_(value)


class ClassicEMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.avg = _float_state(model)

    def update(self, model: nn.Module, step: int, scale: Tensor | None = None) -> None:
        """step: number of optimizer steps taken so far (1 after the first). scale: a 0-dim
        tensor multiplying the step's weight (0: a skipped step, decided on the device)."""
        beta = min(self.decay, (1 + step) / (10 + step))
        _lerp_into(self.avg, model, (1.0 - beta) if scale is None else (1.0 - beta) * scale)

    def primary(self) -> dict[str, Tensor]:
        return self.avg

    def to(self, device: torch.device) -> None:
        self.avg = {k: v.to(device) for k, v in self.avg.items()}

    def map(self, fn: Callable[[dict[str, Tensor]], dict[str, Tensor]]) -> None:
        """Replace the average by fn(average), e.g. its shards under FSDP (train/sharding.py)."""
        self.avg = fn(self.avg)

    def state(self) -> dict[str, Tensor]:
        return self.avg

    def load_state(self, tensors: dict[str, Tensor]) -> None:
        self.avg = {k: tensors[k].clone() for k in self.avg}


class PowerEMA:
    def __init__(self, model: nn.Module, stds: list[float]):
        self.stds = list(stds)
        self.avgs = [_float_state(model) for _ in self.stds]

    def update(self, model: nn.Module, step: int, scale: Tensor | None = None) -> None:
        for std, avg in zip(self.stds, self.avgs, strict=True):
            w = 1.0 - phema.power_beta(std, step)
            _lerp_into(avg, model, w if scale is None else w * scale)

    def primary(self) -> dict[str, Tensor]:
        return self.avgs[0]

    def to(self, device: torch.device) -> None:
        self.avgs = [{k: v.to(device) for k, v in avg.items()} for avg in self.avgs]

    def map(self, fn: Callable[[dict[str, Tensor]], dict[str, Tensor]]) -> None:
        """Replace each average by fn(average), e.g. its shards under FSDP (train/sharding.py)."""
        self.avgs = [fn(avg) for avg in self.avgs]

    def state(self) -> dict[str, Tensor]:
        return {
            f"{_tag(std)}/{k}": v
            for std, avg in zip(self.stds, self.avgs, strict=True)
            for k, v in avg.items()
        }

    def load_state(self, tensors: dict[str, Tensor]) -> None:
        self.avgs = [
            {k: tensors[f"{_tag(std)}/{k}"].clone() for k in avg}
            for std, avg in zip(self.stds, self.avgs, strict=True)
        ]

    def save_snapshot(
        self, folder: Path, step: int, tensors: dict[str, Tensor] | None = None
    ) -> Path:
        """Write `tensors` (default: `state()`; a sharded run passes the gathered state)."""
        path = Path(folder) / f"phema-{step:09d}.safetensors"
        write_safetensors(path, self.state() if tensors is None else tensors, {"step": str(step)})
        return path


def _tag(std: float) -> str:
    return f"std={std:.4f}"


def posthoc_ema(folder: str | Path, sigma_rel: float, step: int | None = None) -> dict[str, Tensor]:
    """Rebuild the EMA of width `sigma_rel` at `step` (default: the last snapshot) from the
    snapshots in `folder` (EDM2, section 3.2). Returns a model state dict."""
    files = sorted(Path(folder).glob("phema-*.safetensors"))
    snaps = []  # (step, std, file)
    for f in files:
        t = int(re.fullmatch(r"phema-(\d+)\.safetensors", f.name).group(1))
        if step is None or t <= step:
            snaps.append((t, f))
    if not snaps:
        raise FileNotFoundError(f"{folder}: no post-hoc EMA snapshots (phema-*.safetensors)")
    t_out = snaps[-1][0] if step is None else step
    loaded = [(t, read_safetensors(f)) for t, f in snaps]
    keys = sorted({k for _, tensors in loaded for k in tensors})
    stds = sorted({float(k.split("/", 1)[0][4:]) for k in keys})
    names = sorted({k.split("/", 1)[1] for k in keys})
    in_t = [t for t, _ in loaded for _ in stds]
    in_std = [s for _ in loaded for s in stds]
    coef = phema.solve_coefficients(in_t, in_std, t_out, sigma_rel)
    out: dict[str, Tensor] = {}
    for name in names:
        parts = [tensors[f"{_tag(s)}/{name}"] for _, tensors in loaded for s in stds]
        if not parts[0].is_floating_point():
            out[name] = parts[-1].clone()
            continue
        acc = torch.zeros_like(parts[0], dtype=torch.float64)
        for c, p in zip(coef, parts, strict=True):
            acc += float(c) * p.double()
        out[name] = acc.to(parts[0].dtype)
    return out
