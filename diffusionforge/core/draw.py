"""The recipe, once: network -> denoiser -> guidance -> per-image generators -> sample or edit
-> decode. The CLI, the server, the demo and training previews all draw through `draw`.

- The network becomes a Denoiser through its formulation's `precondition` (DESIGN.md); a
  callable that already is a Denoiser is used as it is. The formulation also gives the sampling
  range (sigma_min, sigma_max) that the plan's schedule spans.
- Classifier-free guidance (core.guidance.cfg) wraps the denoiser when guidance != 1, with
  `uncond` (a null label, an empty caption's rows) as the unconditional branch.
- `seeds`: one seed per image gives each image its own torch.Generator, so an image does not
  depend on the batch it is drawn in; a single int seeds one generator for the whole batch.
- `edit` (img2img / inpainting, core.editing) starts from an image instead of noise; with a
  latent model's autoencoder (`decoder`) the image and mask move into latent space first, and
  the kept pixels are pasted back after decoding so they come back exactly.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffusionforge.core.denoiser import Cond
from diffusionforge.core.editing import edit_sigmas
from diffusionforge.core.guidance import cfg
from diffusionforge.core.plan import Plan, start_level
from diffusionforge.core.sample import sample_sigmas
from diffusionforge.core.sampler_utils import Callback


@dataclass(frozen=True)
class Edit:
    """img2img from `init` ((1 or B, C, H, W) pixels in [-1, 1]) running the last `strength` of
    the schedule; with `mask` ((1 or B, 1, H, W), 1 = generate, 0 = keep) inpainting, with
    `resample` RePaint resamplings per step."""

    init: Tensor
    strength: float = 1.0
    mask: Tensor | None = None
    resample: int = 0


class Decoder(Protocol):
    """A latent model's autoencoder: latents <-> pixels (both on the CPU), `factor` pixels per
    latent cell."""

    factor: int

    def encode(self, x: Tensor) -> Tensor: ...

    def decode(self, z: Tensor) -> Tensor: ...


@torch.no_grad()
def draw(
    net: nn.Module | Any,
    formulation: Any,
    shape: Sequence[int],
    seeds: Sequence[int] | int,
    plan: Plan,
    *,
    n: int | None = None,
    cond: Cond = None,
    guidance: float = 1.0,
    uncond: Cond = None,
    edit: Edit | None = None,
    decoder: Decoder | None = None,
    device: str | torch.device | None = None,
    callback: Callback = None,
) -> Tensor:
    """Samples (B, *shape) on the CPU, decoded to pixels when a `decoder` is given.

    B = len(seeds), or `n` with a single int seed. `shape` is one example's shape in the
    model's space (a latent's for latent models). `device` defaults to the network's."""
    device = torch.device(device) if device is not None else _device_of(net)
    if isinstance(net, nn.Module):
        if _device_of(net) != device:
            net = copy.deepcopy(net).to(device).eval()
        denoise = formulation.precondition(net)
    else:
        denoise = net  # already a Denoiser
    cond, uncond = _to(cond, device), _to(uncond, device)
    if cond is not None and guidance != 1.0:
        denoise = cfg(denoise, guidance, uncond)
    # Generators on the CPU whatever the device (noise is drawn there and copied over): one
    # seed gives one image on a CPU and on a GPU alike, to rounding.
    if isinstance(seeds, int):
        generator = torch.Generator().manual_seed(seeds)
        batch = n if n is not None else 1
    else:
        generator = [torch.Generator().manual_seed(int(s)) for s in seeds]
        batch = len(seeds)
    shape = (batch, *shape)
    sigmas = plan.sigmas(formulation.sigma_min, formulation.sigma_max)
    start = start_level(sigmas, formulation.sigma_max)  # a table's or `leading`'s own first level
    run = dict(sigma_max=start, cond=cond, generator=generator, callback=callback)
    if edit is None:
        out = sample_sigmas(plan.sample_fn, denoise, shape, sigmas, device=device, **run)
        out = out.cpu()
        return decoder.decode(out) if decoder is not None else out
    x0 = edit.init.float().expand(batch, *edit.init.shape[1:])  # (B, C, H, W) pixels
    m = None if edit.mask is None else edit.mask.float().expand(batch, 1, *edit.mask.shape[-2:])
    z0, mz = x0, m
    if decoder is not None:
        z0 = decoder.encode(x0)
        mz = None if m is None else latent_mask(m, decoder.factor)
    z0, mz = z0.to(device), _to(mz, device)
    out = edit_sigmas(
        plan.sample_fn, denoise, z0, sigmas, strength=edit.strength, mask=mz,
        resample=edit.resample, **run,
    ).cpu()  # fmt: skip
    if decoder is not None:
        out = decoder.decode(out)
    if m is not None:  # kept pixels come back exactly, in pixel and in latent space
        out = torch.where(m > 0.5, out, x0.to(out.dtype))
    return out


def latent_mask(mask: Tensor, factor: int) -> Tensor:
    """(B, 1, H, W) pixel mask -> (B, 1, H/f, W/f): a latent cell is generated if any of its
    pixels is (its kept pixels are pasted back after decoding)."""
    return F.max_pool2d((mask > 0.5).float(), factor) if factor > 1 else (mask > 0.5).float()


def _to(x, device):
    return x.to(device) if isinstance(x, Tensor) else x


def _device_of(net) -> torch.device:
    p = next(net.parameters(), None) if isinstance(net, nn.Module) else None
    return p.device if p is not None else torch.device("cpu")
