"""The bundled spoken-digits model: the demo section and `generate-audio audio-digits`."""

import soundfile as sf

from diffusionforge.assets import BUNDLED, bundled_path
from diffusionforge.cli import main
from diffusionforge.demo.audio import spoken_digits


def test_bundled_audio_model_is_listed_and_small():
    assert "audio-digits" in BUNDLED
    folder = bundled_path("audio-digits")
    assert sum(f.stat().st_size for f in folder.iterdir()) < 5e6


def test_demo_section_writes_spoken_digits(tmp_path):
    section = spoken_digits(tmp_path, quick=True)
    wavs = sorted((tmp_path / "spoken-digits").glob("*.wav"))
    assert [w.name for w in wavs] == ["0-zero.wav", "3-three.wav", "7-seven.wav"]
    data, rate = sf.read(wavs[0])
    assert rate == 8000 and data.shape == (8000,) and abs(data).max() > 0.01
    assert (tmp_path / "spoken-digits.png").exists()
    assert "zero, three, seven" in " ".join(section.lines)


def test_generate_audio_from_the_bundled_name(tmp_path):
    out = tmp_path / "sevens"
    argv = ["generate-audio", "audio-digits", "--class", "seven", "--n", "2", "--nfe", "4"]
    assert main([*argv, "--out", str(out)]) == 0
    assert len(list(out.glob("generate-audio-*-seven.wav"))) == 2
