"""Image training through the engine (issue 4): builders, label dropout, grids, exact resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from diffusionforge.errors import ConfigError, DataError
from diffusionforge.modalities import build_dataset, make_trainer
from diffusionforge.train import checkpoint as io
from diffusionforge.train.builders import build_model
from diffusionforge.train.config import apply_overrides

from trainkit import TINY_IMAGES, digits_cfg, run_cli


def test_builders_make_conditional_unet_and_dit():
    cfg = digits_cfg("model.num_classes=10")
    net = build_model(cfg, (1, 8, 8))
    out = net(torch.randn(3, 1, 8, 8), torch.zeros(3), torch.tensor([0, 9, 10]))
    assert out.shape == (3, 1, 8, 8)
    assert net.embed.label.num_embeddings == 11  # ten classes and the null label
    cfg = apply_overrides(cfg, ["model.kind=dit", "model.dit.dim=32", "model.dit.heads=2"])
    dit = build_model(cfg, (1, 8, 8))
    assert dit(torch.randn(2, 1, 8, 8), torch.zeros(2), torch.tensor([1, 10])).shape == (2, 1, 8, 8)
    wide = build_model(digits_cfg("model.unet.channels=24", "model.num_classes=0"), (3, 16, 16))
    assert wide.conv_in.out_channels == 24 and wide.embed.label is None


@pytest.mark.parametrize(
    "override, words",
    [
        ("model.unet.preset=huge", "model.unet.preset"),
        ("model.unet.channel_mult=[1,2,2,2,2]", "not divisible"),
    ],
)
def test_bad_model_settings_are_config_errors(override, words):
    with pytest.raises(ConfigError, match=words):
        build_model(digits_cfg(override, "model.num_classes=10"), (1, 8, 8))


def test_digits_dataset_has_labels_and_classes():
    ds = build_dataset(digits_cfg())
    assert ds.shape == (1, 8, 8) and len(ds) == 1797 and ds.num_classes == 10
    assert ds.labels.shape == (1797,) and ds.classes[3] == "3"
    assert float(ds.data.min()) == -1.0 and float(ds.data.max()) == 1.0


def test_image_folder_and_npy_stack(tmp_path):
    for k, name in enumerate(["cats", "dogs"]):
        (tmp_path / "f" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (20, 12), (40 * i, 100 * k, 7)).save(
                tmp_path / "f" / name / f"{i}.png"
            )
    ds = build_dataset(
        digits_cfg("data.kind=images", f"data.path={tmp_path / 'f'}", "data.image_size=8")
    )
    assert ds.shape == (3, 8, 8) and ds.classes == ["cats", "dogs"]
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    np.save(tmp_path / "x.npy", np.zeros((4, 8, 8), np.uint8))
    np.save(tmp_path / "y.npy", np.array([0, 1, 2, 1]))
    ds = build_dataset(
        digits_cfg(
            "data.kind=images",
            f"data.path={tmp_path / 'x.npy'}",
            f"data.labels={tmp_path / 'y.npy'}",
        )
    )
    assert ds.shape == (1, 8, 8) and ds.num_classes == 3
    np.save(tmp_path / "bad.npy", np.zeros((4, 8, 8), np.float32))
    with pytest.raises(DataError, match="bad.npy"):
        build_dataset(digits_cfg("data.kind=images", f"data.path={tmp_path / 'bad.npy'}"))


def test_label_dropout_is_a_function_of_seed_step_and_shard(tmp_path):
    cfg = digits_cfg("train.label_dropout=0.3")
    tr = make_trainer(cfg, tmp_path, log=lambda m: None)
    tr._setup()
    labels = torch.arange(10).repeat(100)
    tr.step = 5
    a, b = tr._drop_cond(labels, 0), tr._drop_cond(labels, 0)
    assert torch.equal(a, b) and not torch.equal(a, tr._drop_cond(labels, 1))
    dropped = a == 10  # the null label
    assert 0.25 < dropped.float().mean() < 0.35
    assert torch.equal(a[~dropped], labels[~dropped])
    with pytest.raises(ConfigError, match="train.label_dropout"):
        digits_cfg("train.label_dropout=1.0")


def test_training_writes_class_rows_grid_and_resolved_config(tmp_path):
    cfg = digits_cfg("train.sample_every=6", "sample.guidance=2.0")
    result = make_trainer(cfg, tmp_path, log=lambda m: None).fit()
    assert result.status == "done"
    grid = Image.open(tmp_path / "samples" / "step-000000006.png")
    # data | samples panels, each 10 class rows x 2 columns of 8x8 digits enlarged to 32 px
    assert grid.height >= 10 * 32 and grid.width >= 2 * 2 * 32
    saved = json.loads((result.checkpoint / "config.json").read_text())
    assert saved["model"]["num_classes"] == 10
    assert saved["diffusionforge"]["classes"] == [str(d) for d in range(10)]


def test_interrupted_image_run_with_label_dropout_and_flip_resumes_bitwise(tmp_path):
    extra = ["train.label_dropout=0.2", "data.augment=flip"]
    args = ["--preset", "digits", "--no-progress"]
    for item in [*TINY_IMAGES, *extra]:
        args += ["--set", item]
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert run_cli(["train", *args, "--run-dir", str(whole)]).returncode == 0
    p = run_cli(["train", *args, "--run-dir", str(split), "--until-step", "3"])
    assert p.returncode == 0, p.stderr
    p = run_cli(["train", *args, "--run-dir", str(split), "--resume", "auto"])
    assert p.returncode == 0 and "resumed from" in p.stderr, p.stderr
    a = io.load_checkpoint(whole / "checkpoints" / "step-000000006", need_training_state=True)
    b = io.load_checkpoint(split / "checkpoints" / "step-000000006", need_training_state=True)
    for rel in ("model.safetensors", "ema.safetensors", "training_state/optimizer.safetensors"):
        assert a.files[rel] == b.files[rel], rel
