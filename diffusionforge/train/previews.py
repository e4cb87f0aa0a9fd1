"""The picture the trainer saves every `train.sample_every` steps: data beside samples.

One function per modality, `fn(net, objective, dataset, cfg, device) -> PIL.Image | None`; the
modality table (modalities.py) names each modality's preview and hands it to the Trainer, and
a modality with none trains without pictures. `net` holds the weights to show (the EMA when
there is one) and is in eval mode.
"""

from __future__ import annotations

import torch
from torch import Tensor

from diffusionforge.core.draw import draw
from diffusionforge.plot import image_panels, labelled_panels, picture, spectrogram_image
from diffusionforge.train.builders_audio import decode, route_of
from diffusionforge.train.builders_latent import reconstruction_preview


def images(net, objective, dataset, cfg, device):
    """A grid with one row per class (or one row for unlabelled data), real examples beside."""
    if cfg.formulation.kind == "vae":  # an autoencoder: originals above reconstructions
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
    return _captioned(net, objective, dataset, cfg, device)


def audio(net, objective, dataset, cfg, device):
    """Spectrograms of real clips above samples: one per class (or 5 samples)."""
    route, spec = route_of(cfg)
    a = cfg.data.audio
    length = round(a.seconds * a.rate)
    k = max(cfg.model.num_classes, 0)
    labels = torch.arange(k) if k else None
    n = k or 5
    x = draw(
        net, objective, dataset.shape, [cfg.sample.seed + i for i in range(n)],
        cfg.sample.plan(), cond=labels, guidance=cfg.sample.guidance,
        uncond=None if labels is None else torch.full_like(labels, k), device=device,
    )  # fmt: skip
    if labels is not None and dataset.labels is not None:
        real = torch.stack([dataset.data[(dataset.labels == c).nonzero()[0, 0]] for c in range(k)])
    else:
        real = dataset.data[:n]
    names = dataset.classes or [str(i) for i in range(n)]
    titles = [names[i] if labels is not None else f"sample {i}" for i in range(n)]
    real_w = decode(real, route, spec, length, 16)
    fake_w = decode(x, route, spec, length, 16)
    return labelled_panels(
        [
            ("data", spectrogram_image(real_w, a.rate, titles)),
            (f"samples, NFE {cfg.sample.nfe}", spectrogram_image(fake_w, a.rate, titles)),
        ]
    )


def _captioned(net, objective, dataset, cfg, device):
    """Real scenes beside samples for their captions (first sample.n training examples)."""
    n = min(cfg.sample.n, len(dataset), 32)
    cond = dataset.cond[:n]
    x = draw(
        net, objective, dataset.shape, [cfg.sample.seed + i for i in range(n)],
        cfg.sample.plan(), cond=cond, guidance=cfg.sample.guidance,
        uncond=dataset.null_cond.expand_as(cond), device=device,
    )  # fmt: skip
    data = dataset.data[:n]
    ae = getattr(dataset, "autoencoder", None)
    if ae is not None:  # a latent dataset (train/builders_latent.py): decode for the picture
        x, data = ae.decode(x), ae.decode(data)
    title = f"samples, guidance {cfg.sample.guidance:g}"
    return image_panels([("data", data), (title, x.clamp(-1, 1))], cols=8)


def grid_labels(num_classes: int, n: int, per_class_max: int = 10) -> tuple[Tensor | None, int]:
    """Labels for a picture with one row per class: (labels (classes * k,), k columns);
    unconditional models get (None, n) for a single batch of n."""
    if num_classes <= 0:
        return None, n
    k = max(1, min(per_class_max, n // num_classes))
    return torch.arange(num_classes).repeat_interleave(k), k


def real_examples(dataset, labels: Tensor | None, n: int) -> Tensor:
    """Training images laid out like `labels` (the first examples of each class), for a panel
    of real data beside the samples."""
    if labels is None or dataset.labels is None:
        return dataset.data[:n]
    picks, used = [], {}
    for lab in labels.tolist():
        where = (dataset.labels == lab).nonzero().flatten()
        k = used.get(lab, 0)
        used[lab] = k + 1
        # spread over the class (glyphs list each font's copies together)
        pick = where[(k * 977) % len(where)] if len(where) else None
        picks.append(dataset.data[pick] if pick is not None else dataset.data[0] * 0)
    return torch.stack(picks)
