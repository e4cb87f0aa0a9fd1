"""What a checkpoint argument can be (#18 points 1 and 10): a bundled name is not shadowed by a
local folder that is no checkpoint (the ./digits/ of single PNGs `sample digits --out
digits.png` writes); an unknown name lists the bundled ones; a weights file, an empty folder
and a diffusers folder each get one line saying what they are and what to give instead."""

from __future__ import annotations

import pytest

from diffusionforge.errors import CheckpointError
from diffusionforge.train.checkpoint import (
    bundled_names,
    load_checkpoint,
    resolve_checkpoint,
)

from trainkit import cli


def test_local_folder_of_pictures_does_not_shadow_a_bundled_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits").mkdir()
    (tmp_path / "digits" / "00000-class3-seed0.png").write_bytes(b"\x89PNG")
    assert resolve_checkpoint("digits").path.name == "digits"
    assert resolve_checkpoint("digits").path != tmp_path / "digits"
    code, out, err = cli(capsys, "info", "digits")
    assert code == 0, err
    assert "assets" in out


def test_sample_then_info_with_a_bundled_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "sample", "digits", "--class", "3,7", "--nfe", "2", "--n", "2",
                       "--out", "digits.png")  # fmt: skip
    assert code == 0, err
    # a .png --out is one grid now; the single PNGs go to a folder only when --out names one
    assert (tmp_path / "digits.png").is_file() and not (tmp_path / "digits").exists()
    assert cli(capsys, "info", "digits")[0] == 0


def test_unknown_name_lists_the_bundled_models(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "info", "foo")
    assert code == 2 and err.count("\n") == 1
    assert {"digits", "grammar"} <= set(bundled_names())
    assert all(name in err for name in bundled_names())


def test_a_weights_file_says_what_to_give(tmp_path):
    f = tmp_path / "ema.safetensors"
    f.write_bytes(b"")
    with pytest.raises(CheckpointError, match="a weights file, not a checkpoint"):
        resolve_checkpoint(f)
    with pytest.raises(CheckpointError, match="never loaded"):
        (tmp_path / "model.ckpt").write_bytes(b"")
        resolve_checkpoint(tmp_path / "model.ckpt")


def test_empty_and_diffusers_folders_say_what_they_are(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a checkpoint or run folder"):
        resolve_checkpoint(tmp_path / "empty")
    d = tmp_path / "pipe"
    d.mkdir()
    (d / "model_index.json").write_text("{}")
    with pytest.raises(CheckpointError, match="a diffusers pipeline folder"):
        load_checkpoint(d)


def test_version_flag(capsys):
    from diffusionforge import __version__

    code, out, _ = cli(capsys, "--version")
    assert code == 0 and out.strip() == f"diffusionforge {__version__}"


def test_sample_device_defaults_to_auto(tmp_path, monkeypatch, capsys):
    # the GPU when there is one (here: none, so the CPU), not always the CPU
    import torch

    from diffusionforge.cli.main import build_parser

    assert build_parser().parse_args(["sample", "digits"]).device == "auto"
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "sample", "digits", "--class", "3", "--n", "1", "--nfe", "2",
                         "--out", "one.npy")  # fmt: skip
    assert code == 0, err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = cli(capsys, "sample", "digits", "--device", "cuda", "--out", "x.npy")
    assert code == 2 and "no CUDA device" in err
