"""Pictures that say what they show (issue 18 point 9): scatter plots have ticks with values on
both axes, and memorization.png labels each pair with the indices and the distance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from diffusionforge.eval.memorization import memorization, save_worst_pairs
from diffusionforge.plot import nice_ticks, scatter_panels, tick_label


@pytest.mark.parametrize(
    ("lo", "hi", "ticks", "step"),
    [
        (-1.3, 2.7, [-1, 0, 1, 2], 1.0),  # span 4: steps 0.5 (8 intervals) too many, 1 fits
        (0.0, 1.0, [0, 0.2, 0.4, 0.6, 0.8, 1.0], 0.2),
        (-0.05, 0.05, [-0.04, -0.02, 0, 0.02, 0.04], 0.02),
        (120.0, 980.0, [200, 400, 600, 800], 200.0),
    ],
)
def test_nice_ticks_are_round_and_inside(lo, hi, ticks, step):
    got, got_step = nice_ticks(lo, hi)
    assert got_step == pytest.approx(step)
    assert got == pytest.approx(ticks)
    assert all(lo <= t <= hi for t in got)


def test_tick_labels_have_the_decimals_their_step_needs():
    assert [tick_label(v, 0.2) for v in (0.6000000001, -0.0, 1.0)] == ["0.6", "0", "1.0"]
    assert tick_label(200.0, 200.0) == "200" and tick_label(-0.04, 0.02) == "-0.04"


def test_scatter_panels_draw_ticks_where_the_values_are():
    g = torch.Generator().manual_seed(0)
    data = torch.rand(20000, 2, generator=g) * 2 - 1  # percentiles ~ +-0.99: axes ~ +-1.24
    img = np.asarray(scatter_panels([("data", data), ("samples", data.flip(0))], size=200))
    pad_top, pad_left, margin, size = 34, 64, 16, 200
    assert img.shape == (pad_top + size + 42, pad_left + 2 * (size + margin), 3)
    ref = data.numpy()
    lo, hi = np.percentile(ref, 0.5, axis=0), np.percentile(ref, 99.5, axis=0)
    centre, half = (lo + hi) / 2, (hi - lo).max() / 2 * 1.25 + 1e-6
    for k in range(2):  # each panel: a tick mark under x[0] = 0, none a few pixels beside it
        x0 = pad_left + k * (size + margin)
        x = x0 + round((0 - (centre[0] - half)) / (2 * half) * (size - 1))
        below = pad_top + size + 2
        assert tuple(img[below, x]) == (120, 120, 120)
        assert tuple(img[below, x + 4]) == (255, 255, 255)
    # the first panel's tick values along x[1]: dark text left of the frame, in the margin
    assert (img[pad_top : pad_top + size, 20 : pad_left - 6] < 100).any()
    # and the values along x[0] under both panels
    assert (img[pad_top + size + 6 : pad_top + size + 20, pad_left : pad_left + size] < 100).any()


def test_memorization_png_labels_each_pair_and_marks_copies_in_red(tmp_path):
    g = torch.Generator().manual_seed(0)
    train = torch.rand(50, 1, 8, 8, generator=g) * 2 - 1
    copies = train[[7, 3]] + 0.01 * torch.randn(2, 1, 8, 8, generator=g)
    generated = torch.cat([torch.rand(4, 1, 8, 8, generator=g) * 2 - 1, copies])
    result = memorization(generated, train)
    assert result.nearest[4:].tolist() == [7, 3] and (result.ratio[4:] < 1 / 3).all()
    path = save_worst_pairs(tmp_path / "memorization.png", generated, train, result, scale=4)
    img = np.asarray(Image.open(path).convert("RGB")).astype(int)
    head, row, pairs_w = 38, (8 + 2) * 4, (2 * 2 + 8 + 2 + 8) * 4
    assert img.shape == (head + 6 * row, pairs_w + 330, 3)
    red = (img[..., 0] > 150) & (img[..., 1] < 80) & (img[..., 2] < 80)
    text = red[:, pairs_w:]
    # the two copies come first (smallest d1/d2), their labels in red; the others' not
    for k in range(6):
        band = text[head + k * row : head + (k + 1) * row]
        assert band.any() == (k < 2), k
    ink = img[head:, pairs_w:].min(axis=2) < 100  # every row has its label
    assert all(ink[k * row : (k + 1) * row].any() for k in range(6))


def test_the_fid_sweep_plot_names_which_fid_it_shows():
    from diffusionforge.pipelines.evaluate import fid_label, sweep_plot

    rows = [{"sampler": "euler", "nfe": n, "fid": f} for n, f in ((4, 9.0), (8, 3.0))]
    plain = np.asarray(sweep_plot(rows, "t", "FID"))
    named = np.asarray(sweep_plot(rows, "t", fid_label("classifier")))
    assert fid_label("classifier") != "FID" and fid_label("inception-v3") == "FID"
    label_row = (slice(20, 40), slice(60, 300))  # beyond "FID": only the longer label has ink
    assert (named[label_row] < 100).any() and not (plain[label_row] < 100).any()
