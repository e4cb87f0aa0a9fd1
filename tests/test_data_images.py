"""The image-folder input policy, one test per kind of bad or unusual input."""

import numpy as np
import pytest
import torch
from PIL import Image

from diffusionforge.data.images import ArrayImages, ImageFolder, flip_decision
from diffusionforge.errors import DataError


def _save(path, im: Image.Image, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **kw)


def _folder(root, size=8, **kw) -> tuple[ImageFolder, list[str]]:
    lines: list[str] = []
    return ImageFolder(root, size, report=lines.append, **kw), lines


def test_class_folders_sorted_recursive_and_root_files_skipped(tmp_path):
    _save(tmp_path / "zebra" / "a.png", Image.new("RGB", (8, 8), "white"))
    _save(tmp_path / "ant" / "deep" / "er" / "b.png", Image.new("RGB", (8, 8), "black"))
    _save(tmp_path / "loose.png", Image.new("RGB", (8, 8)))
    ds, lines = _folder(tmp_path)
    assert ds.classes == ["ant", "zebra"] and len(ds) == 2
    assert [label for _, label in ds.samples] == [0, 1]
    assert ds[0][1] == 0 and ds[0][0].max() == -1.0  # black -> -1
    assert ds[1][1] == 1 and ds[1][0].min() == 1.0  # white -> +1
    assert [p.name for p, _ in ds.skipped] == ["loose.png"]
    assert any("loose.png" in line and "class folder" in line for line in lines)


def test_unlabelled_folder_and_empty_folder_error(tmp_path):
    _save(tmp_path / "x.png", Image.new("RGB", (8, 8)))
    ds, _ = _folder(tmp_path)
    assert ds.classes == [] and ds[0][1] == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty") as err:
        _folder(empty)
    assert "\n" not in str(err.value)


