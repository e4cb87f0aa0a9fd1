"""Written clips keep headroom (#18 point 9): a generated clip louder than -1 dBFS is scaled
down to exactly -1 dBFS (not hard-clipped, so its shape is kept); quieter clips are unchanged;
data exported with peak=None is written as it is (clipped to [-1, 1])."""

from __future__ import annotations

import math

import pytest
import torch

from diffusionforge.data.audio import PEAK, load_audio, save_wav, with_headroom


def test_peak_is_minus_one_dbfs():
    assert 20 * math.log10(PEAK) == pytest.approx(-1.0)


def test_loud_clip_is_scaled_not_clipped():
    t = torch.linspace(0, 1, 800, dtype=torch.float64)
    wave = 1.04 * torch.sin(2 * math.pi * 5 * t)  # over full scale, as seen in generated clips
    out = with_headroom(wave)
    assert float(out.abs().max()) == pytest.approx(PEAK, abs=1e-12)
    assert torch.allclose(out / PEAK, wave / wave.abs().max())  # same shape, only quieter
    quiet = 0.5 * wave
    assert torch.equal(with_headroom(quiet), quiet)


def test_written_wav_has_headroom_and_export_does_not(tmp_path):
    wave = torch.tensor([0.0, 1.04, -1.01, 0.5])
    a = load_audio(save_wav(tmp_path / "gen.wav", wave, 8000), 8000)
    assert float(a.abs().max()) <= PEAK + 1 / 32768
    b = load_audio(save_wav(tmp_path / "data.wav", wave, 8000, peak=None), 8000)
    assert float(b.abs().max()) >= 1 - 1 / 32768
