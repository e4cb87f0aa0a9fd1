"""The demo's audio section: the bundled spoken-digits model says "zero" to "nine"."""

from __future__ import annotations

import time
from pathlib import Path

from diffusionforge.assets import bundled_path
from diffusionforge.data.audio import save_wav
from diffusionforge.demo.section import Section
from diffusionforge.pipelines.audio import load_audio_pipeline
from diffusionforge.plot import spectrogram_image

AUDIO_NFE = 16  # recommended (benchmarks/audio_routes.py, BENCHMARKS.md)
AUDIO_GUIDANCE = 2.0


def spoken_digits(out: Path, quick: bool):
    """One clip per digit from the bundled spectrogram model: WAVs and a spectrogram PNG."""
    import torch

    torch.set_num_threads(1)  # a 0.4M-parameter network: one thread is fastest
    pipe = load_audio_pipeline(bundled_path("audio-digits"))
    digits = [0, 3, 7] if quick else list(range(pipe.num_classes))
    nfe = 4 if quick else AUDIO_NFE
    folder = out / "spoken-digits"
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    waves = pipe.generate(digits, labels=torch.tensor(digits), guidance=AUDIO_GUIDANCE, nfe=nfe)
    seconds = time.monotonic() - t0
    names = [pipe.classes[d] for d in digits]
    for d, name, wave in zip(digits, names, waves, strict=True):
        save_wav(folder / f"{d}-{name}.wav", wave, pipe.rate)
    png = out / "spoken-digits.png"
    spectrogram_image(waves, pipe.rate, names).save(png)
    params = sum(p.numel() for p in pipe.pipe.net.parameters())
    audio_s = len(digits) * pipe.length / pipe.rate
    return Section(
        title="audio: class-conditional spoken digits (bundled model)",
        lines=[
            f"UNet with {params:,} parameters on 32x32 log-mel images, trained "
            f"{pipe.pipe.checkpoint.step} steps on espeak-ng digits; Griffin-Lim to 8 kHz sound",
            f"said {', '.join(names)} in {seconds:.1f}s for {audio_s:g}s of audio "
            f"({nfe} NFE, guidance {AUDIO_GUIDANCE:g})",
            "more: diffusionforge generate-audio audio-digits --class 7 --n 8 --out sevens",
        ],
        files=[folder, png],
    )
