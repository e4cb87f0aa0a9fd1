"""Builders for the autoencoder (model.kind = "autoencoder", formulation.kind = "vae") and for
latent-diffusion datasets (data.autoencoder = CHECKPOINT): config -> objects, like builders.py.

An autoencoder checkpoint carries `latent.json` (shift and scale that make its latents zero-mean,
unit-variance over the training data), written with every checkpoint by the objective's
`checkpoint_files` hook from the very weights saved beside it, so nobody has to run a separate
step. A latent-diffusion dataset copies the autoencoder's files into every checkpoint of the
diffusion run (under `autoencoder/`), so a latent model's folder decodes on its own.
"""

from __future__ import annotations

import json

import torch
from torch import nn

from diffusionforge.core.vae import VAEObjective, latent_stats
from diffusionforge.data.arrays import ArrayDataset
from diffusionforge.errors import ConfigError
from diffusionforge.eval.psnr import psnr
from diffusionforge.nets.autoencoder import AUTOENCODER_PRESETS, KLAutoencoder
from diffusionforge.plot import image_panels

LATENT_FILE = "latent.json"  # shift/scale of an autoencoder checkpoint
AUTOENCODER_DIR = "autoencoder"  # where a latent model's checkpoint keeps its autoencoder
STATS_EXAMPLES = 4096  # examples the latent statistics are measured on (evenly spaced)


def build_autoencoder(cfg, shape: tuple[int, ...]) -> nn.Module:
    a = cfg.model.autoencoder
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise ConfigError(f"model.kind: autoencoder needs images (C, H, W), got {shape}")
    if a.preset not in AUTOENCODER_PRESETS:
        names = ", ".join(AUTOENCODER_PRESETS)
        raise ConfigError(f"model.autoencoder.preset: expected one of {names}, got {a.preset!r}")
    kw = dict(AUTOENCODER_PRESETS[a.preset])
    for key in ("channels", "num_res_blocks", "decoder_blocks", "patch_size"):
        if getattr(a, key):
            kw[key] = getattr(a, key)
    if a.channel_mult:
        kw["channel_mult"] = tuple(a.channel_mult)
    factor = kw.get("patch_size", 1) * 2 ** (len(kw["channel_mult"]) - 1)
    if shape[1] % factor or shape[2] % factor:
        raise ConfigError(
            f"model.autoencoder: image size {shape[1]}x{shape[2]} is not divisible by the "
            f"downsampling factor {factor} (patch_size x 2^(len(channel_mult) - 1))"
        )
    if a.latent_channels <= 0:
        raise ConfigError(
            f"model.autoencoder.latent_channels: expected 1 or more, got {a.latent_channels}"
        )
    return KLAutoencoder(shape[0], a.latent_channels, **kw)


class VAETraining(VAEObjective):
    """The VAE objective plus the file it adds to every checkpoint: the latent statistics."""

    def checkpoint_files(self, net: nn.Module, dataset: ArrayDataset) -> dict[str, bytes]:
        return {LATENT_FILE: json.dumps(measure_latents(net, dataset.data), indent=1).encode()}


def vae_objective(cfg) -> VAETraining:
    w = cfg.formulation.kl_weight
    if not w >= 0:
        raise ConfigError(f"formulation.kl_weight: expected 0 or more, got {w}")
    return VAETraining(kl_weight=w)


@torch.no_grad()
def encode_means(net: nn.Module, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Posterior means of `images` (N, C, H, W), in batches, on the network's device."""
    dev = next(net.parameters()).device
    was_training = net.training
    net.eval()
    out = [net.encode(images[i : i + batch].to(dev))[0].cpu() for i in range(0, len(images), batch)]
    net.train(was_training)
    return torch.cat(out)


@torch.no_grad()
def measure_latents(net: nn.Module, images: torch.Tensor, batch: int = 256) -> dict:
    """Shift and scale of the posterior means over up to STATS_EXAMPLES evenly spaced images,
    and the mean reconstruction PSNR (dB) of those images through the posterior means."""
    n = len(images)
    idx = torch.linspace(0, n - 1, min(n, STATS_EXAMPLES)).round().long().unique()
    z = encode_means(net, images[idx], batch)
    shift, scale = latent_stats(z)
    dev = next(net.parameters()).device
    was_training = net.training
    net.eval()
    recon = torch.cat([net.decode(z[i : i + batch].to(dev)).cpu() for i in range(0, len(z), batch)])
    net.train(was_training)
    return {
        "shift": shift,
        "scale": scale,
        "std": 1.0 / scale,
        "examples": len(idx),
        "latent_shape": list(z.shape[1:]),
        "psnr_db": float(psnr(recon.clamp(-1, 1), images[idx].clamp(-1, 1)).mean()),
    }


@torch.no_grad()
def reconstruction_preview(net: nn.Module, dataset: ArrayDataset, cfg):
    """The training picture of an autoencoder: data and reconstructions, with their PSNR."""
    n = min(len(dataset), max(8, min(cfg.sample.n, 64)))
    idx = torch.linspace(0, len(dataset) - 1, n).round().long()
    x = dataset.data[idx]
    dev = next(net.parameters()).device
    recon = net(x.to(dev))[0].cpu().clamp(-1, 1)
    cols = min(n, 8)
    title = f"reconstructions, PSNR {float(psnr(recon, x).mean()):.2f} dB"
    return image_panels([("data", x), (title, recon)], cols=cols)