def test_bad_files_skipped_counted_and_named(tmp_path):
    good = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8))
    _save(tmp_path / "c" / "good.png", good)
    (tmp_path / "c" / "notes.txt").write_text("not an image")
    (tmp_path / "c" / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    for ext in ("png", "jpg"):
        _save(tmp_path / f"full.{ext}", good)  # outside the class folders: then skipped too
        data = (tmp_path / f"full.{ext}").read_bytes()
        (tmp_path / "c" / f"truncated.{ext}").write_bytes(data[: len(data) // 2])
    ds, lines = _folder(tmp_path)
    assert [p.name for p, _ in ds.samples] == ["good.png"]
    bad = {p.name for p, _ in ds.skipped}
    assert {"notes.txt", "garbage.png", "truncated.png", "truncated.jpg"} <= bad
    for name in ("notes.txt", "garbage.png", "truncated.png", "truncated.jpg"):
        assert sum(name in line for line in lines) == 1  # exactly one line names each file
    assert lines[-1].endswith(f"skipped {len(ds.skipped)} of {len(ds.skipped) + 1}")


def test_decompression_bombs_skipped(tmp_path, monkeypatch):
    _save(tmp_path / "small.png", Image.new("L", (10, 10)))
    _save(tmp_path / "big.png", Image.new("L", (100, 100)))
    ds, _ = _folder(tmp_path, max_pixels=1000)  # our own limit
    assert [p.name for p, _ in ds.samples] == ["small.png"]
    assert "decompression bomb" in ds.skipped[0][1]
    # Pillow's own guard (warning above MAX_IMAGE_PIXELS, error above twice that) is honoured.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    ds, _ = _folder(tmp_path, max_pixels=10**9)
    assert [p.name for p, _ in ds.skipped] == ["big.png"]


def test_modes_converted_by_policy(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))  # fully transparent -> white background
    _save(tmp_path / "rgba.png", rgba)
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([255, 0, 0] + [0, 0, 0] * 255)
    _save(tmp_path / "palette.png", pal)
    _save(tmp_path / "palette_t.png", pal, transparency=0)
    sixteen = Image.fromarray(np.full((4, 4), 65535, np.uint16))  # I;16: full scale -> white
    _save(tmp_path / "gray16.png", sixteen)
    _save(tmp_path / "gray.png", Image.new("L", (4, 4), 0))
    _save(tmp_path / "cmyk.jpg", Image.new("CMYK", (4, 4), (0, 0, 0, 0)))  # no ink -> white
    _save(tmp_path / "one.png", Image.new("1", (4, 4), 1))
    ds, lines = _folder(tmp_path, size=4)
    assert not ds.skipped, lines
    got = {p.name: ds[i][0] for i, (p, _) in enumerate(ds.samples)}
    assert all(t.shape == (3, 4, 4) for t in got.values())
    for name in ("rgba.png", "palette_t.png", "gray16.png", "one.png"):
        assert torch.allclose(got[name], torch.ones(3, 4, 4)), name
    assert torch.allclose(got["cmyk.jpg"], torch.ones(3, 4, 4), atol=0.02)
    assert got["palette.png"][:, 0, 0].tolist() == [1.0, -1.0, -1.0]  # red
    assert torch.equal(got["gray.png"], -torch.ones(3, 4, 4))
    gray_ds, _ = _folder(tmp_path, size=4, channels=1)
    assert gray_ds[0][0].shape == (1, 4, 4)


def test_sixteen_bit_scaled_not_clipped(tmp_path):
    _save(tmp_path / "mid.png", Image.fromarray(np.full((4, 4), 257 * 100, np.uint16)))
    ds, _ = _folder(tmp_path, size=4, channels=1)
    assert torch.allclose(ds[0][0], torch.full((1, 4, 4), 100 / 127.5 - 1))


def test_resize_shorter_side_then_center_crop(tmp_path):
    # 24x8: left third red, middle green, right blue. Shorter side 8 -> 8, so the crop keeps
    # exactly the middle 8x8 square.
    arr = np.zeros((8, 24, 3), np.uint8)
    arr[:, :8, 0], arr[:, 8:16, 1], arr[:, 16:, 2] = 255, 255, 255
    _save(tmp_path / "wide.png", Image.fromarray(arr))
    ds, _ = _folder(tmp_path, size=8)
    img = ds[0][0]
    assert torch.equal(img[1], torch.ones(8, 8)) and img[0].max() < 0 and img[2].max() < 0
    ds, _ = _folder(tmp_path, size=16)  # upscaled: 48x16 then the middle 16 columns
    assert ds[0][0].shape == (3, 16, 16) and ds[0][0][1].mean() > 0.9


def test_one_pixel_images_upscaled_or_skipped(tmp_path):
    _save(tmp_path / "dot.png", Image.new("RGB", (1, 1), (255, 0, 0)))
    _save(tmp_path / "ok.png", Image.new("RGB", (8, 8)))
    ds, _ = _folder(tmp_path, size=8)
    dot = ds[0][0]
    assert dot.shape == (3, 8, 8) and torch.allclose(dot[0], torch.ones(8, 8))
    ds, lines = _folder(tmp_path, size=8, min_side=2)
    assert [p.name for p, _ in ds.skipped] == ["dot.png"] and "too small" in lines[0]


def test_getitem_survives_files_broken_after_scan(tmp_path):
    for i in range(3):
        _save(tmp_path / f"{i}.png", Image.new("L", (8, 8), 40 * i))
    ds, lines = _folder(tmp_path, channels=1)
    (tmp_path / "1.png").write_bytes(b"broken")
    image, _ = ds[1]  # falls through to the next readable image
    assert torch.equal(image, ds.load(2))
    assert any("1.png" in line for line in lines)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=1)
    ((batch, _),) = list(loader)
    assert batch.shape == (3, 1, 8, 8)


def test_flip_is_a_function_of_seed_epoch_index():
    coins = [flip_decision(0, 0, i) for i in range(400)]
    assert coins == [flip_decision(0, 0, i) for i in range(400)]
    assert 150 < sum(coins) < 250
    assert coins != [flip_decision(0, 1, i) for i in range(400)]
    images = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(400, 1, 1, 1)
    ds = ArrayImages(images, hflip=True, seed=0)
    flipped = [bool(ds[i][0][0, 0, 0] == 3.0) for i in range(400)]
    assert flipped == coins
    ds.set_epoch(1)
    assert [bool(ds[i][0][0, 0, 0] == 3.0) for i in range(400)] != coins


def test_array_images_from_npy(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (5, 6, 6, 3), np.uint8)
    np.save(tmp_path / "x.npy", arr)
    np.save(tmp_path / "y.npy", np.arange(5))
    ds = ArrayImages.from_npy(tmp_path / "x.npy", tmp_path / "y.npy")
    image, label = ds[3]
    assert image.shape == (3, 6, 6) and label == 3
    assert torch.allclose(image, torch.from_numpy(arr[3].transpose(2, 0, 1) / 127.5 - 1).float())
    np.save(tmp_path / "bad.npy", np.zeros((5, 6, 6), np.float64))
    with pytest.raises(ValueError, match="expected uint8"):
        ArrayImages.from_npy(tmp_path / "bad.npy")
    (tmp_path / "junk.npy").write_text("junk")
    with pytest.raises(DataError, match="junk.npy"):
        ArrayImages.from_npy(tmp_path / "junk.npy")


def test_array_images_reject_unsupported_channel_counts():
    with pytest.raises(ValueError, match="C 1 or 3"):
        ArrayImages.from_uint8(np.zeros((2, 4, 4, 4), np.uint8))
