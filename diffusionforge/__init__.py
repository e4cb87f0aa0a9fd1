"""diffusionforge: train and sample diffusion models for images, text and audio."""

from diffusionforge.core.sample import sample

__all__ = ["sample"]
__version__ = "0.1.0"
