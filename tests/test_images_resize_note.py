"""Training on one's own images never resizes without a word (#18 point 4): a folder of 96x64
images trained at 32x32 gets one line saying so and naming data.image_size."""

from __future__ import annotations

from PIL import Image

from diffusionforge.data.images import ImageFolder


def _folder(root, sizes):
    root.mkdir()
    for i, (w, h) in enumerate(sizes):
        Image.new("RGB", (w, h), (i * 40, 0, 0)).save(root / f"{i}.png")


def test_other_sizes_are_reported_once(tmp_path):
    _folder(tmp_path / "a", [(96, 64), (96, 64), (40, 40)])
    lines: list[str] = []
    ds = ImageFolder(tmp_path / "a", 32, report=lines.append)
    assert len(ds) == 3 and len(lines) == 1
    assert "images are 96x64 (2 image(s) and 1 other size(s)); training at 32x32" in lines[0]
    assert "data.image_size" in lines[0]


def test_images_of_the_training_size_say_nothing(tmp_path):
    _folder(tmp_path / "b", [(32, 32), (32, 32)])
    lines: list[str] = []
    ImageFolder(tmp_path / "b", 32, report=lines.append)
    assert lines == []
