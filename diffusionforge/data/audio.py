"""Audio files and folders of them: decoding, mono mix-down, resampling, fixed length.

Policy (each rule is tested in tests/test_audio_data.py):

- **Decoding** goes through ``soundfile`` (libsndfile): WAV, FLAC, OGG/Vorbis and the other
  formats it reads. Integer samples are scaled to [-1, 1] by soundfile.
- **Channels**: several channels are mixed down to mono by their mean.
- **Resampling**: a file at another rate is resampled to the target rate with a band-limited
  Hann-windowed sinc (``core.spectral.resample``, torch only; no scipy at run time). Downsampling
  filters out what lies above the new Nyquist frequency instead of aliasing it.
- **Length**: clips are cut or zero-padded to ``seconds`` at the target rate. Cutting keeps the
  centre of the loudest ``seconds`` (the window with the most energy), so a word recorded late
  in a long file survives; padding puts the clip in the middle.
- **Levels** are kept as recorded (no normalisation): the spectrogram route measures loudness
  against a full-scale sine, so quieter data gives darker spectrograms.
- **Bad files** (not audio, truncated WAVs whose RIFF header declares more bytes than the
  file holds, no samples, non-finite samples, more samples than ``limit("values")``, read from
  the header before decoding) are rejected with one line
  naming the file: ``load_audio`` raises ``DataError``; ``AudioFolder`` skips the file, prints
  the line on stderr and counts it, so one broken file never stops a training run.
- **Folders**: top-level sub-folders are the classes (sorted names -> 0, 1, ...), as for image
  folders; a folder with no sub-folders is unlabelled. Files are found recursively by suffix.
  Anything that is not a regular file (FIFO, device, dangling symlink or loop, a folder that
  cannot be listed) is skipped with the same one line, never opened (``data/files.py``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from diffusionforge.core.spectral import resample
from diffusionforge.data.files import class_folders, file_problem, regular_files
from diffusionforge.errors import DataError
from diffusionforge.limits import limit

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au")


def _soundfile():
    try:
        import soundfile
    except ImportError as e:  # libsndfile missing on the system
        raise DataError(f"audio needs the soundfile package and libsndfile ({e})") from None
    return soundfile


def load_audio(path: str | os.PathLike, rate: int, seconds: float | None = None) -> Tensor:
    """Mono float32 (L,) at `rate` (cut/padded to `seconds` when given); DataError otherwise."""
    sf = _soundfile()
    path = Path(path)
    problem = file_problem(path)  # never open a FIFO or a device
    if problem is not None:
        raise DataError(f"{path}: {problem if os.path.lexists(path) else 'no such audio file'}")
    try:
        _check_riff(path)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        info = sf.info(str(path))  # the header first: an hour of audio is refused, not decoded
        values, cap = max(info.frames, 0) * max(info.channels, 1), limit("values")
        if values > cap:
            raise DataError(
                f"{path}: {info.frames:,} frames x {info.channels} channels is above the limit "
                f"of {cap:,} values (raise with DIFFUSIONFORGE_MAX_VALUES)"
            )
        data, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path}: not a readable audio file ({reason})") from None
    if data.shape[0] == 0:
        raise DataError(f"{path}: the audio file holds no samples")
    if not np.isfinite(data).all():
        raise DataError(f"{path}: the audio holds NaN or infinite samples")
    wave = torch.from_numpy(data.mean(axis=1))  # (L,) mono mix-down
    wave = resample(wave.double(), int(file_rate), rate).float()
    if seconds is not None:
        wave = fit_length(wave, round(seconds * rate))
    return wave


def _check_riff(path: Path) -> None:
    """A WAV cut short: libsndfile reads what is there without a word, so compare the size the
    RIFF header declares with the file's size."""
    with open(path, "rb") as f:
        head = f.read(12)
    if len(head) == 12 and head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        declared = int.from_bytes(head[4:8], "little") + 8
        actual = path.stat().st_size
        if actual < declared:
            raise DataError(f"{path}: truncated WAV file ({actual} of {declared} bytes)")


def fit_length(wave: Tensor, length: int) -> Tensor:
    """(L,) -> (length,): pad both sides equally, or keep the window with the most energy."""
    n = wave.shape[-1]
    if n < length:
        left = (length - n) // 2
        return torch.nn.functional.pad(wave, (left, length - n - left))
    if n > length:
        energy = torch.cumsum(torch.nn.functional.pad(wave.double() ** 2, (1, 0)), 0)
        window = energy[length:] - energy[:-length]  # energy of wave[s : s + length]
        start = int(torch.argmax(window))
        return wave[start : start + length]
    return wave


PEAK = 10 ** (-1 / 20)  # -1 dBFS: the highest peak a written clip keeps (headroom)


def with_headroom(wave: Tensor, peak: float = PEAK) -> Tensor:
    """`wave` scaled down so that its largest |sample| is `peak` when it is above it (a clip
    that reaches full scale can click on playback and in resampling); quieter clips unchanged."""
    top = float(wave.detach().abs().max()) if wave.numel() else 0.0
    return wave * (peak / top) if top > peak else wave


def save_wav(
    path: str | os.PathLike, wave: Tensor, rate: int, *, peak: float | None = PEAK
) -> Path:
    """Write (L,) float samples as 16-bit PCM WAV: scaled down to `peak` (-1 dBFS) when louder,
    or with peak=None (data exported as it is) clipped to [-1, 1]."""
    sf = _soundfile()
    path = Path(path)
    wave = wave.detach().float()
    wave = with_headroom(wave, peak) if peak is not None else wave
    sf.write(str(path), wave.clamp(-1, 1).numpy(), rate, subtype="PCM_16")
    return path


class AudioFolder:
    """All readable audio files under `root` as one (N, length) tensor plus labels.

    Decoded once when built (a few thousand one-second clips fit in memory easily)."""

    def __init__(self, root: str | os.PathLike, rate: int, seconds: float) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            what = (
                "is a file; expected a folder of audio files"
                if self.root.exists()
                else "no such folder"
            )
            raise DataError(f"{self.root}: {what}")
        subdirs = class_folders(self.root)
        self.classes = [p.name for p in subdirs]
        self.skipped = 0

        def skip(path: Path, why: str) -> None:
            print(f"{path}: {why} (skipped)", file=sys.stderr)
            self.skipped += 1

        # every non-regular entry (FIFO, device, broken link, unlistable folder) gets one line
        files = [f for f in regular_files(self.root, skip) if _is_audio(f)]
        found: list[tuple[Path, int]] = []
        for f in files:
            top = f.relative_to(self.root).parts
            if not subdirs:
                found.append((f, 0))
            elif len(top) == 1:
                print(f"{f}: skipped (not in a class folder)", file=sys.stderr)
            else:
                found.append((f, self.classes.index(top[0])))
        waves, labels, self.files = [], [], []
        for f, k in found:
            try:
                waves.append(load_audio(f, rate, seconds))
            except DataError as e:
                print(f"{e} (skipped)", file=sys.stderr)
                self.skipped += 1
                continue
            labels.append(k)
            self.files.append(f)
        if not waves:
            raise DataError(
                f"{self.root}: no readable audio files (looked for {', '.join(AUDIO_SUFFIXES)})"
            )
        self.waves = torch.stack(waves)  # (N, length)
        self.labels = torch.tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.waves)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_SUFFIXES
