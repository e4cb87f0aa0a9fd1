import numpy as np
import pytest
import torch

from diffusionforge.data.arrays import ArrayDataset, load_npy
from diffusionforge.data.augment import augment, uniforms
from diffusionforge.data.toy import TOY_SETS, make_toy
from diffusionforge.errors import DataError


@pytest.mark.parametrize("name", list(TOY_SETS))
def test_toy_sets_are_deterministic_and_unit_scale(name):
    a, b = make_toy(name, 5000, seed=3), make_toy(name, 5000, seed=3)
    assert a.shape == (5000, 2) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, make_toy(name, 5000, seed=4))
    assert 0.3 < a.std(0).min() and a.abs().max() < 4  # suits sigma_data = 1


def test_toy_shapes_are_what_they_claim():
    ring = make_toy("ring", 4000)
    radius = ring.norm(dim=1)
    assert (radius - 1.5).abs().mean() < 0.1  # points sit on the circle
    board = make_toy("checkerboard", 4000)
    cell = ((board + 2) // 1).long()  # 4x4 cells of size 1
    assert ((cell[:, 0] + cell[:, 1]) % 2 == 0).all()  # only one colour of squares is filled


def test_augmentation_depends_only_on_seed_epoch_index():
    x = make_toy("moons", 64)
    idx = torch.arange(64)
    full = augment(x, idx, epoch=2, seed=7, kind="jitter", jitter=0.1)
    # the same examples in another batch order / split get the same augmentation
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    part = augment(x[perm[:10]], idx[perm[:10]], epoch=2, seed=7, kind="jitter", jitter=0.1)
    assert torch.equal(part, full[perm[:10]])
    assert not torch.equal(full, augment(x, idx, epoch=3, seed=7, kind="jitter", jitter=0.1))
    u = uniforms(7, 2, torch.arange(20000), 1)
    assert 0.49 < u.mean() < 0.51 and u.min() > 0 and u.max() < 1
    flipped = augment(x, idx, epoch=0, seed=1, kind="flip")
    same = (flipped == x).all(1)
    assert 10 < same.sum() < 54  # about half are mirrored
    assert torch.equal(flipped[~same], x[~same].flip(-1))


def test_load_npy_accepts_any_numeric_shape(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.arange(24, dtype=np.int64).reshape(4, 3, 2))
    t = load_npy(path)
    assert t.shape == (4, 3, 2) and t.dtype == torch.float32
    ds = ArrayDataset(t)
    assert ds.shape == (3, 2) and len(ds) == 4


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "no such file"),
        (b"", "not a valid .npy"),
        (b"this is not an array", "not a valid .npy"),
        ("empty", "empty array"),
        ("strings", "numeric"),
        ("nan", "NaN"),
        ("truncated", "header claims shape"),
    ],
)
def test_load_npy_rejects_bad_files_with_one_line(tmp_path, content, needle):
    path = tmp_path / "bad.npy"
    if content == "empty":
        np.save(path, np.zeros((0, 2), dtype=np.float32))
    elif content == "strings":
        np.save(path, np.array(["a", "b"]))
    elif content == "nan":
        np.save(path, np.array([[0.0, np.nan]]))
    elif content == "truncated":
        np.save(path, np.zeros((100, 2)))
        path.write_bytes(path.read_bytes()[:200])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError) as e:
        load_npy(path)
    assert needle in str(e.value) and "\n" not in str(e.value)
