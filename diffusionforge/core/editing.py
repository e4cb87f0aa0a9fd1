"""Image editing with any sampler: img2img (SDEdit) and inpainting, over the denoiser seam.

img2img (Meng et al. 2022, "SDEdit", Sec. 3.2): noise the input to an intermediate level and run
the reverse process from there. `strength` in [0, 1] is the fraction of the schedule that is run:
the last round(strength * n) of the n steps a sampler would take for the NFE budget (as diffusers'
img2img pipelines count it), so the start level sigma(strength) is one of the schedule's own.
Strength 0 returns the input untouched; strength 1 is plain sampling from the same noise (at
sigma_max the input's weight, 1 / sigma_max, is negligible, and dropping it makes the two equal).

Inpainting is a denoiser wrapper (DESIGN.md rule 3): where the mask says "keep", the clean
estimate is the known image itself, D'(x) = keep * known + generate * D(x). Every sampler then
moves the known pixels along x = known + sigma * n (their exact noisy trajectory: dx/dsigma =
(x - known) / sigma) and the network fills the rest consistently with what it sees, the
"replacement" conditioning of Song et al. 2021 (Score-SDE, App. I.2) in x0 form. The known pixels
are pasted once more at the end so they come back bit-exact, not up to sampler rounding.

Replacement alone lets the generated region follow the known one only partly (the network sees
the known pixels through their noise; benchmarks/inpainting_gaussian.py measures it).
`resample = r` adds RePaint's resampling (Lugmayr et al. 2022, Algorithm 1 with jump length 1):
after each step from sigma_i to sigma_i+1, noise back up to sigma_i and take the step again, r
times, so the two regions harmonise at every level; it costs (r + 1) x the NFE and runs the
sampler one step at a time (multistep samplers then take first-order steps).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from diffusionforge.core.denoiser import Cond, Denoiser
from diffusionforge.core.plan import Plan, start_level
from diffusionforge.core.sampler_utils import Callback, Generator, randn_like


def strength_sigmas(sigmas: Tensor, strength: float) -> Tensor:
    """The tail of a schedule (n steps, n + 1 sigmas ending in 0) that img2img runs: the last
    round(strength * n) steps. Strength 0 gives tensor([0.]): no step at all."""
    n = len(sigmas) - 1
    k = round(min(max(strength, 0.0), 1.0) * n)
    return sigmas[n - k :]


def inpaint(denoise: Denoiser, known: Tensor, mask: Tensor) -> Denoiser:
    """Keep `known` where `mask` is 0; the network's estimate where it is 1 (mask broadcasts
    to x: (B or 1, 1 or C, H, W))."""
    generate = mask > 0.5

    def wrapped(x: Tensor, sigma: Tensor, cond: Cond = None) -> Tensor:
        return torch.where(generate, denoise(x, sigma, cond), known.to(x.dtype))

    return wrapped


def edit(
    denoise: Denoiser,
    init: Tensor,
    *,
    nfe: int,
    strength: float = 1.0,
    mask: Tensor | None = None,
    sampler: str | None = None,
    schedule: str | Tensor | None = None,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    cond: Cond = None,
    generator: Generator = None,
    callback: Callback = None,
    resample: int = 0,
) -> Tensor:
    """img2img from `init` (B, ...) at `strength`, inpainting where `mask` is 1 when given
    (with `resample` RePaint resamplings per step); names resolve through Plan.resolve."""
    plan = Plan.resolve(nfe, sampler, schedule, inpainting=mask is not None)
    sigmas = plan.sigmas(sigma_min, sigma_max)
    return edit_sigmas(
        plan.sample_fn, denoise, init, sigmas, sigma_max=start_level(sigmas, sigma_max),
        strength=strength, mask=mask, cond=cond, generator=generator, callback=callback,
        resample=resample,
    )  # fmt: skip


def edit_sigmas(
    sample_fn,
    denoise: Denoiser,
    init: Tensor,
    full: Tensor,
    *,
    sigma_max: float | None = None,
    strength: float = 1.0,
    mask: Tensor | None = None,
    cond: Cond = None,
    generator: Generator = None,
    callback: Callback = None,
    resample: int = 0,
) -> Tensor:
    """`edit` with the sampler function and the full schedule `full` given.

    The noise is drawn exactly as core.sample.sample_sigmas draws it (scale `sigma_max`,
    default full[0]), so with strength 1 and no mask the result is the same bytes as sampling
    with the same generator, sampler and sigmas.
    """
    sigma_max = float(full[0]) if sigma_max is None else sigma_max
    sigmas = strength_sigmas(full, strength)
    noise = randn_like(torch.empty(init.shape, dtype=init.dtype, device=init.device), generator)
    if len(sigmas) == 1:  # strength 0: nothing to run
        return init.clone()
    s0 = float(sigmas[0])
    # the full schedule starts from noise * sigma_max exactly as sampling does
    x = noise * sigma_max if len(sigmas) == len(full) else init + s0 * noise  # (B, ...)
    if mask is not None:
        keep = ~(mask > 0.5)
        x = torch.where(keep, init + s0 * noise, x)  # known pixels start on their trajectory
        denoise = inpaint(denoise, init, mask)
    run = dict(cond=cond, generator=generator)
    if mask is None or resample <= 0:
        out = sample_fn(denoise, x, sigmas, callback=callback, **run)
    else:
        out = _resampled(sample_fn, denoise, x, sigmas, resample, callback, run)
    if mask is not None:
        out = torch.where(keep, init.to(out.dtype), out)
    return out


def _resampled(step_fn, denoise, x, sigmas, resample, callback, run) -> Tensor:
    """RePaint's loop (Lugmayr et al. 2022, Algorithm 1, jump length 1) around one-step calls of
    any sampler: step sigma_i -> sigma_i+1, then r times re-noise to sigma_i (fresh noise of
    variance sigma_i^2 - sigma_i+1^2) and step again; the step to 0 runs once."""
    for i in range(len(sigmas) - 1):
        hi, lo = float(sigmas[i]), float(sigmas[i + 1])
        repeats = resample if lo > 0 else 0
        for u in range(repeats + 1):
            last = u == repeats

            def report(d, i=i, last=last):
                if last and callback is not None:
                    callback({**d, "i": i})

            y = step_fn(denoise, x, sigmas[i : i + 2], callback=report, **run)
            if not last:
                x = y + math.sqrt(hi**2 - lo**2) * randn_like(y, run["generator"])
        x = y
    return x
