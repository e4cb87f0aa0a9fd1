"""Bad diffusers folders: one line `error: ...`, exit 2, and no network built half-way."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

MISSING = "optional extra: pip install 'diffusionforge[diffusers]'"
pytest.importorskip("diffusers", reason=MISSING)
pytest.importorskip("transformers", reason=MISSING)

sys.path.insert(0, str(Path(__file__).parent))
from diffusers_kit import save_ddpm, scheduler, tiny_sd, tiny_sd3_transformer  # noqa: E402

from diffusionforge.cli import main  # noqa: E402
from diffusionforge.pipelines import diffusers_import as di  # noqa: E402


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sd") / "pipe"
    tiny_sd(folder, scheduler("DDIMScheduler"))
    return folder


@pytest.fixture
def sd(sd_folder, tmp_path):
    """A fresh copy of the tiny Stable Diffusion folder to break."""
    return Path(shutil.copytree(sd_folder, tmp_path / "pipe"))


@pytest.fixture
def nothing_loaded(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a network was built before the folder was checked")

    monkeypatch.setattr(di, "load_component", refuse)


def _fails(capsys, argv, *expected) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    for text in expected:
        assert text in err, err
    return err


def test_half_a_pipeline_is_refused(sd, capsys, nothing_loaded):
    shutil.rmtree(sd / "vae")
    _fails(capsys, ["info", str(sd)], "half a pipeline", "vae/")


def test_unknown_class_name_is_refused(sd, capsys, nothing_loaded):
    cfg = json.loads((sd / "unet/config.json").read_text())
    (sd / "unet/config.json").write_text(json.dumps({**cfg, "_class_name": "UNetMystery"}))
    _fails(capsys, ["info", str(sd)], "unknown _class_name 'UNetMystery'")
    index = json.loads((sd / "model_index.json").read_text())
    (sd / "model_index.json").write_text(json.dumps({**index, "_class_name": "FancyPipeline"}))
    _fails(capsys, ["info", str(sd)], "unknown pipeline _class_name 'FancyPipeline'")


def test_shape_mismatch_is_refused_before_loading(sd, capsys, nothing_loaded):
    cfg = json.loads((sd / "unet/config.json").read_text())
    cfg["block_out_channels"] = [8, 24]  # the weights were saved for (8, 16)
    (sd / "unet/config.json").write_text(json.dumps(cfg))
    _fails(capsys, ["info", str(sd)], "config and weights do not match", "unet")


def test_pickle_only_folder_is_refused_with_the_conversion(tmp_path, capsys, nothing_loaded):
    folder = tmp_path / "m"
    save_ddpm(folder, scheduler("DDIMScheduler"))
    weights = folder / "unet/diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))  # its bytes do not matter: it is never opened
    err = _fails(capsys, ["sample", str(folder)], "pickle", "safetensors only")
    assert "save_pretrained" in err and "UNet2DModel" in err


def test_weights_larger_than_memory_are_refused(sd, capsys, monkeypatch, nothing_loaded):
    monkeypatch.setattr(di, "available_memory", lambda device: 10_000)
    _fails(capsys, ["info", str(sd)], "GiB", "free", "--dtype float16")


def test_missing_tokenizer_is_refused(sd, capsys, nothing_loaded):
    shutil.rmtree(sd / "tokenizer")
    _fails(capsys, ["info", str(sd)], "tokenizer/")
    (sd / "tokenizer").mkdir()
    _fails(capsys, ["info", str(sd)], "no tokenizer files")


def test_corrupt_safetensors_header_is_refused(sd, capsys, nothing_loaded):
    (sd / "vae/diffusion_pytorch_model.safetensors").write_bytes(b"\xff" * 16)
    _fails(capsys, ["info", str(sd)], "not a safetensors file")


def test_missing_extra_names_it(sd, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers -> ImportError
    _fails(capsys, ["info", str(sd)], "pip install 'diffusionforge[diffusers]'")


def test_bad_dtype_and_schedule_flags(sd, capsys):
    _fails(capsys, ["generate", "x", "--checkpoint", str(sd), "--dtype", "float8"], "--dtype")
    _fails(capsys, ["generate", "x", "--checkpoint", str(sd), "--schedule", "nope"], "--schedule")


def test_cli_info_generate_and_sample(sd, tmp_path, capsys):
    assert main(["info", str(sd)]) == 0
    assert "StableDiffusionPipeline" in capsys.readouterr().out
    out = tmp_path / "gen"
    argv = ["generate", "a red circle", "--checkpoint", str(sd), "--nfe", "3", "--out", str(out)]
    assert main([*argv, "--negative", "blurry", "--guidance", "3"]) == 0
    assert len(list(out.glob("*.png"))) == 1
    _fails(capsys, ["sample", str(sd)], "text-to-image pipeline")
    ddpm = tmp_path / "ddpm"
    save_ddpm(ddpm, scheduler("DDIMScheduler"))
    png = tmp_path / "s.png"
    assert main(["sample", str(ddpm), "--n", "4", "--nfe", "3", "--out", str(png)]) == 0
    assert png.is_file()


def test_eval_needs_data_and_runs(tmp_path, capsys):
    from diffusers_kit import tiny_unet

    folder = tmp_path / "digits-like"
    save_ddpm(folder, scheduler("DDIMScheduler"), tiny_unet(channels=1, num_class_embeds=10))
    _fails(capsys, ["eval", str(folder)], "--data")
    out = tmp_path / "eval"
    argv = ["eval", str(folder), "--data", "digits", "--n", "20", "--nfe", "3"]
    assert main([*argv, "--sweep-samplers", "", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["samples"] == 20 and metrics["fid"] > 0


def test_sd3_transformer_alone_says_what_is_missing(tmp_path, capsys):
    from diffusers import FlowMatchEulerDiscreteScheduler

    net = tiny_sd3_transformer()
    net.save_pretrained(tmp_path / "sd3")
    FlowMatchEulerDiscreteScheduler(shift=3.0).save_pretrained(tmp_path / "sd3")
    assert main(["info", str(tmp_path / "sd3")]) == 0
    assert "flow matching, shift 3" in capsys.readouterr().out
    _fails(capsys, ["sample", str(tmp_path / "sd3"), "--nfe", "2"], "text encoders", ".denoiser")
