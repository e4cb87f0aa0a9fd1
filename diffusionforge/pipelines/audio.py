"""Audio from a checkpoint: one interface over both routes, plus spectrogram pictures.

- route "mel" (spectrogram diffusion): an image network samples a (1, n_mels, frames) log-mel
  image; Griffin-Lim (core.spectral) turns it into a waveform.
- route "wave" (DiffWave-style waveform diffusion): the network samples the (1, L) samples.

`AudioPipeline.generate(seeds, labels=..., guidance=..., nfe=...) -> (n, L)` waveforms in
[-1, 1] at `rate`; clip i comes from its own generator seeded seeds[i] (as for images), so a
clip does not depend on the batch it is drawn in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from diffusionforge.core.plan import Plan
from diffusionforge.core.spectral import MelSpec
from diffusionforge.errors import CheckpointError
from diffusionforge.pipelines.pipeline import Pipeline, load_pipeline
from diffusionforge.train.builders_audio import AUDIO_KINDS, decode, route_of


@dataclass
class AudioPipeline:
    pipe: Pipeline
    route: str  # "mel" or "wave"
    rate: int
    length: int  # samples per clip
    spec: MelSpec | None  # the mel route's analysis
    gl_iters: int = 32
    timings: dict = field(default_factory=dict)  # seconds of the last generate: network, decode

    @property
    def classes(self) -> list[str]:
        return self.pipe.classes

    @property
    def num_classes(self) -> int:
        return self.pipe.num_classes

    def generate(
        self,
        seeds: list[int],
        *,
        labels: Tensor | None = None,
        guidance: float = 1.0,
        nfe: int | None = None,
        sampler: str | None = None,
        schedule: str | None = None,
        plan: Plan | None = None,
        callback=None,
        check=None,
        device: str | torch.device = "cpu",
    ) -> Tensor:
        """Waveforms (n, length); `check()` runs between the network and the decoding (a server
        job's cancellation point). The network runs on `device`, the decoding on the cpu."""
        t0 = time.process_time()
        plan = plan or self.pipe.plan(nfe, sampler, schedule)
        x = self.pipe.generate_images(seeds, labels=labels, guidance=guidance, plan=plan,
                                      callback=callback, device=device).float().cpu()  # fmt: skip
        t1 = time.process_time()
        if check:
            check()
        # each clip's phase search from its own seed: clip i is the same alone or in a batch
        waves = decode(x, self.route, self.spec, self.length, self.gl_iters, seeds=list(seeds))
        self.timings = {"network": t1 - t0, "decode": time.process_time() - t1}
        return waves

    def __call__(self, n: int = 1, *, seed: int = 0, labels=None, **kwargs) -> list:
        """n waveforms (float32 numpy arrays in [-1, 1] at self.rate) from seeds seed..seed+n-1;
        `labels`: one class (index or name) for all or one per clip; other keywords as
        generate (guidance, nfe, sampler, schedule, device)."""
        waves = self.generate(list(range(seed, seed + n)), labels=labels, **kwargs)
        return [w.numpy() for w in waves.float()]


def load_audio_pipeline(path: str | Path, *, use_ema: bool = True) -> AudioPipeline:
    """An audio checkpoint (or run folder); a checkpoint of another modality is refused."""
    pipe = load_pipeline(path, use_ema=use_ema)
    if pipe.cfg.data.kind not in AUDIO_KINDS:
        raise CheckpointError(
            f"{pipe.checkpoint.path}: not an audio model (data.kind = {pipe.cfg.data.kind!r})"
        )
    route, spec = route_of(pipe.cfg)
    a = pipe.cfg.data.audio
    return AudioPipeline(pipe, route, a.rate, round(a.seconds * a.rate), spec)
