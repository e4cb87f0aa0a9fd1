from pathlib import Path

import numpy as np
import pytest
import torch

from diffusionforge.data.builtin import (
    GLYPH_CHARS,
    find_fonts,
    load_digits,
    load_glyphs,
    render_font,
)

DEJAVU = sorted(Path("/usr/share/fonts/truetype/dejavu").glob("DejaVuSans*.ttf"))[:3]


def test_digits_shape_range_and_classes():
    ds = load_digits()
    assert len(ds) == 1797 and ds.num_classes == 10
    image, label = ds[0]
    assert image.shape == (1, 8, 8) and label == 0
    assert ds.images.min() == -1.0 and ds.images.max() == 1.0
    assert torch.bincount(ds.labels).min() >= 170  # roughly balanced
    big = load_digits(size=16)
    assert big[5][0].shape == (1, 16, 16)
    assert torch.equal(big[5][0][:, ::2, ::2], ds[5][0])  # nearest upsampling keeps values


@pytest.mark.skipif(not DEJAVU, reason="needs fonts-dejavu-core")
def test_glyphs_render_cache_and_determinism(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSIONFORGE_CACHE", str(tmp_path))
    ds = load_glyphs(copies=2, fonts=DEJAVU)
    n_fonts = len(DEJAVU)
    assert len(ds) == n_fonts * 2 * 62 and ds.num_classes == 62
    assert ds.classes == list(GLYPH_CHARS)
    image, label = ds[62 + 10]  # font 0, copy 1, 'A'
    assert image.shape == (1, 32, 32) and label == 10
    assert ds.images.min() == -1.0 and ds.images.max() == 1.0
    # Ink is bright and sits inside the frame; the background corners are empty.
    assert image.mean() < -0.5 and ds.images[:, :, 0, 0].max() == -1.0
    (cached,) = list(tmp_path.glob("glyphs-*/images.npy"))
    again = load_glyphs(copies=2, fonts=DEJAVU)  # from the cache, identical bytes
    assert torch.equal(again.images, ds.images)
    cached.unlink()
    (tmp_path / cached.parent.name / "labels.npy").unlink()
    rebuilt = load_glyphs(copies=2, fonts=DEJAVU)  # re-rendered: deterministic
    assert torch.equal(rebuilt.images, ds.images)
    # Jittered copies differ from the plain render, lowercase is smaller than uppercase.
    assert not torch.equal(ds.images[10], ds.images[62 + 10])
    o_upper, o_lower = ds.images[GLYPH_CHARS.index("O")], ds.images[GLYPH_CHARS.index("o")]
    assert (o_upper > 0).sum() > 1.3 * (o_lower > 0).sum()


def test_fonts_without_the_characters_are_rejected(tmp_path):
    junk = tmp_path / "junk.ttf"
    junk.write_bytes(b"not a font")
    assert render_font(junk) is None
    assert all("symbol" not in p.name.lower() for p in find_fonts())
    arabic = Path("/usr/share/fonts/truetype/noto/NotoSansArabic-Regular.ttf")
    if arabic.exists():  # maps no Latin letters: would draw .notdef boxes
        assert render_font(arabic) is None
    if DEJAVU:
        rendered = render_font(DEJAVU[0])
        assert rendered is not None and rendered.shape == (62, 64, 64)
        assert np.all(rendered.reshape(62, -1).max(1) == 255)  # every glyph has ink
