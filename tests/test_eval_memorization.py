import torch
from PIL import Image

from diffusionforge.eval.memorization import (
    HEAD,
    ROW_MIN,
    TEXT_WIDTH,
    memorization,
    save_worst_pairs,
)


def test_ratio_criterion_on_a_line():
    # Training points at 0 and 10 on a line (embedded in 4-D to look like images).
    train = torch.zeros(2, 4)
    train[1, 0] = 10.0
    gen = torch.zeros(4, 4)
    gen[:, 0] = torch.tensor([0.0, 1.0, 3.0, 5.0])
    res = memorization(gen, train, alpha=1 / 3)
    # d1/d2: 0/10, 1/9, 3/7, 5/5 -> the first two are below 1/3.
    expected = torch.tensor([0.0, 1 / 9, 3 / 7, 1.0], dtype=torch.float64)
    torch.testing.assert_close(res.ratio, expected)
    assert res.fraction == 0.5
    assert res.nearest.tolist() == [0, 0, 0, 0]
    assert memorization(gen, train, alpha=0.5).fraction == 0.75


def test_copies_of_training_images_are_all_flagged():
    g = torch.Generator().manual_seed(0)
    train = torch.rand(50, 1, 8, 8, generator=g) * 2 - 1
    copies = train[[3, 7, 11]] + 1e-4 * torch.randn(3, 1, 8, 8, generator=g)
    fresh = torch.rand(5, 1, 8, 8, generator=g) * 2 - 1  # new random images: d1 ~ d2
    res = memorization(torch.cat([copies, fresh]), train)
    assert res.nearest[:3].tolist() == [3, 7, 11]
    assert res.fraction == 3 / 8


def test_worst_pairs_png(tmp_path):
    train = torch.linspace(-1, 1, 6).reshape(6, 1, 1, 1).expand(6, 1, 4, 4).contiguous()
    gen = train[[4, 1]] + 0.01
    res = memorization(gen, train)
    path = save_worst_pairs(tmp_path / "sub" / "worst.png", gen, train, res, count=2, scale=2)
    im = Image.open(path)
    # cols: 4 px flag + 4 + 2 px separator + 4, all x2, then the labels; rows: a heading,
    # then one pair per ROW_MIN pixels at least (two lines of label each)
    assert im.size == ((4 + 4 + 2 + 4) * 2 + TEXT_WIDTH, HEAD + 2 * ROW_MIN) and im.mode == "RGB"
    assert im.getpixel((0, HEAD)) == (255, 0, 0)  # flagged as memorized


def test_needs_two_training_samples():
    import pytest

    with pytest.raises(ValueError, match="at least 2 training samples"):
        memorization(torch.zeros(3, 4), torch.zeros(1, 4))
