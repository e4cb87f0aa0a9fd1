"""Networks only: ``forward(x, c_noise, cond) -> tensor`` shaped like ``x``; no noise math here."""

from diffusionforge.nets.dit import DIT_PRESETS, DiT
from diffusionforge.nets.unet import UNET_PRESETS, UNet

__all__ = ["DIT_PRESETS", "UNET_PRESETS", "DiT", "UNet"]
