"""Every kind of checkpoint the package makes, in one table: what it is trained on, the picture
training draws of it, the CLI verb that samples it and the server handler that serves it.

A checkpoint's modality follows from its config.json alone (`modality_of`): an autoencoder by
its model.kind, every other model by the data.kind it was trained on. The CLI (`sample`,
`eval`, the help screen) and the server (`server/handlers.py`) read this table instead of
testing kinds themselves.

Adding a modality: a row here, plus its own modules: a dataset builder (train/builders_*.py,
registered by data.kind in train/datasets.py), a preview (train/previews.py), a pipeline
(pipelines/), a handler (server/*_handler.py) and the CLI verb (cli/). tests/test_modalities.py
checks that the table and the training registries agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from diffusionforge.server.audio_handler import AudioHandler
from diffusionforge.server.base import Handler
from diffusionforge.server.image_handler import ImageHandler
from diffusionforge.server.t2i_handler import Text2ImageHandler
from diffusionforge.server.text_handler import TextHandler
from diffusionforge.train import previews
from diffusionforge.train.builders_audio import AUDIO_KINDS
from diffusionforge.train.builders_t2i import CAPTIONED_KINDS
from diffusionforge.train.builders_text import TEXT_KINDS
from diffusionforge.train.checkpoint import resolve_checkpoint
from diffusionforge.train.datasets import IMAGE_KINDS


@dataclass(frozen=True)
class Modality:
    name: str
    summary: str  # one line: what its checkpoints make
    verb: str  # the CLI verb that draws from it
    data_kinds: tuple[str, ...]  # data.kind values whose checkpoints are this modality
    preview: Callable | None  # the training picture (train/previews.py), None: none
    handler: Handler | None  # serves it (server/), None: not served
    model_kind: str = ""  # a model.kind that alone decides the modality (the autoencoder)


_IMAGES, _T2I, _TEXT, _AUDIO = ImageHandler(), Text2ImageHandler(), TextHandler(), AudioHandler()

MODALITIES: dict[str, Modality] = {
    "vectors": Modality(
        "vectors", "points and arrays (toy sets, .npy)", "sample",
        ("toy", "npy"), previews.vectors, None,
    ),
    "image": Modality(
        "image", "images (--init-image/--mask edit one)", "sample",
        IMAGE_KINDS, previews.images, _IMAGES,
    ),
    "autoencoder": Modality(
        "autoencoder", "an image autoencoder for latent diffusion (eval: its PSNR)", "eval",
        (), previews.images, None, model_kind="autoencoder",
    ),
    "text2image": Modality(
        "text2image", "images from a prompt", "generate",
        tuple(CAPTIONED_KINDS), previews.captioned, _T2I,
    ),
    "text": Modality(
        "text", "text: generate, infill, answer a prompt", "generate-text",
        TEXT_KINDS, None, _TEXT,
    ),
    "audio": Modality(
        "audio", "audio clips (mel or waveform route)", "generate-audio",
        tuple(AUDIO_KINDS), previews.audio, _AUDIO,
    ),
}  # fmt: skip


def modality_of(config: dict) -> Modality | None:
    """The modality of a checkpoint's config.json (parsed), None for an unknown kind."""
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    for m in MODALITIES.values():
        if m.model_kind and model.get("kind") == m.model_kind:
            return m
    kind = data.get("kind")
    return next((m for m in MODALITIES.values() if kind in m.data_kinds), None)


def modality_at(path) -> Modality | None:
    """The modality of the checkpoint at `path` (a checkpoint or run folder, or a bundled
    name); None when there is none to read there (the caller's loader says why)."""
    try:
        return modality_of(resolve_checkpoint(path).config)
    except Exception:  # a missing or broken folder: the command's own loading reports it
        return None
