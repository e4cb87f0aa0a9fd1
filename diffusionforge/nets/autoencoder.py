"""A KL-regularised convolutional autoencoder for latent diffusion (Rombach et al. 2022, Sec. 3
and App. G, "KL-reg"; the network follows their ``AutoencoderKL`` without attention).

The encoder maps an image (B, C, H, W) to the mean and log-variance of a diagonal Gaussian over
latents (B, z, H/f, W/f), f = 2 ** (len(channel_mult) - 1); the decoder maps latents back. No
loss here: the objective (core.vae) draws the posterior noise and weighs the terms, and the
latent scale that makes latents unit-variance for diffusion is computed from data afterwards.
Attention is left out on purpose: at 8x8 latents a few 3x3 convolutions already see the whole
picture, and it keeps the bundled weights around a megabyte.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffusionforge.nets.embed import group_count


class ResBlock(nn.Module):
    """GN -> SiLU -> conv -> GN -> SiLU -> conv, plus a (1x1 when widths differ) skip."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm0 = nn.GroupNorm(group_count(cin), cin)
        self.conv0 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm1 = nn.GroupNorm(group_count(cout), cout)
        self.conv1 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        h = self.conv1(F.silu(self.norm1(h)))
        return (h + self.skip(x)) * math.sqrt(0.5)  # keeps activation variance as blocks stack


class Encoder(nn.Module):
    """(B, C, H, W) -> (B, 2 z, H/f, W/f): the posterior's mean and log-variance, stacked."""

    def __init__(
        self, cin: int, z: int, channels: int, mult: tuple[int, ...], blocks: int, patch: int
    ):
        super().__init__()
        # patch > 1: fold patch x patch pixels into channels first (pixel unshuffle), so no
        # layer runs at full resolution: the cheapest way to halve a CPU budget at 32x32.
        layers: list[nn.Module] = [nn.PixelUnshuffle(patch)] if patch > 1 else []
        layers.append(nn.Conv2d(cin * patch**2, channels * mult[0], 3, padding=1))
        cur = channels * mult[0]
        for level, m in enumerate(mult):
            for _ in range(blocks):
                layers.append(ResBlock(cur, channels * m))
                cur = channels * m
            if level < len(mult) - 1:
                layers.append(nn.Conv2d(cur, cur, 3, stride=2, padding=1))
        layers += [
            ResBlock(cur, cur),
            nn.GroupNorm(group_count(cur), cur),
            nn.SiLU(),
            nn.Conv2d(cur, 2 * z, 3, padding=1),
        ]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class Decoder(nn.Module):
    """(B, z, h, w) -> (B, C, h f, w f): the mirror of the encoder, nearest-neighbour upsampling."""

    def __init__(
        self, cout: int, z: int, channels: int, mult: tuple[int, ...], blocks: int, patch: int
    ):
        super().__init__()
        cur = channels * mult[-1]
        layers: list[nn.Module] = [nn.Conv2d(z, cur, 3, padding=1), ResBlock(cur, cur)]
        for level in reversed(range(len(mult))):
            for _ in range(blocks):
                layers.append(ResBlock(cur, channels * mult[level]))
                cur = channels * mult[level]
            if level > 0:
                layers += [nn.Upsample(scale_factor=2.0, mode="nearest")]
                layers += [nn.Conv2d(cur, cur, 3, padding=1)]
        layers += [
            nn.GroupNorm(group_count(cur), cur),
            nn.SiLU(),
            nn.Conv2d(cur, cout * patch**2, 3, padding=1),
        ]
        if patch > 1:  # sub-pixel convolution (Shi et al. 2016): channels -> patch x patch pixels
            layers.append(nn.PixelShuffle(patch))
        self.layers = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.layers(z)


class KLAutoencoder(nn.Module):
    """forward(x (B,C,H,W), noise (B,z,H/f,W/f) | None) -> (reconstruction, mean, logvar).

    With ``noise`` the decoder sees the posterior sample mean + std * noise (reparameterisation,
    Kingma & Welling 2014, Sec. 2.4); without it, the mean. One forward for training keeps the
    whole step inside ``forward``, which distributed wrappers (DDP) need to sync gradients.
    """

    def __init__(
        self,
        in_channels: int = 3,
        latent_channels: int = 4,
        channels: int = 32,
        channel_mult: tuple[int, ...] = (1, 2, 2),
        num_res_blocks: int = 1,
        decoder_blocks: int | None = None,
        patch_size: int = 1,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.latent_channels = latent_channels
        self.factor = patch_size * 2 ** (len(channel_mult) - 1)  # spatial downsampling factor
        dec_blocks = num_res_blocks if decoder_blocks is None else decoder_blocks
        args = (latent_channels, channels, channel_mult)
        self.encoder = Encoder(in_channels, *args, num_res_blocks, patch_size)
        self.decoder = Decoder(in_channels, *args, dec_blocks, patch_size)

    def latent_shape(self, image_shape: tuple[int, ...]) -> tuple[int, int, int]:
        _, h, w = image_shape
        return self.latent_channels, h // self.factor, w // self.factor

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and log-variance, each (B, z, H/f, W/f); the log-variance is clamped
        as in LDM's DiagonalGaussianDistribution so exp() stays finite early in training."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def forward(self, x: Tensor, noise: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        mean, logvar = self.encode(x)
        z = mean if noise is None else mean + torch.exp(0.5 * logvar) * noise
        return self.decode(z), mean, logvar


# Named sizes (parameters at 3 channels, 4 latent channels); factor = patch * 2^(levels - 1).
AUTOENCODER_PRESETS: dict[str, dict] = {
    # f = 4 (32x32 -> 8x8), 0.39M parameters (1.6 MB): the scenes autoencoder. Pixel unshuffle
    # first made a training step 3x cheaper on CPU than a full-resolution first stage.
    "f4-small": {"channels": 32, "channel_mult": (1, 2), "num_res_blocks": 1, "patch_size": 2},
    # f = 8 (64x64 -> 8x8).
    "f8-small": {"channels": 32, "channel_mult": (1, 2, 2), "num_res_blocks": 1, "patch_size": 2},
    # f = 2: for 8x8 images such as the built-in digits (8x8 -> 4x4), and tests.
    "f2-tiny": {"channels": 16, "channel_mult": (1, 2), "num_res_blocks": 1},
}
