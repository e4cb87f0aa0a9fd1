"""Builders for audio: the spoken-digits and audio-folder datasets, the DiffWave network.

`data.audio.representation` picks the route: "mel" turns every clip into a (1, n_mels, frames)
log-mel image in [-1, 1] for the image networks (unet/dit); "wave" keeps the (1, L) samples for
`model.kind = "diffwave"`. The clips, rate and labels are the same for both, so the two routes
train on one data set (benchmarks/audio_routes.py compares them).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from diffusionforge.core.spectral import MelSpec
from diffusionforge.data.arrays import ArrayDataset
from diffusionforge.data.audio import AudioFolder
from diffusionforge.data.spoken_digits import DIGIT_WORDS, load_spoken_digits
from diffusionforge.errors import ConfigError, DataError
from diffusionforge.nets.diffwave import DiffWave
from diffusionforge.train.config import AudioDataConfig, Config

REPRESENTATIONS = ("mel", "wave")


def mel_spec(a: AudioDataConfig) -> MelSpec:
    """The analysis of the mel route, checked: square images for the image networks."""
    frames = round(a.seconds * a.rate) // a.hop if a.hop > 0 else 0
    if a.hop <= 0 or a.n_fft < a.hop or a.n_mels < 4:
        raise ConfigError(
            f"data.audio: needs hop > 0, n_fft >= hop and n_mels >= 4 "
            f"(got hop {a.hop}, n_fft {a.n_fft}, n_mels {a.n_mels})"
        )
    if frames != a.n_mels:
        raise ConfigError(
            f"data.audio: the mel image must be square: n_mels {a.n_mels} but "
            f"seconds * rate / hop = {frames} frames (set data.audio.hop = "
            f"{round(a.seconds * a.rate) // a.n_mels})"
        )
    return MelSpec(rate=a.rate, n_fft=a.n_fft, hop=a.hop, n_mels=a.n_mels)


def check_audio(a: AudioDataConfig) -> None:
    if a.representation not in REPRESENTATIONS:
        raise ConfigError(
            f"data.audio.representation: expected one of {', '.join(REPRESENTATIONS)}, "
            f"got {a.representation!r}"
        )
    if not 1000 <= a.rate <= 96000 or not 0.05 <= a.seconds <= 30:
        raise ConfigError(
            f"data.audio: rate must lie in 1000..96000 Hz and seconds in 0.05..30 "
            f"(got {a.rate}, {a.seconds})"
        )
    if a.representation == "mel":
        mel_spec(a)


def load_clips(cfg: Config) -> tuple[Tensor, Tensor | None, list[str]]:
    """(N, L) waveforms, labels (N,) or None, class names, as data.kind says."""
    a = cfg.data.audio
    check_audio(a)
    if cfg.data.kind == "spoken-digits":
        if a.seconds != 1.0:
            raise ConfigError("data.audio.seconds: spoken-digits clips are 1 second long")
        waves, labels, _ = load_spoken_digits(a.rate, a.per_voice)
        return waves, labels, list(DIGIT_WORDS)

    if not cfg.data.path:
        raise DataError("data.path: an audio folder is needed when data.kind = audio (--data)")
    folder = AudioFolder(Path(cfg.data.path).expanduser(), a.rate, a.seconds)
    if len(folder) < 2:
        raise DataError(f"{folder.root}: {len(folder)} clip(s); training needs at least 2")
    labelled = folder.num_classes > 1
    return folder.waves, folder.labels if labelled else None, folder.classes if labelled else []


def to_representation(waves: Tensor, a: AudioDataConfig) -> Tensor:
    """(N, L) -> (N, 1, n_mels, frames) log-mel images, or (N, 1, L) samples."""
    if a.representation == "wave":
        return waves[:, None].contiguous()
    spec = mel_spec(a)
    return torch.cat([spec.log_mel(waves[i : i + 256]) for i in range(0, len(waves), 256)])[
        :, None
    ].contiguous()


def audio_dataset(cfg: Config) -> ArrayDataset:
    waves, labels, classes = load_clips(cfg)
    return ArrayDataset(
        to_representation(waves, cfg.data.audio),
        seed=cfg.train.seed,
        labels=labels,
        classes=classes or None,
    )


def build_diffwave(cfg: Config, shape: tuple[int, ...]) -> nn.Module:
    w = cfg.model.diffwave
    if len(shape) != 2 or shape[0] != 1:
        raise ConfigError(
            f"model.kind: diffwave needs waveforms (1, L) (data.audio.representation = wave), "
            f"got examples of shape {shape}"
        )
    if w.channels < 4 or w.layers < 1 or w.cycle < 1:
        raise ConfigError("model.diffwave: channels >= 4, layers >= 1 and cycle >= 1 expected")
    return DiffWave(w.channels, w.layers, w.cycle, num_classes=max(cfg.model.num_classes, 0))


AUDIO_KINDS = {"spoken-digits": audio_dataset, "audio": audio_dataset}


# --- model outputs -> sound (pipelines/audio.py, the training preview) -----------------


def decode(
    x: Tensor, route: str, spec: MelSpec | None, length: int, gl_iters: int, seeds=None
) -> Tensor:
    """Model outputs (n, 1, ...) -> waveforms (n, length). `seeds` (one per clip): the mel
    route's phase search of clip i starts from seeds[i] alone (else one seed for the batch)."""
    if route == "wave":
        return x[:, 0, :length].clamp(-1, 1)
    waves = spec.to_wave(x[:, 0], length, iters=gl_iters, seed=0 if seeds is None else seeds)
    return waves.clamp(-1, 1)


def route_of(cfg) -> tuple[str, MelSpec | None]:
    a = cfg.data.audio
    return a.representation, (mel_spec(a) if a.representation == "mel" else None)
