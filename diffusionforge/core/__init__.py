"""diffusionforge.core: the math. Imports torch and nothing else of ours (DESIGN.md)."""

from diffusionforge.core.denoiser import Cond, Denoiser, Net

__all__ = ["Cond", "Denoiser", "Net"]
