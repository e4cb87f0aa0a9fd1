"""`diffusionforge sample` for image models: grid + single PNGs whose metadata regenerates each
image bit for bit, classifier-free guidance, and one-line errors for every bad flag."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from diffusionforge.core.plan import Plan
from diffusionforge.modalities import make_trainer
from diffusionforge.pipelines.images import ImageRequest, draw, read_metadata
from diffusionforge.pipelines.pipeline import load_pipeline

from trainkit import assert_one_line_error, digits_cfg, run_cli


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    run = tmp_path_factory.mktemp("digits")
    cfg = digits_cfg("train.steps=3", "train.label_dropout=0.1")
    return make_trainer(cfg, run, log=lambda m: None).fit().checkpoint


def test_grid_and_single_pngs_carry_metadata_and_regenerate_bit_for_bit(ckpt, tmp_path):
    out = tmp_path / "g"  # a folder: one PNG per image, grid.png, samples.json
    p = run_cli(
        ["sample", str(ckpt), "--class", "3,7", "--n", "2", "--guidance", "2", "--nfe", "4"]
        + ["--seed", "10", "--out", str(out)]
    )
    assert p.returncode == 0, p.stderr
    singles = sorted(out.glob("sample-*.png"))
    assert [s.name for s in singles] == [
        "sample-10-3.png",
        "sample-11-3.png",
        "sample-12-7.png",
        "sample-13-7.png",
    ]
    rec = read_metadata(singles[2])
    assert rec["seed"] == 12 and rec["class"] == 7 and rec["guidance"] == 2.0
    assert rec["nfe"] == 4 and rec["sampler"] and rec["schedule"] and rec["threads"] == 1
    import hashlib

    assert (
        rec["checkpoint_sha256"]
        == hashlib.sha256((ckpt / "ema.safetensors").read_bytes()).hexdigest()
    )
    assert Image.open(singles[2]).text["seed"] == "12"  # plain text chunks, too
    grid = read_metadata(out / "grid.png")
    assert grid["count"] == 4 and grid["classes"] == [3, 3, 7, 7] and grid["class"] == [3, 7]

    # regenerate image 2 from its PNG alone, in a new process and a batch of its own
    p = run_cli(["sample", str(ckpt), "--like", str(singles[2]), "--out", str(tmp_path / "r")])
    assert p.returncode == 0, p.stderr
    again = tmp_path / "r" / "sample-12-7.png"
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(singles[2])))

    # and bit for bit before 8-bit rounding: the float image depends on its own seed only
    torch.set_num_threads(1)
    pipe = load_pipeline(ckpt)
    kw = dict(guidance=2.0, plan=Plan.resolve(4, rec["sampler"], rec["schedule"]))
    batch = draw(pipe, ImageRequest(10, [3, 3, 7, 7], **kw), 4)
    alone = draw(pipe, ImageRequest(12, [7], **kw), 1)
    assert torch.equal(batch[2], alone[0])
    # guidance changes the image; the label does too
    assert not torch.equal(alone, draw(pipe, ImageRequest(12, [7], **{**kw, "guidance": 1.0}), 1))
    assert not torch.equal(alone, draw(pipe, ImageRequest(12, [1], **kw), 1))


def test_default_sample_is_ten_per_class_by_name(ckpt, tmp_path):
    p = run_cli(["sample", str(ckpt), "--nfe", "2", "--out", str(tmp_path / "all")])
    assert p.returncode == 0, p.stderr
    assert len(list((tmp_path / "all").glob("sample-*.png"))) == 100
    meta = json.loads(Image.open(tmp_path / "all" / "grid.png").text["diffusionforge"])
    assert meta["classes"] == [k // 10 for k in range(100)]


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--class", "11"], "--class '11'"),
        (["--class", "x"], "--class 'x'"),
        (["--guidance", "-1"], "--guidance"),
        (["--guidance", "nan"], "--guidance"),
        (["--nfe", "0"], "--nfe"),
        (["--sampler", "nope"], "--sampler"),
        (["--schedule", "nope"], "--schedule"),
        (["--n", "0"], "--n"),
        (["--n", "-1", "--class", "1,2"], "--n"),
        (["--threads", "0"], "--threads"),
        (["--out", "x.txt"], "--out"),
        (["--like", "missing.png"], "--like missing.png"),
        (["--seed", "abc"], "--seed"),
    ],
)
def test_bad_flags_are_one_line_errors(ckpt, tmp_path, flags, words):
    p = run_cli(["sample", str(ckpt), "--nfe", "2", *flags], cwd=tmp_path)
    assert words in assert_one_line_error(p)


def test_like_rejects_foreign_pngs_and_other_weights(ckpt, tmp_path):
    Image.new("L", (8, 8)).save(tmp_path / "plain.png")
    p = run_cli(["sample", str(ckpt), "--like", str(tmp_path / "plain.png")], cwd=tmp_path)
    assert "no diffusionforge metadata" in assert_one_line_error(p)
    (tmp_path / "junk.png").write_bytes(b"not a png")
    p = run_cli(["sample", str(ckpt), "--like", str(tmp_path / "junk.png")], cwd=tmp_path)
    assert "junk.png" in assert_one_line_error(p)
    assert (
        run_cli(
            ["sample", str(ckpt), "--n", "1", "--class", "2", "--out", "a"], cwd=tmp_path
        ).returncode
        == 0
    )
    p = run_cli(["sample", str(ckpt), "--no-ema", "--like", "a/sample-0-2.png"], cwd=tmp_path)
    assert "made by other weights" in assert_one_line_error(p)
