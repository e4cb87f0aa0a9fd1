"""Captioned-image loader: sidecar folders, CSV and JSONL lists, and the bad-input policy."""

import json

import numpy as np
import pytest
from PIL import Image

from diffusionforge.data.captions import CaptionedImages, load_captioned
from diffusionforge.errors import DataError


def _img(path, colour=(255, 0, 0), size=(12, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _load(source, **kw):
    lines: list[str] = []
    return CaptionedImages(source, 8, report=lines.append, **kw), lines


def test_folder_with_sidecars_and_every_bad_kind(tmp_path):
    _img(tmp_path / "a.png", (255, 0, 0))
    (tmp_path / "a.txt").write_text("  a red\n square \n")
    _img(tmp_path / "sub" / "b.png", (0, 0, 255))
    (tmp_path / "sub" / "b.txt").write_text("blue")
    _img(tmp_path / "nocap.png")
    _img(tmp_path / "empty.png")
    (tmp_path / "empty.txt").write_text("   \n")
    _img(tmp_path / "latin.png")
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "orphan.txt").write_text("no image here")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(300))
    (tmp_path / "broken.txt").write_text("broken")
    ds, lines = _load(tmp_path)
    assert [p.name for p, _ in ds.samples] == ["a.png", "b.png"]
    assert ds.captions == ["a red square", "blue"]
    image, caption = ds[0]
    assert image.shape == (3, 8, 8) and caption == "a red square"
    assert image[0].min() == 1.0 and image[1].max() == -1.0  # pure red
    bad = {p.name: why for p, why in ds.skipped}
    assert set(bad) == {"nocap.png", "empty.txt", "latin.txt", "orphan.txt", "broken.png"}
    assert "no caption file nocap.txt" in bad["nocap.png"]
    assert "empty caption" in bad["empty.txt"] and "UTF-8" in bad["latin.txt"]
    for name in bad:
        assert sum(name in line for line in lines) == 1  # one line names each bad file
    assert lines[-1].endswith("skipped 5 of 7")


def test_csv_list_relative_and_absolute_paths(tmp_path):
    _img(tmp_path / "img" / "x.png", (0, 255, 0), size=(16, 16))
    _img(tmp_path / "y.png", (255, 255, 255))
    rows = [
        "file_name,caption,extra",
        "img/x.png,a green thing,1",
        f'{tmp_path / "y.png"},"white, with a comma",2',
        "missing.png,gone,3",
        "img/x.png,,4",
    ]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    ds, lines = _load(tmp_path / "list.csv")
    assert ds.captions == ["a green thing", "white, with a comma"]
    why = sorted(w for _, w in ds.skipped)
    assert why == ["list.csv row 5: empty or missing caption", "no such image file"]
    images, captions = load_captioned(tmp_path / "list.csv", 4, channels=1, report=lambda s: None)
    assert images.shape == (2, 1, 4, 4) and captions == ds.captions
    # ITU-R 601 luma of pure green is 150/255 of white
    assert images[0].mean().item() == pytest.approx(150 / 127.5 - 1, abs=0.01)


def test_jsonl_list_and_bad_lines(tmp_path):
    _img(tmp_path / "p.png")
    lines = [
        json.dumps({"file_name": "p.png", "text": "hf style"}),
        "",
        "{not json",
        json.dumps(["p.png", "a list"]),
        json.dumps({"path": "p.png", "caption": "ours"}),
    ]
    (tmp_path / "meta.jsonl").write_text("\n".join(lines))
    ds, out = _load(tmp_path / "meta.jsonl")
    assert ds.captions == ["hf style", "ours"]
    assert [str(p) for p, _ in ds.skipped] == ["meta.jsonl line 3", "meta.jsonl line 4"]


@pytest.mark.parametrize(
    "name, text, match",
    [
        ("bad.csv", "image_path,label\nx.png,cat\n", "expected a path column"),
        ("bad.jsonl", '{"img": "x.png", "label": "cat"}\n', "expected a path column"),
        ("none.csv", "path,caption\nmissing.png,cat\n", "no usable captioned images"),
        ("data.tsv", "x", "expected a folder, a .csv or a .jsonl"),
    ],
)
def test_one_line_errors(tmp_path, name, text, match):
    (tmp_path / name).write_text(text)
    with pytest.raises(DataError, match=match) as err:
        _load(tmp_path / name)
    assert "\n" not in str(err.value) and name in str(err.value)


def test_missing_and_empty_sources(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        _load(tmp_path / "nope")
    with pytest.raises(DataError, match="no usable"):
        _load(tmp_path)


def test_images_match_images_folder_decoding(tmp_path):
    # the same resize/crop policy as ImageFolder: a 16x8 image with two halves keeps its centre
    arr = np.zeros((8, 16, 3), np.uint8)
    arr[:, 8:] = 255
    Image.fromarray(arr).save(tmp_path / "h.png")
    (tmp_path / "h.txt").write_text("half")
    ds, _ = _load(tmp_path)
    img = ds[0][0]
    assert img.shape == (3, 8, 8)
    assert img[:, :, :3].max() < -0.9 and img[:, :, 5:].min() > 0.9  # left dark, right bright
