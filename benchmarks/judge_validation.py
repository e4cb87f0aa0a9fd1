"""Validate the scene judge on fresh renders: clean, and degraded the way samples are.

    python benchmarks/judge_validation.py                      # the bundled judge, 5000 per cell
    python benchmarks/judge_validation.py --judge DIR --n 2000

Clean: renders of the training and held-out splits at 32x32 and 64x64, drawn from seeds the
judge's training never used (eval/judge.py's ``validate``). Degraded (32x32, both splits
mixed): Gaussian blur of 0.5 and 0.8 px, Gaussian noise of 0.05 and 0.1 (in [-1, 1] units), to
show how far the judge can be trusted on soft or noisy samples. Prints a markdown table of
per-attribute accuracy (layout per image; shape, colour, count, size per group; scene = all).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from diffusionforge.data.scene_specs import sample_spec
from diffusionforge.eval.judge import (
    ATTRIBUTES,
    IGNORE,
    blur,
    load_judge,
    render_batch,
    spec_targets,
    validate,
)


def degraded(judge, n: int, seed: int = 4242) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng([seed, 1])
    specs = [sample_spec(rng, "all", size_prob=1.0) for _ in range(n)]
    x = render_batch(specs, 32, rng)
    y = torch.tensor([spec_targets(s) for s in specs])
    g = torch.Generator().manual_seed(seed)
    cases = {
        "clean, all": x,
        "blur 0.5 px": blur(x, torch.full((n,), 0.5)),
        "blur 0.8 px": blur(x, torch.full((n,), 0.8)),
        "noise 0.05": x + 0.05 * torch.randn(x.shape, generator=g),
        "noise 0.1": x + 0.1 * torch.randn(x.shape, generator=g),
    }
    out = {}
    for name, xs in cases.items():
        p = judge.classes(xs)
        right = (p == y) | (y == IGNORE)
        acc = {"layout": right[:, 0].double().mean().item()}
        for k, attr in enumerate(ATTRIBUTES[1:]):
            cols = y[:, [1 + k, 5 + k]] != IGNORE
            acc[attr] = right[:, [1 + k, 5 + k]][cols].double().mean().item()
        acc["scene"] = right.all(1).double().mean().item()
        out[f"{name} @32"] = acc
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--judge", help="judge folder (default: bundled)")
    ap.add_argument("--n", type=int, default=5000, help="renders per cell")
    args = ap.parse_args()
    torch.set_num_threads(1)
    judge = load_judge(args.judge)
    rows = {
        f"{split} @{size}": validate(judge, args.n, size, split)
        for split in ("train", "heldout")
        for size in (32, 64)
    }
    rows |= degraded(judge, args.n)
    cols = [*ATTRIBUTES, "scene"]
    print(f"| renders (n={args.n} each) | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for name, acc in rows.items():
        print(f"| {name} | " + " | ".join(f"{100 * acc[c]:.2f}" for c in cols) + " |")


if __name__ == "__main__":
    main()
