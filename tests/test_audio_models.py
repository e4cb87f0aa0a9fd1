"""DiffWave, the audio builders, the digit classifier metrics, generate-audio end to end."""

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from diffusionforge.cli import main
from diffusionforge.errors import ConfigError
from diffusionforge.eval.audio import audio_metrics, classifier_input, train_audio_classifier
from diffusionforge.modalities import build_dataset, make_trainer
from diffusionforge.nets.diffwave import DiffWave
from diffusionforge.train.builders import build_model
from diffusionforge.train.config import apply_overrides, load_preset


def test_diffwave_starts_at_zero_and_sees_exactly_its_receptive_field():
    net = DiffWave(channels=8, layers=4, cycle=4, num_classes=3)
    x = torch.randn(2, 1, 101)
    assert torch.equal(net(x, torch.zeros(2), torch.tensor([0, 1])), torch.zeros(2, 1, 101))
    torch.nn.init.normal_(net.proj.weight)
    x.requires_grad_(True)
    net(x, torch.zeros(2), None)[0, 0, 50].backward()
    seen = (x.grad[0, 0].abs() > 0).nonzero().flatten()
    # kernel 3, dilations 1, 2, 4, 8: 1 + 2 * (1 + 2 + 4 + 8) = 31 samples, centred
    assert seen.min().item() == 50 - 15 and seen.max().item() == 50 + 15
    assert x.grad[1].abs().max() == 0  # examples do not mix


def test_diffwave_class_label_changes_the_output():
    net = DiffWave(channels=8, layers=2, num_classes=3)
    torch.nn.init.normal_(net.proj.weight)
    x, c = torch.randn(1, 1, 64), torch.zeros(1)
    a, b = net(x, c, torch.tensor([0])), net(x, c, torch.tensor([1]))
    assert not torch.allclose(a, b)
    unconditional = DiffWave(channels=8, layers=2, num_classes=0)
    assert unconditional.embed.label is None
    assert unconditional(x, c, None).shape == (1, 1, 64)


def _tones(root, rate=8000, seconds=0.25, per_class=6):
    """Two classes of short tones (low, high) with varied phase and level, as WAV folders."""
    rng = np.random.default_rng(0)
    n = int(rate * seconds)
    for k, freq in enumerate([300.0, 1200.0]):
        (root / f"{k}-tone").mkdir(parents=True)
        for i in range(per_class):
            t = np.arange(n) / rate
            wave = rng.uniform(0.3, 0.8) * np.sin(2 * math.pi * freq * t + rng.uniform(0, 6))
            sf.write(root / f"{k}-tone" / f"{i}.wav", wave.astype(np.float32), rate)
    return root


TINY_AUDIO = [
    "data.kind=audio",
    "data.audio.seconds=0.25",
    "data.audio.n_mels=8",
    "model.unet.channels=8",
    "model.unet.channel_mult=[1,2]",
    "model.unet.attn_resolutions=[]",
    "model.diffwave.channels=8",
    "model.diffwave.layers=2",
    "train.steps=4",
    "train.batch_size=4",
    "train.ckpt_every=4",
    "train.sample_every=4",
    "train.tensorboard=false",
    "train.progress=false",
    "optim.warmup_steps=1",
    "sample.nfe=2",
]


def test_audio_config_errors_name_the_field(tmp_path):
    folder = _tones(tmp_path / "tones")
    base = [*TINY_AUDIO, f"data.path={folder}"]
    cfg = apply_overrides(load_preset("spoken-digits"), [*base, "data.audio.n_mels=12"])
    with pytest.raises(ConfigError, match="square.*data.audio.hop = 166"):
        build_dataset(cfg)
    cfg = apply_overrides(load_preset("spoken-digits"), [*base, "data.audio.representation=x"])
    with pytest.raises(ConfigError, match="data.audio.representation"):
        build_dataset(cfg)
    cfg = apply_overrides(load_preset("spoken-digits-wave"), base)
    assert build_dataset(cfg).shape == (1, 2000)
    with pytest.raises(ConfigError, match="diffwave needs waveforms"):
        build_model(cfg, (1, 8, 8))


