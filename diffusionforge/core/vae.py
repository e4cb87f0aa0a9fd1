"""The KL-regularised autoencoder objective and its latent normalisation (Rombach et al. 2022,
"High-Resolution Image Synthesis with Latent Diffusion Models", Sec. 3 and App. G).

Per example, with the posterior q(z | x) = N(mean, diag(exp(logvar))) and z = mean + std * n:

    loss = mean_pixels (D(z) - x)^2  +  kl_weight * KL(q(z | x) || N(0, I)) / pixels

(the Gaussian-decoder ELBO of Kingma & Welling 2014, eq. 10, with the decoder variance folded into
kl_weight = 2 sigma_dec^2, normalised per pixel so the weight does not depend on image size). LDM
keeps the weight tiny (1e-6 against summed L1 + LPIPS): the KL term only stops latents drifting
to arbitrary scales, and the scale is then fixed afterwards: latents are shifted and multiplied so
they have zero mean and unit variance over the data (LDM App. G "rescaling"; SD3's shift factor).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def gaussian_kl(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) summed over all but the batch axis: (B,)."""
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


@dataclass(frozen=True)
class VAEObjective:
    """Training objective of nets.autoencoder.KLAutoencoder; `model(x, noise)` returns
    (reconstruction, mean, logvar)."""

    kl_weight: float = 1e-6

    def loss(self, model, x: Tensor, cond=None, *, generator=None) -> Tensor:
        mean_shape = _latent_shape(model, x)
        dev = generator.device if generator is not None else x.device
        noise = torch.randn(mean_shape, generator=generator, device=dev, dtype=x.dtype).to(x.device)
        recon, mean, logvar = model(x, noise)
        rec = (recon.float() - x.float()).square().flatten(1).mean(1)
        kl = gaussian_kl(mean.float(), logvar.float()) / x[0].numel()
        return rec + self.kl_weight * kl


def _latent_shape(model, x: Tensor) -> tuple[int, ...]:
    inner = getattr(model, "module", model)  # a DDP wrapper keeps the network in .module
    return (x.shape[0], *inner.latent_shape(tuple(x.shape[1:])))


def latent_stats(latents: Tensor) -> tuple[float, float]:
    """(shift, scale) with (z - shift) * scale of zero mean and unit variance over all elements,
    computed in float64: one scalar pair, as LDM's scale_factor (and SD3's shift_factor)."""
    z = latents.double().flatten()
    return float(z.mean()), float(1.0 / z.std().clamp_min(1e-12))
