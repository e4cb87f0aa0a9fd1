"""Image folders larger than data.cache_mb stream from disk (#18 point 4): nothing is decoded
before a batch asks for it, the tensors are the cached path's bit for bit, any worker count
gives the same batches, and a resumed streaming run ends bitwise equal to an uninterrupted one.
Own images size themselves: the side from the data, the batch from the side, a stated cost."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from diffusionforge.data import images as images_mod
from diffusionforge.data.images import ImageFolder, auto_side
from diffusionforge.data.stream import BatchLoader, FolderStream
from diffusionforge.errors import ConfigError
from diffusionforge.modalities import build_dataset, make_trainer
from diffusionforge.train import auto_size
from diffusionforge.train import checkpoint as io
from diffusionforge.train.batches import Order, keys
from diffusionforge.train.config import apply_overrides, load_preset

from trainkit import digits_cfg


def _folder(root, n=12, size=(12, 10), classes=("a", "b")):
    rng = np.random.default_rng(0)
    for i in range(n):
        sub = root / classes[i % len(classes)] if classes else root
        sub.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(sub / f"{i:03d}.png")
    return root


def _cfg(root, *extra):
    return digits_cfg(
        "data.kind=images", f"data.path={root}", "data.image_size=8", "data.augment=flip", *extra
    )


def test_streaming_decodes_nothing_up_front_and_matches_the_cache(tmp_path, monkeypatch):
    root = _folder(tmp_path / "f")
    loads = Counter()
    real_load = ImageFolder.load

    def counting_load(self, index):
        loads[index] += 1
        return real_load(self, index)

    monkeypatch.setattr(images_mod.ImageFolder, "load", counting_load)
    stream = build_dataset(_cfg(root, "data.cache_mb=0"))
    assert isinstance(stream, FolderStream) and sum(loads.values()) == 0  # nothing decoded yet
    assert stream.shape == (3, 8, 8) and stream.classes == ["a", "b"]
    cached = build_dataset(_cfg(root))
    assert not isinstance(cached, FolderStream)
    loads.clear()
    idx = torch.tensor([5, 0, 11, 3])
    for epoch in (0, 1):
        assert torch.equal(stream.batch(idx, epoch), cached.batch(idx, epoch))
    assert sorted(loads) == [0, 3, 5, 11] and all(v == 2 for v in loads.values())
    assert torch.equal(stream.labels, cached.labels)
    assert torch.equal(stream.data[2:4], cached.data[2:4])
    assert torch.equal(stream.data[torch.tensor(7)], cached.data[7])


def test_any_worker_count_gives_the_same_batches(tmp_path):
    stream = build_dataset(_cfg(_folder(tmp_path / "f", n=16), "data.cache_mb=0"))
    order = Order(len(stream), batch_size=4, micro=2, seed=3, shuffle=True)
    wanted = [(s, sh) for s in range(2, 11) for sh in (0, 1)]  # crosses epochs 0 -> 2
    out = {}
    for workers in (0, 2):
        loader = BatchLoader(stream, keys(order, 2, 11, [0, 1]), workers)
        out[workers] = [loader.next(s, sh) for s, sh in wanted]
        loader.close()
    for (s, sh), a, b in zip(wanted, out[0], out[2], strict=True):
        epoch, idx = order.indices(s, sh)
        assert torch.equal(a, b) and torch.equal(a, stream.batch(idx, epoch))
    loader = BatchLoader(stream, keys(order, 0, 2, [0, 1]), 0)
    with pytest.raises(RuntimeError, match="expected step 1 shard 0"):
        loader.next(1, 0)


def test_a_resumed_streaming_run_ends_bitwise_equal(tmp_path):
    root = _folder(tmp_path / "f", n=70)
    cfg = _cfg(root, "data.cache_mb=0", "data.num_workers=1")
    whole, split = tmp_path / "whole", tmp_path / "split"
    make_trainer(cfg, whole, log=lambda m: None).fit()
    assert make_trainer(cfg, split, until_step=3, log=lambda m: None).fit().status == "stopped"
    lines: list[str] = []
    make_trainer(cfg, split, resume="auto", log=lines.append).fit()
    assert any("resumed from" in line for line in lines)
    a = io.load_checkpoint(whole / "checkpoints" / "step-000000006", need_training_state=True)
    b = io.load_checkpoint(split / "checkpoints" / "step-000000006", need_training_state=True)
    for rel in ("model.safetensors", "ema.safetensors", "training_state/optimizer.safetensors"):
        assert a.files[rel] == b.files[rel], rel


def test_auto_side_is_the_short_side_rounded_down():
    assert auto_side(Counter({(96, 64): 5, (20, 20): 2})) == 64
    assert auto_side(Counter({(40, 33): 1})) == 32
    assert auto_side(Counter({(300, 200): 1})) == 64  # CPU-sized cap
    assert auto_side(Counter({(5, 7): 1})) == 8  # smaller images are upscaled to the least


def test_own_images_pick_side_and_batch_and_say_so(tmp_path, capsys):
    root = _folder(tmp_path / "f", n=70, size=(48, 20), classes=())
    cfg = apply_overrides(
        load_preset("images"),
        [f"data.path={root}", "train.steps=5", "train.sample_every=0", "train.tensorboard=false"],
    )
    lines: list[str] = []
    trainer = make_trainer(cfg, tmp_path / "run", log=lines.append)
    trainer.fit()
    assert trainer.cfg.data.image_size == 16 and trainer.cfg.train.batch_size == 64
    assert "images are 48x20 (70 image(s)); training at 16x16, picked from the data" in (
        capsys.readouterr().err
    )
    text = "\n".join(lines)
    assert "batch size 64 for 16x16 images - set train.batch_size to change" in text
    assert "expected: 1 more steps take about" in text
    with pytest.raises(ConfigError, match="train.batch_size: 0"):
        auto_size.batch_size(digits_cfg("train.batch_size=0"), (2,), 100, 1, print)
    small = digits_cfg("train.batch_size=0")
    lines.clear()
    auto_size.batch_size(small, (3, 8, 8), 80, 1, lines.append)
    assert small.train.batch_size == 80 and "(capped at the 80 examples)" in lines[0]


def test_expected_time_line_is_per_step_cost_times_steps_left():
    line = auto_size.expected_line(0.6, 1.5, 3, 1000)
    assert "about 3 min CPU time" in line and "8 min wall clock" in line  # 200 s, 500 s
    assert "0.20 CPU-s/step" in line
    assert "about 20 s CPU time" in auto_size.expected_line(0.6, 0.6, 3, 100)


def test_train_data_folder_without_a_preset_uses_images(tmp_path, capsys, monkeypatch):
    from diffusionforge.cli import main

    root = _folder(tmp_path / "mine", n=20, size=(10, 9), classes=())
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--data", str(root), "--steps", "2", "--no-progress"]
    for item in ("train.sample_every=0", "train.tensorboard=false", "train.batch_size=8"):
        argv += ["--set", item]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "training at 8x8, picked from the data" in err
    saved = io.latest_checkpoint(tmp_path / "runs" / "images-mine")[0].config
    assert saved["preset"] == "images" and saved["data"]["image_size"] == 8


def test_a_truncated_file_is_dropped_when_cached_and_replaced_when_streamed(tmp_path, capsys):
    root = _folder(tmp_path / "f", n=4, classes=())
    good = (root / "001.png").read_bytes()
    (root / "001.png").write_bytes(good[: len(good) // 2])  # the header survives
    cached = build_dataset(_cfg(root, "data.augment=none"))
    assert len(cached) == 3 and "001.png: unreadable image" in capsys.readouterr().err
    stream = build_dataset(_cfg(root, "data.augment=none", "data.cache_mb=0"))
    assert len(stream) == 4  # headers only: the break shows when the file is decoded
    x = stream.batch(torch.tensor([1, 0]), 0)
    assert "001.png: failed at load time" in capsys.readouterr().err
    stream.batch(torch.tensor([1]), 1)
    assert capsys.readouterr().err == ""  # reported once, not every epoch
    assert torch.equal(x[0], cached.data[1]) and torch.equal(x[1], cached.data[0])  # 002, 000
