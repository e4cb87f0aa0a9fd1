"""Audio I/O and signal math: resampling, mel/Griffin-Lim, folders, bad files, spoken digits."""

import math
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from diffusionforge.core.spectral import MelSpec, mel_filterbank, resample
from diffusionforge.data.audio import AudioFolder, fit_length, load_audio
from diffusionforge.errors import DataError

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (Debian: espeak-ng)"
)


def _sine(freq: float, rate: int, n: int, amp: float = 1.0) -> torch.Tensor:
    return amp * torch.sin(2 * math.pi * freq * torch.arange(n, dtype=torch.float64) / rate)


def test_resample_keeps_a_tone_and_removes_what_would_alias():
    y = resample(_sine(440, 22050, 22050), 22050, 8000)
    assert y.shape == (8000,)
    # Closed form: the same tone sampled at 8 kHz (edges excluded: the kernel sees zeros there).
    assert (y - _sine(440, 8000, 8000))[100:-100].abs().max() < 2e-3
    up = resample(_sine(440, 8000, 8000), 8000, 16000)
    assert (up - _sine(440, 16000, 16000))[200:-200].abs().max() < 2e-3
    # 5 kHz is above the new Nyquist (4 kHz): it must vanish, not fold down to 3 kHz.
    assert resample(_sine(5000, 22050, 22050), 22050, 8000)[100:-100].abs().max() < 0.02


def test_mel_filters_are_a_partition_of_unity():
    fb = mel_filterbank(32, 512, 8000).double()
    assert fb.max() <= 1.0 + 1e-6
    centres = fb.argmax(dim=1)
    inside = fb.sum(0)[centres[0] : centres[-1] + 1]
    assert torch.allclose(inside, torch.ones_like(inside), atol=1e-6)


def test_log_mel_scale_silence_and_full_scale_sine():
    spec = MelSpec(rate=8000, n_fft=512, hop=250, n_mels=32)
    assert torch.equal(spec.log_mel(torch.zeros(1, 8000)), -torch.ones(1, 32, 32))
    # A full-scale sine at the centre frequency of a mel filter: 0 dB there, image value 1.
    fb = mel_filterbank(32, 512, 8000)
    k = int(fb[10].argmax())
    image = spec.log_mel(_sine(k * 8000 / 512, 8000, 8000)[None].float())
    assert image[0, 10, 2:-2].sub(1.0).abs().max() < 0.02


def test_griffin_lim_restores_the_spectrogram_and_the_level():
    spec = MelSpec(rate=8000, n_fft=512, hop=250, n_mels=32)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(2, 8000, generator=g) * 0.1
    image = spec.log_mel(noise)
    wave = spec.to_wave(image, 8000, iters=16)
    assert wave.shape == (2, 8000)
    assert (spec.log_mel(wave) - image).abs().mean() < 0.05  # 0.05 of the range = 2 dB
    assert abs(wave.std().item() / 0.1 - 1) < 0.1


def test_fit_length_pads_in_the_middle_and_keeps_the_loudest_window():
    padded = fit_length(torch.ones(4), 10)
    assert padded.tolist() == [0, 0, 0, 1, 1, 1, 1, 0, 0, 0]
    long = torch.zeros(100)
    long[70:75] = 1.0
    cut = fit_length(long, 20)
    assert cut.shape == (20,) and cut.sum() == 5


def test_load_audio_mixes_down_and_resamples(tmp_path):
    left, right = _sine(440, 16000, 16000, 0.5), _sine(440, 16000, 16000, 0.3)
    path = tmp_path / "stereo.flac"
    sf.write(path, torch.stack([left, right], 1).numpy(), 16000)
    wave = load_audio(path, 8000, seconds=1.0)
    assert wave.shape == (8000,)
    expected = _sine(440, 8000, 8000, 0.4)  # the mean of the channels
    assert (wave.double() - expected)[100:-100].abs().max() < 2e-3


def _bad_files(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, np.zeros(800, dtype=np.float32), 8000)
    data = good.read_bytes()
    files = {
        "text.wav": b"this is not audio\n",
        "empty.wav": b"",
        "truncated.wav": data[: len(data) // 2],
        "header-only.wav": data[:44],
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    sf.write(tmp_path / "nan.wav", np.full(100, np.nan, dtype=np.float32), 8000, "FLOAT")
    return [tmp_path / n for n in [*files, "nan.wav"]]


def test_bad_files_fail_in_one_line_naming_the_file(tmp_path):
    for path in _bad_files(tmp_path):
        with pytest.raises(DataError) as info:
            load_audio(path, 8000)
        message = str(info.value)
        assert str(path) in message and "\n" not in message, message
    with pytest.raises(DataError, match="no such audio file"):
        load_audio(tmp_path / "missing.wav", 8000)


def test_folder_labels_from_subfolders_and_skips_bad_files(tmp_path, capsys):
    for k, name in enumerate(["high", "low"]):
        (tmp_path / name).mkdir()
        for i in range(2):
            sf.write(tmp_path / name / f"{i}.wav", _sine(300 * (2 - k), 8000, 4000).numpy(), 8000)
    bad = _bad_files(tmp_path / "low")[0]
    folder = AudioFolder(tmp_path, 8000, 1.0)
    assert folder.classes == ["high", "low"]
    assert folder.labels.tolist() == [0, 0, 1, 1, 1]  # low/good.wav of _bad_files included
    assert folder.waves.shape == (5, 8000)
    assert folder.skipped == 5
    err = capsys.readouterr().err
    assert str(bad) in err and "skipped" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no readable audio"):
        AudioFolder(empty, 8000, 1.0)


@needs_espeak
def test_spoken_digit_clip_is_one_centred_normalised_second_and_deterministic():
    from diffusionforge.data.spoken_digits import frame_clip, speak

    a = frame_clip(speak("seven", "en-us+f2", 160, 50, 8000), 8000)
    b = frame_clip(speak("seven", "en-us+f2", 160, 50, 8000), 8000)
    assert torch.equal(a, b)
    assert a.shape == (8000,)
    assert abs(a.abs().max().item() - 0.9) < 1e-5
    assert a[:200].abs().max() == 0 and a[-200:].abs().max() == 0  # silence around the word
