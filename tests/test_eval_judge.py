"""The scene judge: targets round-trip, the bundled judge reads fresh renders, training runs."""

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from diffusionforge.data.scene_specs import Group, SceneSpec, sample_spec
from diffusionforge.eval.judge import (
    HEADS,
    IGNORE,
    JUDGE_VERSION,
    JudgeNet,
    JudgeRecipe,
    bundled_judge_path,
    judge_loss,
    load_judge,
    render_batch,
    spec_targets,
    targets_to_spec,
    training_set,
    validate,
)


def test_targets_round_trip_to_the_canonical_spec():
    rng = np.random.default_rng(0)
    for _ in range(500):
        spec = sample_spec(rng, size_prob=1.0)
        t = spec_targets(spec)
        assert len(t) == len(HEADS)
        assert targets_to_spec(t) == spec.canonical()
    one = spec_targets(SceneSpec((Group(3, "cross", "white", "small"),)))
    assert one[0] == 0 and one[5:] == [IGNORE] * 4 and one[3] == 2  # count 3 -> class 2


def test_bundled_judge_is_small_and_validated():
    folder = bundled_judge_path()
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert size < 1_000_000, size
    info = json.loads((folder / "judge.json").read_text())
    # the documented command (the recipe's defaults) is the one that made the bundled file
    assert info["recipe"] == asdict(JudgeRecipe()) and info["version"] == JUDGE_VERSION
    for name, acc in info["validation"].items():
        for attr in ("layout", "shape", "colour", "count", "size"):
            assert acc[attr] >= 0.98, (name, attr, acc[attr])


@pytest.mark.parametrize("size, split", [(32, "train"), (64, "heldout")])
def test_bundled_judge_reads_fresh_renders(size, split):
    judge = load_judge()
    acc = validate(judge, 300, size, split, seed=2026)  # seeds the bundled run never used
    for attr in ("layout", "shape", "colour", "count", "size"):
        assert acc[attr] >= 0.97, (attr, acc)


def test_judge_returns_canonical_specs_of_what_it_sees():
    judge = load_judge()
    asked = SceneSpec(
        (Group(1, "square", "blue", "large"), Group(2, "circle", "red", "small")), "right of"
    )
    x = render_batch([asked] * 4, 32, np.random.default_rng(1))
    seen = judge(x)
    assert sum(s == asked.canonical() for s in seen) >= 3
    # a blank image is not a scene the judge was trained on, but it still answers with a spec
    assert isinstance(judge(torch.full((1, 3, 32, 32), -1.0))[0], SceneSpec)


def test_training_loss_falls_on_a_tiny_run():
    torch.manual_seed(0)
    x, y = training_set(64, seed=3)
    assert x.shape == (64, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    net = JudgeNet(width=8, hidden=32)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    first = judge_loss(net, x[:32], y[:32]).item()
    for _ in range(20):
        loss = judge_loss(net, x[:32], y[:32])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert judge_loss(net, x[:32], y[:32]).item() < 0.2 * first
    assert JudgeRecipe().width == 16  # the bundled recipe; bump JUDGE_VERSION when it changes


def test_blur_matches_the_gaussian_kernel_and_keeps_mass():
    from diffusionforge.eval.judge import blur

    x = torch.zeros(2, 3, 9, 9)
    x[:, :, 4, 4] = 1.0
    sigmas = torch.tensor([0.5, 1.0])
    y = blur(x, sigmas)
    for i, s in enumerate(sigmas.tolist()):
        k = torch.exp(-(torch.arange(-2, 3.0) ** 2) / (2 * s * s))
        k = k / k.sum()
        assert torch.allclose(y[i, :, 3:6, 3:6], (k[1:4, None] * k[None, 1:4]).expand(3, 3, 3))
        assert y[i].sum().item() == pytest.approx(3.0, abs=1e-5)
