"""diffusionforge: train and sample diffusion models for images, text and audio.

The Python API in five names:

    import diffusionforge as df
    pipe = df.load("digits")  # a bundled name, a run/checkpoint folder or a diffusers folder
    images = pipe(4, seed=0, labels=[3, 7, 3, 7], nfe=16)   # PIL images (image models)
    x = pipe.generate_images([0, 1], labels=[3, 7])        # the same as tensors in [-1, 1]
    df.sample(denoise, (16, 2), nfe=16)  # any denoiser D(x, sigma, cond) -> x0, any sampler
    df.SAMPLERS, df.SCHEDULES, df.SAMPLER_INFO  # sampler / schedule functions and facts

- load(path): our checkpoints, run folders (their newest checkpoint) and bundled names give the
  pipeline of their kind, whose call returns PIL images (image and text-to-image models),
  strings (text: `df.load("grammar")(2, prompt="the cat [____] sleeps.")`) or waveforms
  (audio: `df.load("audio-digits")(2, labels="seven")`); diffusers folders a DiffusersModel.
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
    bundled name) the pipeline of its kind, each callable: Pipeline (images: `pipe(n, seed=,
    labels=)` -> PIL images; vectors: arrays), TextPipeline (`pipe(n, prompt=)` -> strings),
    AudioPipeline (`pipe(n, labels=)` -> waveforms), Text2ImagePipeline (`pipe("a red
    circle", n)` -> PIL images)."""
    # deferred: `import diffusionforge` stays light (no pipelines until a model is loaded)
    from diffusionforge.pipelines.diffusers_import import is_diffusers_folder

    if is_diffusers_folder(path):
        # deferred: as above
        from diffusionforge.pipelines.diffusers_model import load as load_diffusers

        return load_diffusers(path, dtype=dtype, device=device)
    # deferred: as above
    from diffusionforge.modalities import MODALITIES, modality_at

    kind = modality_at(path)
    if kind is MODALITIES["text"]:
        # deferred: as above
        from diffusionforge.pipelines.text import load_text_pipeline

        return load_text_pipeline(path)
    if kind is MODALITIES["audio"]:
        # deferred: as above
        from diffusionforge.pipelines.audio import load_audio_pipeline

        return load_audio_pipeline(path)
    if kind is MODALITIES["text2image"]:
        # deferred: as above
        from diffusionforge.pipelines.text2image import load_text2image

        return load_text2image(path)
    # deferred: as above
    from diffusionforge.pipelines.pipeline import load_pipeline

    return load_pipeline(path)


__version__ = "0.1.0"
