"""The picture the trainer saves every `train.sample_every` steps: data beside samples.

One function per data kind, `fn(net, objective, dataset, cfg, device) -> PIL.Image | None`,
in the dict literal `PREVIEWS`; a modality adds its own (a spectrogram, decoded latents...).
Data kinds without an entry get no preview. `net` holds the weights to show (the EMA when
there is one) and is in eval mode.
"""

from __future__ import annotations

import torch

from diffusionforge.core.draw import draw
from diffusionforge.pipelines.generate import grid_labels, real_examples
from diffusionforge.pipelines.plot import image_panels, picture


def images(net, objective, dataset, cfg, device):
    """A grid with one row per class (or one row for unlabelled data), real examples beside."""
    if cfg.formulation.kind == "vae":  # an autoencoder: originals above reconstructions
        from diffusionforge.train.builders_latent import reconstruction_preview

        return reconstruction_preview(net, dataset, cfg)
    labels, cols = grid_labels(cfg.model.num_classes, cfg.sample.n)
    n = cols if labels is None else len(labels)
    samples = draw(
        net, objective, dataset.shape, [cfg.sample.seed + i for i in range(n)], cfg.sample.plan(),
        cond=labels, guidance=cfg.sample.guidance, device=device,
        uncond=None if labels is None else torch.full_like(labels, cfg.model.num_classes),
    )  # fmt: skip
    data = real_examples(dataset, labels, n)
    ae = getattr(dataset, "autoencoder", None)
    if ae is not None:  # latent diffusion: show pictures, not latents
        samples, data = ae.decode(samples), ae.decode(data)
    title = f"samples, guidance {cfg.sample.guidance:g}"
    return image_panels([("data", data), (title, samples)], cols=cols)


def vectors(net, objective, dataset, cfg, device):
    """A scatter plot of 2-D points (or their first two coordinates) beside the data."""
    samples = draw(
        net,
        objective,
        dataset.shape,
        cfg.sample.seed,
        cfg.sample.plan(),
        n=cfg.sample.n,
        device=device,
    )
    return picture([("data", dataset.data[: cfg.sample.n]), ("samples", samples)])


def captioned(net, objective, dataset, cfg, device):
    """Text-to-image: scenes beside samples for their captions (pipelines/text2image.py); the
    images alone (an autoencoder on the scenes) have no captions and fall back to `images`."""
    if dataset.cond is None:
        return images(net, objective, dataset, cfg, device)
    from diffusionforge.pipelines.text2image import preview

    return preview(net, objective, dataset, cfg, device)


def audio(net, objective, dataset, cfg, device):
    """Spectrograms of real clips above samples, one per class (pipelines/audio.py)."""
    from diffusionforge.pipelines.audio import preview

    return preview(net, objective, dataset, cfg, device)


PREVIEWS = {
    "toy": vectors,
    "npy": vectors,
    "digits": images,
    "glyphs": images,
    "images": images,
    "scenes": captioned,
    "captions": captioned,
    **dict.fromkeys(("spoken-digits", "audio"), audio),
}
