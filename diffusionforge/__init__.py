"""diffusionforge: train and sample diffusion models for images, text and audio."""

from diffusionforge.core.fit_schedule import fit_schedule
from diffusionforge.core.sample import sample

__all__ = ["fit_schedule", "load", "sample"]


def load(path, *, dtype: str = "float32", device: str = "cpu"):
    """A model folder, ready to sample: a diffusers folder (one network or a pipeline) becomes
    a pipelines.diffusers_model.DiffusersModel (`.denoiser`, `.generate`, `.encode_prompt`,
    `.decode`), loaded in `dtype` on `device`; one of our checkpoints (or a run folder, or a
    bundled name) its pipelines.generate.Pipeline."""
    # deferred: `import diffusionforge` stays light (no pipelines until a model is loaded)
    from diffusionforge.pipelines.diffusers_import import is_diffusers_folder

    if is_diffusers_folder(path):
        # deferred: as above
        from diffusionforge.pipelines.diffusers_model import load as load_diffusers

        return load_diffusers(path, dtype=dtype, device=device)
    # deferred: as above
    from diffusionforge.pipelines.pipeline import load_pipeline

    return load_pipeline(path)


__version__ = "0.1.0"