def test_classifier_metrics_on_tones(tmp_path):
    from diffusionforge.data.audio import AudioFolder

    folder = AudioFolder(_tones(tmp_path / "t", seconds=1.0, per_class=12), 8000, 1.0)
    images = classifier_input(folder.waves, 8000)
    assert images.shape == (24, 1, 32, 64)
    clf = train_audio_classifier(images, folder.labels, epochs=3)
    assert clf.val_accuracy == 1.0
    m = audio_metrics(clf, folder.waves[:10], folder.labels[:10], folder.waves, 8000)
    assert m.accuracy == 1.0
    assert m.memorized == 1.0  # copies of training clips: nearest distance 0 < d2 / 3
    wrong = audio_metrics(clf, folder.waves[:10], 1 - folder.labels[:10], folder.waves, 8000)
    assert wrong.accuracy == 0.0


def test_generate_audio_rejects_bad_requests(tmp_path, capsys):
    assert main(["generate-audio", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert main(["data", "spoken-digits", "--out", str(tmp_path), "--rate", "22050"]) == 2
    assert "--rate" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["spoken-digits", "spoken-digits-wave"])
def test_train_then_generate_audio_writes_wavs_and_a_picture(tmp_path, capsys, preset):
    folder = _tones(tmp_path / "tones")
    cfg = apply_overrides(load_preset(preset), [*TINY_AUDIO, f"data.path={folder}"])
    result = make_trainer(cfg, tmp_path / "run", log=lambda m: None).fit()
    assert (tmp_path / "run" / "samples" / "step-000000004.png").exists()
    out = tmp_path / "out"
    argv = ["generate-audio", str(result.checkpoint), "--class", "1-tone", "--n", "2"]
    assert main([*argv, "--nfe", "2", "--out", str(out)]) == 0
    wavs = sorted(out.glob("*.wav"))
    assert [w.name for w in wavs] == ["generate-audio-0-1-tone.wav", "generate-audio-1-1-tone.wav"]
    data, rate = sf.read(wavs[0])
    assert rate == 8000 and data.shape == (2000,) and np.isfinite(data).all()
    assert (out / "spectrograms.png").stat().st_size > 0
    # the same seed alone gives the same clip (per-clip generators); batched convolutions differ
    # from single ones in the last bits, which may move a 16-bit sample by one step
    again = tmp_path / "again"
    argv = ["generate-audio", str(result.checkpoint), "--class", "1", "--n", "1"]
    assert main([*argv, "--nfe", "2", "--out", str(again)]) == 0
    assert np.abs(sf.read(again / "generate-audio-0-1-tone.wav")[0] - data).max() <= 2 / 32768
    capsys.readouterr()
    if preset != "spoken-digits":
        return
    # an image model is not an audio model
    img = apply_overrides(load_preset("digits"), ["train.steps=1", "train.sample_every=0"])
    img_ckpt = make_trainer(img, tmp_path / "img", log=lambda m: None).fit().checkpoint
    assert main(["generate-audio", str(img_ckpt), "--out", str(tmp_path / "x")]) == 2
    assert "not an audio model" in capsys.readouterr().err


def test_train_cli_reads_a_folder_as_audio_with_an_audio_preset(tmp_path, capsys):
    folder = _tones(tmp_path / "tones")
    tiny = [o for o in TINY_AUDIO if not o.startswith(("data.kind", "train.steps"))]
    sets = [arg for o in [*tiny, "train.sample_every=0"] for arg in ("--set", o)]
    argv = ["train", "--preset", "spoken-digits", "--data", str(folder), "--steps", "1"]
    assert main([*argv, *sets, "--run-dir", str(tmp_path / "run"), "--no-progress"]) == 0
    config = (tmp_path / "run" / "config.json").read_text()
    assert '"kind": "audio"' in config
    capsys.readouterr()
    assert main([*argv[:4], str(folder / "0-tone" / "0.wav"), *sets]) == 2
    assert "expected a folder of audio files" in capsys.readouterr().err
