"""Every kind of checkpoint the package makes, in one table: the data kinds it is trained on
and how each is built, the picture training draws of it, the CLI verb that samples it and the
server handler that serves it. No other module says which data kinds make a modality, or
which builder and preview each gets.

A checkpoint's modality follows from its config.json alone (`modality_of`): an autoencoder by
its model.kind, every other model by the data.kind it was trained on. The CLI (`train`,
`sample`, `eval`, the help screen) and the server (`server/handlers.py`) read this table
instead of testing kinds themselves; the Trainer, on a lower floor, is handed its row's dataset
builder and preview (`make_trainer`).

Adding a modality: a row here, plus its own modules: its dataset builders (data.kind ->
builder, train/builders_*.py), a preview (train/previews.py), a pipeline (pipelines/), a
handler (server/*_handler.py) and the CLI verb (cli/).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from diffusionforge.server.audio_handler import AudioHandler
from diffusionforge.server.base import Handler
from diffusionforge.server.image_handler import ImageHandler
from diffusionforge.server.t2i_handler import Text2ImageHandler
from diffusionforge.server.text_handler import TextHandler
from diffusionforge.train import datasets, previews
from diffusionforge.train.builders_audio import AUDIO_KINDS
from diffusionforge.train.builders_t2i import CAPTIONED_KINDS
from diffusionforge.train.builders_text import TEXT_KINDS, text_dataset
from diffusionforge.train.checkpoint import resolve_checkpoint
from diffusionforge.train.config import Config

if TYPE_CHECKING:
    from diffusionforge.train.trainer import Trainer


@dataclass(frozen=True)
class Modality:
    name: str
    summary: str  # one line: what its checkpoints make
    verb: str  # the CLI verb that draws from it
    datasets: Mapping[str, Callable]  # data.kind -> builder(cfg) of the data it trains on
    preview: Callable | None  # the training picture (train/previews.py), None: none
    handler: Handler | None  # serves it (server/), None: not served
    model_kind: str = ""  # a model.kind that alone decides the modality (the autoencoder)

    @property
    def data_kinds(self) -> tuple[str, ...]:
        """The data.kind values whose checkpoints are this modality."""
        return tuple(self.datasets)


_IMAGES, _T2I, _TEXT, _AUDIO = ImageHandler(), Text2ImageHandler(), TextHandler(), AudioHandler()

MODALITIES: dict[str, Modality] = {
    "vectors": Modality(
        "vectors", "points and arrays (toy sets, .npy)", "sample",
        datasets.VECTOR_DATASETS, previews.vectors, None,
    ),
    "image": Modality(
        "image", "images (--init-image/--mask edit one)", "sample",
        datasets.IMAGE_DATASETS, previews.images, _IMAGES,
    ),
    "autoencoder": Modality(
        "autoencoder", "an image autoencoder for latent diffusion (eval: its PSNR)", "eval",
        {}, previews.images, None, model_kind="autoencoder",
    ),
    "text2image": Modality(
        "text2image", "images from a prompt", "generate",
        CAPTIONED_KINDS, previews.captioned, _T2I,
    ),
    "text": Modality(
        "text", "text: generate, infill, answer a prompt", "generate-text",
        dict.fromkeys(TEXT_KINDS, text_dataset), None, _TEXT,
    ),
    "audio": Modality(
        "audio", "audio clips (mel or waveform route)", "generate-audio",
        AUDIO_KINDS, previews.audio, _AUDIO,
    ),
}  # fmt: skip

# data.kind -> dataset builder, over every row (the autoencoder trains on the image kinds)
DATASETS = {kind: build for m in MODALITIES.values() for kind, build in m.datasets.items()}


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


def build_dataset(cfg: Config):
    """The dataset cfg describes, made by its data.kind's builder (ConfigError naming the kinds
    for an unknown one)."""
    return datasets.build_dataset(cfg, DATASETS)


def make_trainer(cfg: Config, run_dir: str | Path, **kwargs) -> Trainer:
    """A Trainer for cfg, handed its data kind's dataset builder and training preview; kwargs
    go to Trainer (resume=, until_step=, dataset=, formulation=, log=...)."""
    # deferred: the training loop (accelerate) loads to train, not for cli/main's `--help`
    from diffusionforge.train.trainer import Trainer

    kind = cfg.data.kind
    preview = next((m.preview for m in MODALITIES.values() if kind in m.datasets), None)
    return Trainer(cfg, run_dir, build_dataset=build_dataset, preview=preview, **kwargs)
