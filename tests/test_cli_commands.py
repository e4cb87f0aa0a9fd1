"""The happy paths of the command line, as a person would run them."""

from __future__ import annotations

import json

import numpy as np

from diffusionforge.cli import main
from diffusionforge.demo import SECTIONS
from diffusionforge.train import checkpoint as io

from trainkit import run_cli, tiny_args


def test_train_info_sample(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *tiny_args("train.keep_last=1"), "--run-dir", str(run)]) == 0
    assert [p.name for p in io.list_checkpoints(run)] == ["step-000000020"]  # keep_last=1
    resolved = json.loads((run / "config.json").read_text())
    assert resolved["model"]["mlp"]["hidden"] == 32  # the override is in the run's config
    capsys.readouterr()

    assert main(["info", str(run)]) == 0
    info = capsys.readouterr().out
    assert "step         20 of 20" in info and "mlp" in info and "moons" in info

    out = tmp_path / "s.npy"
    assert (
        main(["sample", str(run), "--n", "50", "--nfe", "8", "--seed", "3", "--out", str(out)]) == 0
    )
    a = np.load(out)
    assert a.shape == (50, 2) and np.isfinite(a).all()
    assert (
        main(["sample", str(run), "--n", "50", "--nfe", "8", "--seed", "3", "--out", str(out)]) == 0
    )
    assert np.array_equal(np.load(out), a)  # same seed, same bytes
    png = tmp_path / "s.png"
    assert (
        main(
            [
                "sample",
                str(run),
                "--n",
                "300",
                "--nfe",
                "8",
                "--sampler",
                "euler",
                "--out",
                str(png),
            ]
        )
        == 0
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_on_an_npy_file_and_list_presets(tmp_path, capsys):
    data = np.random.default_rng(0).normal(size=(256, 3)).astype(np.float32)
    np.save(tmp_path / "d.npy", data)
    assert (
        main(
            [
                "train",
                *tiny_args(),
                "--preset",
                "vectors",
                "--data",
                str(tmp_path / "d.npy"),
                "--run-dir",
                str(tmp_path / "run"),
            ]
        )
        == 0
    )
    ckpt = io.latest_checkpoint(tmp_path / "run")[0]
    assert ckpt.config["diffusionforge"]["example_shape"] == [3]
    capsys.readouterr()
    assert main(["train", "--list-presets"]) == 0
    assert "checkerboard" in capsys.readouterr().out


def test_posthoc_ema_command(tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(["train", *tiny_args("ema.kind=power", "ema.snapshot_every=5"), "--run-dir", str(run)])
        == 0
    )
    assert main(["ema", str(run), "--sigma-rel", "0.08", "--out", str(tmp_path / "e")]) == 0
    ckpt = io.load_checkpoint(tmp_path / "e")
    assert ckpt.has("ema.safetensors")
    assert (
        main(
            [
                "sample",
                str(tmp_path / "e"),
                "--n",
                "10",
                "--nfe",
                "4",
                "--out",
                str(tmp_path / "x.npy"),
            ]
        )
        == 0
    )


def test_module_entry_point_and_help():
    p = run_cli(["--help"])
    assert p.returncode == 0
    for command in ("train", "sample", "info", "demo"):
        assert command in p.stdout


def test_demo_quick(tmp_path):
    p = run_cli(["demo", "--quick", "--out", str(tmp_path)], timeout=300)
    assert p.returncode == 0, p.stderr
    assert "2-D toy" in p.stdout and "sliced Wasserstein" in p.stdout
    png = tmp_path / "toy2d.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a short block per section: what was trained or loaded, how good, where the files are
    blocks = p.stdout.split("\n## ")[1:]
    assert len(blocks) == len(SECTIONS)
    assert all(len(b.splitlines()) <= 14 for b in blocks), [len(b.splitlines()) for b in blocks]
