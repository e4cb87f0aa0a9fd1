"""diffusionforge: train and sample diffusion models for images, text and audio.

The Python API in five names:

    import diffusionforge as df
    pipe = df.load("digits")  # a bundled name, a run/checkpoint folder or a diffusers folder
    images = pipe(4, seed=0, labels=[3, 7, 3, 7], nfe=16)   # PIL images (image models)
    x = pipe.generate_images([0, 1], labels=[3, 7])        # the same as tensors in [-1, 1]
    df.sample(denoise, (16, 2), nfe=16)  # any denoiser D(x, sigma, cond) -> x0, any sampler
    df.SAMPLERS, df.SCHEDULES, df.SAMPLER_INFO  # sampler / schedule functions and facts

- load(path): our checkpoints, run folders (their newest checkpoint) and bundled names give a
  pipelines.pipeline.Pipeline; diffusers folders a DiffusersModel. Text models are sampled by
  pipelines.text, audio by pipelines.audio (CLI: generate-text, generate-audio).
- sample(denoise, shape, nfe=, sampler=, schedule=): the recommended sampler and schedule for
  the NFE unless named (core.plan.Plan.resolve); a named sampler runs its own default schedule.
- fit_schedule(denoise, shape, nfe): step positions fitted to one model and sampler.
- The command line is the same thing: `diffusionforge --help`.
"""

from diffusionforge.core.fit_schedule import fit_schedule
from diffusionforge.core.sample import sample
from diffusionforge.core.samplers import SAMPLER_INFO, SAMPLERS
from diffusionforge.core.schedules import SCHEDULES

__all__ = ["SAMPLERS", "SAMPLER_INFO", "SCHEDULES", "fit_schedule", "load", "sample"]


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
