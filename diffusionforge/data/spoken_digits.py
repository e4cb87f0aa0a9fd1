"""Built-in spoken digits: "zero" to "nine" synthesised locally with Debian's espeak-ng.

An SC09-like set (SC09 is the digits subset of Speech Commands, used by DiffWave and WaveGAN)
that needs no download: 8 English accents x 16 voice variants, each digit spoken
``per_voice`` times at a speed and pitch drawn from a generator seeded by (seed, accent,
variant, digit, k). Each clip is resampled from espeak's 22.05 kHz to the target rate, trimmed
to the spoken part (frames within 40 dB of the loudest), peak-normalised to 0.9 and centred in
one second of silence. espeak-ng is deterministic once kept away from the audio system (see
``_quiet_audio_env``), so the same settings give the same bytes;
the result is cached as an .npz under ``cache_dir()/spoken-digits`` keyed by the settings and
the espeak-ng version.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from diffusionforge.core.spectral import resample
from diffusionforge.data.audio import fit_length, save_wav
from diffusionforge.data.builtin import cache_dir
from diffusionforge.errors import DataError

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ACCENTS = (
    "en-gb", "en-us", "en-gb-scotland", "en-gb-x-gbclan",
    "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029", "en-us-nyc",
)  # fmt: skip
VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7",
    "f1", "f2", "f3", "f4", "klatt", "klatt2", "klatt3", "croak", "",
)  # fmt: skip
SPEEDS = (120, 200)  # words per minute: slow enough to stay under one second
PITCHES = (25, 75)  # espeak-ng -p, 0..99
_VERSION = 2  # bump when synthesis or framing changes, so stale caches are not reused
# (2: clips made without reseeding espeak-ng's rand(), see _quiet_audio_env)


# espeak-ng opens an audio device even with --stdout. When PulseAudio's client finds no
# runtime folder (a fresh HOME, or /tmp/pulse-* cleaned away), it creates one under a random
# name and reseeds the C library's rand() from /dev/urandom on the way; espeak-ng's breath and
# Klatt noise come from that same rand(), so that one clip came out different ("f2" voices:
# 6 of 6 fresh HOMEs gave 6 different clips). A server address that cannot exist keeps libpulse
# from creating anything: rand() keeps its fixed default seed and every clip its bytes.
def _quiet_audio_env() -> dict[str, str]:
    return {**os.environ, "PULSE_SERVER": "unix:/nonexistent/diffusionforge"}


def espeak_version() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise DataError("spoken digits need espeak-ng (Debian: apt-get install espeak-ng)")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip().split("Data at")[0].strip()


def speak(word: str, voice: str, speed: int, pitch: int, rate: int) -> Tensor:
    """One word through espeak-ng at `rate`: float32 (L,) including espeak's own silences."""
    import soundfile as sf

    out = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", word],
        capture_output=True,
        check=True,
        env=_quiet_audio_env(),
    )
    data, file_rate = sf.read(io.BytesIO(out.stdout), dtype="float32")
    return resample(torch.from_numpy(data).double(), int(file_rate), rate).float()


def frame_clip(wave: Tensor, rate: int, seconds: float = 1.0, floor_db: float = 40.0) -> Tensor:
    """Trim to the frames within `floor_db` of the loudest (10 ms frames), peak-normalise to
    0.9, centre in `seconds` (cut around the most energetic window if longer)."""
    hop = max(1, rate // 100)
    frames = wave[: len(wave) // hop * hop].reshape(-1, hop)
    energy = 10 * torch.log10((frames.double() ** 2).mean(1) + 1e-12)
    loud = (energy > energy.max() - floor_db).nonzero().flatten()
    word = wave[int(loud[0]) * hop : (int(loud[-1]) + 1) * hop]
    word = word * (0.9 / word.abs().max().clamp_min(1e-6))
    return fit_length(word, round(seconds * rate))


def _settings(rate: int, per_voice: int, seed: int) -> list[tuple[int, str, int, int]]:
    """(digit, voice, speed, pitch) of every clip, in a fixed order."""
    rows = []
    for a, accent in enumerate(ACCENTS):
        for v, variant in enumerate(VARIANTS):
            voice = f"{accent}+{variant}" if variant else accent
            for digit in range(10):
                for k in range(per_voice):
                    rng = np.random.default_rng([seed, a, v, digit, k])
                    speed = int(rng.integers(SPEEDS[0], SPEEDS[1] + 1))
                    pitch = int(rng.integers(PITCHES[0], PITCHES[1] + 1))
                    rows.append((digit, voice, speed, pitch))
    return rows


def build_spoken_digits(
    rate: int = 8000, per_voice: int = 2, seed: int = 0, log=print
) -> tuple[Tensor, Tensor, list[str]]:
    """Synthesise every clip: waves (N, rate) float32, labels (N,), voice names (N,)."""
    rows = _settings(rate, per_voice, seed)
    waves, labels, voices = [], [], []
    for i, (digit, voice, speed, pitch) in enumerate(rows):
        raw = speak(DIGIT_WORDS[digit], voice, speed, pitch, rate)
        waves.append(frame_clip(raw, rate))
        labels.append(digit)
        voices.append(f"{voice} s{speed} p{pitch}")
        if log and (i + 1) % 500 == 0:
            log(f"spoken digits: {i + 1}/{len(rows)} clips")
    return torch.stack(waves), torch.tensor(labels), voices


def load_spoken_digits(
    rate: int = 8000, per_voice: int = 2, seed: int = 0, log=print
) -> tuple[Tensor, Tensor, list[str]]:
    """The cached set (built on first use, ~1 minute): waves (N, rate), labels (N,), voices."""
    if rate not in (8000, 16000):
        raise DataError(f"spoken digits: rate must be 8000 or 16000, got {rate}")
    if per_voice < 1:
        raise DataError(f"spoken digits: per_voice must be 1 or more, got {per_voice}")
    key = json.dumps([_VERSION, rate, per_voice, seed, espeak_version()]).encode()
    path = cache_dir() / "spoken-digits" / f"{rate}-{hashlib.sha256(key).hexdigest()[:16]}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            waves = torch.from_numpy(z["waves"].astype(np.float32) / 32767.0)
            return waves, torch.from_numpy(z["labels"]).long(), [str(v) for v in z["voices"]]
    if log:
        log(f"spoken digits: synthesising {len(ACCENTS) * len(VARIANTS) * 10 * per_voice} clips")
    waves, labels, voices = build_spoken_digits(rate, per_voice, seed, log)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    pcm = (waves.clamp(-1, 1) * 32767).round().short().numpy()
    np.savez(tmp, waves=pcm, labels=labels.numpy(), voices=np.array(voices))
    tmp.replace(path)  # atomic: a half-written cache is never read
    # Load what was stored, so the first call returns the same (16-bit) values as later ones.
    return torch.from_numpy(pcm.astype(np.float32) / 32767.0), labels, voices


def export_folder(out: str | Path, waves: Tensor, labels: Tensor, rate: int) -> Path:
    """Write the set as `out/<k>-<word>/<index>.wav` (sorted folder names = digit order)."""
    out = Path(out)
    for k, word in enumerate(DIGIT_WORDS):
        (out / f"{k}-{word}").mkdir(parents=True, exist_ok=True)
    for i, (wave, k) in enumerate(zip(waves, labels.tolist(), strict=True)):
        save_wav(out / f"{k}-{DIGIT_WORDS[k]}" / f"{i:05d}.wav", wave, rate, peak=None)
    return out
