"""`diffusionforge eval` (issue 4): metrics, NFE sweep CSV/PNG, memorization report, errors."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from PIL import Image

from diffusionforge.modalities import build_dataset, make_trainer
from diffusionforge.pipelines.evaluate import EvalSettings, evaluate, sweep_plot
from diffusionforge.pipelines.pipeline import load_pipeline

from trainkit import assert_one_line_error, digits_cfg, run_cli


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    run = tmp_path_factory.mktemp("digits")
    return make_trainer(digits_cfg("train.steps=3"), run, log=lambda m: None).fit().checkpoint


class PixelFeatures:
    """A stand-in extractor (the classifier takes ~10 s to train): raw pixels."""

    name = "pixels"

    def __call__(self, images):
        return images.flatten(1)


def test_evaluate_writes_metrics_sweep_and_memorization(ckpt, tmp_path):
    torch.set_num_threads(1)
    pipe = load_pipeline(ckpt)
    train = build_dataset(pipe.cfg).data
    s = EvalSettings(n=30, nfe=2, guidance=2.0, sweep_samplers=["euler", "heun"], sweep_nfe=[2, 4])
    s.sweep_n = 20
    m = evaluate(pipe, train, PixelFeatures(), s, tmp_path, log=lambda line: None)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("fid", "kid", "precision", "recall", "memorized_fraction"):
        assert saved[key] == m[key]
    assert 0 <= m["precision"] <= 1 and 0 <= m["memorized_fraction"] <= 1
    rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
    assert [(r["sampler"], r["nfe"]) for r in rows] == [
        ("euler", "2"),
        ("euler", "4"),
        ("heun", "2"),
        ("heun", "4"),
    ]
    for name in ("sweep.png", "memorization.png", "samples.png"):
        assert Image.open(tmp_path / name).size[0] > 50


def test_sweep_plot_survives_one_point_and_equal_values():
    im = sweep_plot([{"sampler": "euler", "nfe": 8, "fid": 3.0}], "t")
    assert im.size == (640, 420)
    sweep_plot([{"sampler": "a", "nfe": n, "fid": 1.0} for n in (2, 4)], "t")


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--n", "1"], "--n"),
        (["--nfe", "0"], "--nfe"),
        (["--guidance", "-2"], "--guidance"),
        (["--sweep-samplers", "euler,nope"], "'nope'"),
        (["--sweep-nfe", "4,x"], "--sweep-nfe"),
        (["--sweep-nfe", "0"], "--sweep-nfe"),
        (["--alpha", "1.5"], "--alpha"),
        (["--inception-weights", "missing.pth"], "missing.pth"),
    ],
)
def test_bad_eval_flags_are_one_line_errors(ckpt, tmp_path, flags, words):
    p = run_cli(["eval", str(ckpt), *flags], cwd=tmp_path)
    assert words in assert_one_line_error(p)


def test_eval_rejects_non_image_checkpoints_and_bad_inception_files(ckpt, tmp_path):
    p = run_cli(["eval", str(tmp_path / "nothing")], cwd=tmp_path)
    assert "nothing" in assert_one_line_error(p)
    (tmp_path / "w.pth").write_bytes(b"garbage")
    p = run_cli(["eval", str(ckpt), "--inception-weights", "w.pth"], cwd=tmp_path)
    assert "w.pth" in assert_one_line_error(p)


@pytest.mark.slow
def test_eval_command_end_to_end_with_classifier_features(ckpt, tmp_path):
    p = run_cli(
        ["eval", str(ckpt), "--n", "50", "--nfe", "2", "--sweep-samplers", "euler"]
        + ["--sweep-nfe", "2,4", "--sweep-n", "20", "--out", str(tmp_path / "ev")],
        env={"DIFFUSIONFORGE_CACHE": str(tmp_path / "cache")},
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert "held-out accuracy" in p.stderr and "FID" in p.stderr
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["features"] == "classifier" and m["samples"] == 50


def test_evaluate_names_the_schedule_and_the_as_requested_rate(ckpt, tmp_path):
    """A classifier-like extractor that reads every sample as class 0: with n = 30 samples of
    10 classes in turn, exactly 3 were asked for 0, so the as-requested rate is 0.1."""

    class ReadsZero(PixelFeatures):
        def predict(self, images):
            return torch.zeros(len(images), dtype=torch.long)

    torch.set_num_threads(1)
    pipe = load_pipeline(ckpt)
    train = build_dataset(pipe.cfg).data
    s = EvalSettings(n=30, nfe=2, sweep_samplers=[])
    lines = []
    m = evaluate(pipe, train, ReadsZero(), s, tmp_path, log=lines.append)
    assert m["as_requested"] == pytest.approx(0.1) and m["schedule"] == pipe.plan(2).schedule
    assert any(f"+ {m['schedule']}, NFE 2" in line for line in lines)
