"""Metrics for generated audio: a digit classifier on real clips, and what it measures.

The classifier is a small CNN (``AudioCNN``) on its own log-mel front-end (``CLASSIFIER_MEL``:
32 mel bands x 64 frames of 16 ms for one second at 8 kHz), independent of the representation
a generator works in, so the waveform and spectrogram routes are judged by the same ears. It is
trained on the real clips with a fixed held-out fifth (accuracy reported) and cached like the
image classifier. From it:

- **accuracy**: the fraction of class-conditional samples it labels as the requested class;
- **Fréchet distance** between Gaussians fitted to its penultimate features of real and
  generated clips (the FAD recipe of Kilgour et al. 2019 with this classifier in place of VGGish);
- **memorization**: the nearest/second-nearest training-clip ratio in feature space
  (``eval.memorization``, Carlini et al. 2023), flagged when d1 < d2 / 3.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from diffusionforge.core.spectral import MelSpec, resample
from diffusionforge.data.builtin import cache_dir
from diffusionforge.eval.features import ClassifierFeatures, extract_features
from diffusionforge.eval.fid import fid
from diffusionforge.eval.memorization import memorization

CLASSIFIER_RATE = 8000
CLASSIFIER_MEL = MelSpec(rate=CLASSIFIER_RATE, n_fft=256, hop=125, n_mels=32)
_CLASSIFIER_VERSION = 1  # bump when the architecture or recipe changes


def classifier_input(waves: Tensor, rate: int) -> Tensor:
    """(N, L) waveforms at `rate` -> (N, 1, 32, frames) log-mel images of the classifier."""
    if rate != CLASSIFIER_RATE:
        waves = resample(waves.double(), rate, CLASSIFIER_RATE).float()
    return torch.cat(
        [CLASSIFIER_MEL.log_mel(waves[i : i + 256]) for i in range(0, len(waves), 256)]
    )[:, None]


class AudioCNN(nn.Module):
    """Three stride-2 conv stages, then a linear layer over the whole (4 x 8) time-frequency
    grid: unlike global pooling it keeps the order of the sounds ("one" vs "nine")."""

    def __init__(self, num_classes: int, width: int = 24, frames: int = 64) -> None:
        super().__init__()

        def stage(cin: int, cout: int) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cout, 3, padding=1),
                nn.GroupNorm(4, cout),
                nn.SiLU(),
                nn.Conv2d(cout, cout, 3, stride=2, padding=1),
                nn.SiLU(),
            ]

        self.body = nn.Sequential(
            *stage(1, width), *stage(width, 2 * width), *stage(2 * width, 2 * width)
        )
        self.proj = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * 4 * (frames // 8), 128), nn.SiLU()
        )
        self.head = nn.Linear(128, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.proj(self.body(x))  # (B, 128)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def _augment(x: Tensor, g: torch.Generator, max_shift: int = 6, gain: float = 0.15) -> Tensor:
    # Generated clips are neither aligned with nor as loud as the data: shift in time (pad with
    # silence, -1) and move the level by up to +-gain (0.15 = 6 dB) per clip.
    s = int(torch.randint(-max_shift, max_shift + 1, (), generator=g))
    x = torch.roll(x, s, dims=-1)
    if s > 0:
        x[..., :s] = -1
    elif s < 0:
        x[..., s:] = -1
    level = (torch.rand(len(x), 1, 1, 1, generator=g) * 2 - 1) * gain
    return torch.where(x > -1, (x + level).clamp(-1, 1), x)


def train_audio_classifier(
    images: Tensor, labels: Tensor, epochs: int = 15, seed: int = 0, val_fraction: float = 0.2
) -> ClassifierFeatures:
    """Adam + cosine decay on (N, 1, 32, 64) classifier images; a fixed held-out fifth."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    perm = torch.randperm(len(images), generator=g)
    n_val = int(len(images) * val_fraction)
    val, tr = perm[:n_val], perm[n_val:]
    model = AudioCNN(int(labels.max()) + 1, frames=images.shape[-1])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    steps = epochs * ((len(tr) + 63) // 64)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    for _ in range(epochs):
        order = tr[torch.randperm(len(tr), generator=g)]
        for i in range(0, len(order), 64):
            idx = order[i : i + 64]
            loss = F.cross_entropy(model(_augment(images[idx], g)), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    extractor = ClassifierFeatures(model, 1.0)  # type: ignore[arg-type]
    if n_val:
        pred = extractor.predict(images[val])
        extractor.val_accuracy = (pred == labels[val]).double().mean().item()
    return extractor


def audio_classifier(
    waves: Tensor, labels: Tensor, rate: int, cache: Path | None = None
) -> ClassifierFeatures:
    """The digit classifier of `waves` (N, L), trained once per data set and cached
    (~2 CPU-minutes on the 2,560 built-in clips)."""

    images = classifier_input(waves, rate)
    h = hashlib.sha256(images.numpy().tobytes())
    h.update(labels.long().numpy().tobytes())
    h.update(f"audio-v{_CLASSIFIER_VERSION}".encode())
    stem = (cache or cache_dir() / "classifiers") / f"audio-{h.hexdigest()[:16]}"
    weights, meta = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    if weights.exists() and meta.exists():
        info = json.loads(meta.read_text())
        model = AudioCNN(info["num_classes"], frames=info["frames"])
        model.load_state_dict(load_file(weights))
        return ClassifierFeatures(model, info["val_accuracy"])  # type: ignore[arg-type]
    extractor = train_audio_classifier(images, labels)
    stem.parent.mkdir(parents=True, exist_ok=True)
    save_file(extractor.model.state_dict(), weights)
    info = {
        "num_classes": extractor.model.head.out_features,
        "frames": images.shape[-1],
        "val_accuracy": extractor.val_accuracy,
    }
    meta.write_text(json.dumps(info, indent=1))  # written last: marks a complete entry
    return extractor


@dataclass
class AudioMetrics:
    accuracy: float | None  # requested class recognised (class-conditional samples only)
    frechet: float  # Fréchet distance in the classifier's feature space
    memorized: float  # fraction of samples with d1 < d2 / 3 to the training clips
    classifier_accuracy: float  # the classifier's own held-out accuracy on real clips

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def audio_metrics(
    classifier: ClassifierFeatures,
    generated: Tensor,
    requested: Tensor | None,
    real: Tensor,
    rate: int,
    train: Tensor | None = None,
) -> AudioMetrics:
    """Score generated clips (N, L) against real clips (M, L), both at `rate`; memorization is
    checked against `train` (all training clips; default `real`)."""
    gen_x, real_x = classifier_input(generated, rate), classifier_input(real, rate)
    gen_f = extract_features(classifier, gen_x)
    real_f = extract_features(classifier, real_x)
    train_f = (
        real_f if train is None else extract_features(classifier, classifier_input(train, rate))
    )
    accuracy = None
    if requested is not None:
        pred = torch.cat(
            [classifier.predict(gen_x[i : i + 256]) for i in range(0, len(gen_x), 256)]
        )
        accuracy = (pred == requested.cpu()).double().mean().item()
    return AudioMetrics(
        accuracy=accuracy,
        frechet=fid(real_f, gen_f),
        memorized=memorization(gen_f, train_f).fraction,
        classifier_accuracy=classifier.val_accuracy,
    )
