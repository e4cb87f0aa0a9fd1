"""Audio signal math in torch: band-limited resampling, mel spectrograms, Griffin-Lim.

- Resampling: windowed-sinc interpolation (Smith, "Digital Audio Resampling", 2002; the same
  Hann-windowed kernel as torchaudio's default), for rational ratios reduced by their gcd. The
  cut-off sits at 0.99 of the lower Nyquist frequency, so downsampling removes what would alias.
- Mel scale: HTK formula mel = 2595 log10(1 + f / 700) with peak-1 triangular filters whose
  sum is 1 between the first and last centre (a partition of unity), so ``fb.T @ (mel / width)``
  interpolates a mel spectrum back to a linear-frequency power density (``mel_to_linear``).
- Log-mel scale for the networks: power in dB relative to a full-scale sine (0 dB), clipped
  to [-DB_RANGE, 0] and mapped linearly to [-1, 1]; silence is -1 like an image background.
- Griffin-Lim (Griffin & Lim 1984, Eq. 6 iterated) with the momentum of Perraudin et al. 2013
  ("fast Griffin-Lim", alpha = 0.99).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

DB_RANGE = 80.0  # dynamic range of the log-mel image: [-80, 0] dB -> [-1, 1]


def resample(x: Tensor, orig: int, new: int, width: int = 6, rolloff: float = 0.99) -> Tensor:
    """(..., L) at rate `orig` -> (..., ceil(L * new / orig)) at rate `new` (Hann-windowed sinc).

    `width` zero crossings of the sinc on each side; the output sample j sits at input time
    j * orig / new, so a signal keeps its timing."""
    if orig == new:
        return x
    g = math.gcd(orig, new)
    orig, new = orig // g, new // g
    base = min(orig, new) * rolloff  # cut-off in units of the reduced rates
    half = math.ceil(width * orig / base)  # kernel half-length in input samples
    idx = torch.arange(-half, half + orig, dtype=torch.float64)[None, :] / orig  # (1, K)
    phase = -torch.arange(new, dtype=torch.float64)[:, None] / new  # (new, 1)
    t = (phase + idx) * base  # (new, K): distance to the output instant, in cut-off periods
    t = t.clamp(-width, width)
    window = torch.cos(t * math.pi / width / 2) ** 2
    kernel = torch.where(t == 0, torch.ones_like(t), torch.sin(math.pi * t) / (math.pi * t))
    kernel = (kernel * window * base / orig).to(x.dtype)  # (new, K)
    shape = x.shape
    flat = x.reshape(-1, 1, shape[-1])
    flat = torch.nn.functional.pad(flat, (half, half + orig))
    out = torch.nn.functional.conv1d(flat, kernel[:, None, :], stride=orig)  # (B, new, T)
    out = out.transpose(1, 2).reshape(flat.shape[0], -1)
    length = math.ceil(shape[-1] * new / orig)
    return out[:, :length].reshape(*shape[:-1], length)


def hz_to_mel(f: Tensor) -> Tensor:
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def mel_to_hz(m: Tensor) -> Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, rate: int, f_min: float = 0.0) -> Tensor:
    """(n_mels, n_fft // 2 + 1) peak-1 triangles, centres evenly spaced in mel up to Nyquist."""
    f_max = rate / 2
    mels = torch.linspace(
        hz_to_mel(torch.tensor(f_min)).item(), hz_to_mel(torch.tensor(f_max)).item(), n_mels + 2
    )
    edges = mel_to_hz(mels.double())  # (n_mels + 2,)
    freqs = torch.linspace(0, f_max, n_fft // 2 + 1, dtype=torch.float64)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs - lo) / (mid - lo)
    down = (hi - freqs) / (hi - mid)
    return torch.clamp(torch.minimum(up, down), min=0.0).float()


@dataclass(frozen=True)
class MelSpec:
    """Analysis settings of a log-mel image: (n_mels, L // hop) for a clip of L samples."""

    rate: int = 8000
    n_fft: int = 512
    hop: int = 250
    n_mels: int = 32

    def frames(self, length: int) -> int:
        return length // self.hop

    def window(self) -> Tensor:
        return torch.hann_window(self.n_fft, dtype=torch.float64)

    def stft(self, wave: Tensor, hop: int | None = None) -> Tensor:
        """(B, L) -> complex (B, n_fft // 2 + 1, frames), frames centred at multiples of hop,
        scaled so a full-scale sine has magnitude 1 in its bin."""
        w = self.window().to(wave.dtype)
        spec = torch.stft(
            wave, self.n_fft, hop or self.hop, window=w, center=True, return_complex=True
        )
        return spec * (2.0 / w.sum())

    def log_mel(self, wave: Tensor) -> Tensor:
        """(B, L) waveforms -> (B, n_mels, L // hop) log-mel images in [-1, 1]."""
        power = self.stft(wave.double()).abs() ** 2
        fb = mel_filterbank(self.n_mels, self.n_fft, self.rate).double()
        mel = torch.einsum("mf,bft->bmt", fb, power)[..., : self.frames(wave.shape[-1])]
        db = 10.0 * torch.log10(mel.clamp_min(1e-12))
        return (db.clamp(-DB_RANGE, 0.0) / (DB_RANGE / 2) + 1.0).float()

    def mel_to_linear(self, image: Tensor) -> Tensor:
        """(B, n_mels, T) log-mel images -> (B, n_fft // 2 + 1, T) magnitudes (interpolated)."""
        db = (image.double().clamp(-1, 1) - 1.0) * (DB_RANGE / 2)
        power = 10.0 ** (db / 10.0)
        power = torch.where(image <= -1, torch.zeros_like(power), power)  # the floor is silence
        fb = mel_filterbank(self.n_mels, self.n_fft, self.rate).double()
        # A mel band sums the power of its bins: spread it back as a density (band / width), so
        # broadband power is restored exactly and a tone keeps its energy.
        density = power / fb.sum(1)[:, None]
        return torch.einsum("mf,bmt->bft", fb, density).sqrt()

    def to_wave(
        self,
        image: Tensor,
        length: int,
        iters: int = 32,
        upsample: int = 5,
        seed: int | list[int] = 0,
    ) -> Tensor:
        """Griffin-Lim: (B, n_mels, T) log-mel -> (B, length) waveforms; `seed` as griffin_lim.

        The magnitudes are interpolated in time to hop / upsample before the phase search: with
        a hop of ~half the window, overlap-add has too little redundancy for Griffin-Lim."""
        mag = self.mel_to_linear(image)  # (B, F, T) at centres k * hop
        hop = self.hop // upsample
        n_out = length // hop + 1
        pos = torch.arange(n_out, dtype=torch.float64) * hop / self.hop  # in input frames
        k0 = pos.floor().long().clamp(max=mag.shape[-1] - 1)
        k1 = (k0 + 1).clamp(max=mag.shape[-1] - 1)
        frac = (pos - k0).clamp(0, 1)
        mag = mag[..., k0] * (1 - frac) + mag[..., k1] * frac  # (B, F, n_out)
        return griffin_lim(mag, self, hop, length, iters, seed)


def initial_phases(shape: tuple[int, ...], seed: int | list[int]) -> Tensor:
    """Uniform [0, 1) turns of shape (B, ...): from one generator seeded `seed` for the batch,
    or with a list of B seeds row i from its own generator (so it depends on seeds[i] only)."""
    if isinstance(seed, int):
        return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    rows = [torch.Generator().manual_seed(s) for s in seed]
    return torch.stack([torch.rand(shape[1:], generator=g, dtype=torch.float64) for g in rows])


def griffin_lim(
    mag: Tensor,
    spec: MelSpec,
    hop: int,
    length: int,
    iters: int = 32,
    seed: int | list[int] = 0,
) -> Tensor:
    """Phase retrieval from STFT magnitudes (B, F, T) with hop `hop` (fast Griffin-Lim); the
    initial phases from `seed` (initial_phases: a list gives each row its own)."""  # fmt: skip
    w = spec.window()
    scale = 2.0 / w.sum()
    angles = torch.exp(2j * math.pi * initial_phases(tuple(mag.shape), seed))
    prev = torch.zeros_like(angles)
    wave = torch.zeros(mag.shape[0], length, dtype=torch.float64)
    for _ in range(iters):
        wave = torch.istft(
            mag * angles / scale, spec.n_fft, hop, window=w, center=True, length=length
        )
        rebuilt = torch.stft(wave, spec.n_fft, hop, window=w, center=True, return_complex=True)
        rebuilt = rebuilt * scale
        tprev = rebuilt
        rebuilt = rebuilt - 0.99 / (1 + 0.99) * prev  # momentum (Perraudin et al. 2013, Alg. 2)
        prev = tprev
        angles = rebuilt / rebuilt.abs().clamp_min(1e-12)
    wave = torch.istft(mag * angles / scale, spec.n_fft, hop, window=w, center=True, length=length)
    return wave.float()
