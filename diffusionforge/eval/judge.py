"""A judge network for the procedural scenes (data/scenes.py): image -> the scene it shows.

The judge reads a picture (B, 3, H, W) in [-1, 1] (any H = W; it looks at 32x32, area-resized)
and predicts its *canonical* scene (``SceneSpec.canonical``): the layout (one group, two groups
side by side, two groups stacked) and, for the first group (the only, the left or the top one)
and the second group (right or bottom), its shape, colour, count and size. Nine classification
heads on one small CNN whose last feature map (4x4) is flattened, so positions survive to the
heads (global pooling would forget left from right).

It is trained on renders of every combination (held-out ones included: it is a measuring
device, not a generator) with light blur, noise and colour-offset augmentation, because
generated images are never as clean as renders. ``load_judge()`` uses the bundled weights
(diffusionforge/assets/judge/), else a cached copy (``~/.cache/diffusionforge/judge-*``), else
trains one (about 10 CPU-minutes) and caches it. Reproduce the bundled judge with

    python -m diffusionforge.eval.judge --out diffusionforge/assets/judge

which also prints the validation on fresh renders (README, BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from diffusionforge.data.builtin import cache_dir
from diffusionforge.data.scene_drawing import render
from diffusionforge.data.scene_specs import (
    COLOURS,
    MAX_OBJECTS,
    SHAPES,
    SIZES,
    Group,
    SceneSpec,
    sample_spec,
)

JUDGE_VERSION = 2  # bump when the net, the targets or the scene renderer change
LAYOUTS = ("single", "left of", "above")  # canonical relations; "single" = one group
_COLOURS = tuple(COLOURS)
# (name, classes) of the nine heads, in output order
HEADS = [("layout", len(LAYOUTS))] + [
    (f"{attr}{slot}", n)
    for slot in (0, 1)
    for attr, n in (
        ("shape", len(SHAPES)),
        ("colour", len(COLOURS)),
        ("count", MAX_OBJECTS),
        ("size", len(SIZES)),
    )
]
IGNORE = -100  # target of the second group's heads when there is none


@dataclass
class JudgeRecipe:
    """How a judge is trained; part of the cache key."""

    images: int = 60000  # training renders (fixed pool, re-augmented every epoch)
    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-3
    width: int = 16
    hidden: int = 128
    seed: int = 0


class JudgeNet(nn.Module):
    """3x3 conv blocks 32 -> 16 -> 8 -> 4, flatten, one hidden layer, the nine heads' logits."""

    def __init__(self, width: int = 16, hidden: int = 128) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU()
            )

        w = width
        self.body = nn.Sequential(
            block(3, w, 1),
            block(w, 2 * w, 2),
            block(2 * w, 2 * w, 1),
            block(2 * w, 4 * w, 2),
            block(4 * w, 4 * w, 1),
            block(4 * w, 4 * w, 2),
            nn.Flatten(),
            nn.Linear(4 * w * 16, hidden),
            nn.SiLU(),
        )
        self.head = nn.Linear(hidden, sum(n for _, n in HEADS))

    def forward(self, x: Tensor) -> list[Tensor]:
        if x.shape[-1] != 32:
            x = F.interpolate(x, size=(32, 32), mode="area")
        logits = self.head(self.body(x))
        return list(logits.split([n for _, n in HEADS], dim=1))


def spec_targets(spec: SceneSpec) -> list[int]:
    """The nine class targets of a spec whose sizes are all named (canonical order)."""
    c = spec.canonical()
    out = [LAYOUTS.index(c.relation or "single")]
    for slot in (0, 1):
        if slot < len(c.groups):
            g = c.groups[slot]
            out += [SHAPES.index(g.shape), _COLOURS.index(g.colour), g.count - 1]
            out += [SIZES.index(g.size)]
        else:
            out += [IGNORE] * 4
    return out


def targets_to_spec(t: list[int]) -> SceneSpec:
    """Inverse of ``spec_targets`` (also turns predicted classes into a canonical spec)."""
    groups = [
        Group(
            t[1 + 4 * s + 2] + 1, SHAPES[t[1 + 4 * s]], _COLOURS[t[2 + 4 * s]], SIZES[t[4 + 4 * s]]
        )
        for s in range(1 if t[0] == 0 else 2)
    ]
    return SceneSpec(tuple(groups), None if t[0] == 0 else LAYOUTS[t[0]])


def render_batch(specs: list[SceneSpec], size: int, rng: np.random.Generator) -> Tensor:
    """Renders of ``specs`` as float32 (N, 3, size, size) in [-1, 1]."""
    arr = np.stack([render(s, size, rng) for s in specs])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def training_set(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` renders of random scenes from every combination, with all sizes named: a quarter
    drawn at 64x64 and area-resized to 32, so the judge sees both renderings."""
    rng = np.random.default_rng([seed, 99])
    specs = [sample_spec(rng, "all", size_prob=1.0) for _ in range(n)]
    n64 = n // 4
    x = torch.cat(
        [
            F.interpolate(render_batch(specs[:n64], 64, rng), size=(32, 32), mode="area"),
            render_batch(specs[n64:], 32, rng),
        ]
    )
    y = torch.tensor([spec_targets(s) for s in specs], dtype=torch.long)
    return x, y


def blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Gaussian blur of each image (B, C, H, W) by its own ``sigma`` (B,) in pixels (5 taps)."""
    b, c, h, w = x.shape
    taps = torch.arange(-2, 3, dtype=x.dtype)
    k = torch.exp(-(taps**2) / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))  # (B, 5)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, 5), one per channel
    y = x.reshape(1, b * c, h, w)
    y = F.conv2d(F.pad(y, (2, 2, 0, 0), mode="replicate"), k[:, None, None, :], groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, 2, 2), mode="replicate"), k[:, None, :, None], groups=b * c)
    return y.reshape(b, c, h, w)


def _augment(x: Tensor, g: torch.Generator) -> Tensor:
    # Generated images are never as clean as renders: half the batch is blurred by up to
    # 0.6 px (a soft sample; at 0.8 px small shapes stop being readable even to a person), and
    # every image gets Gaussian noise up to 0.08 and per-channel offsets up to 0.05 (in [-1, 1]
    # units), far below the gaps between the scene colours.
    b = x.shape[0]
    soft = torch.rand(b, generator=g) < 0.5
    x = torch.where(soft[:, None, None, None], blur(x, torch.rand(b, generator=g) * 0.6), x)
    sigma = torch.rand(b, 1, 1, 1, generator=g) * 0.08
    offset = (torch.rand(b, 3, 1, 1, generator=g) * 2 - 1) * 0.05
    return x + sigma * torch.randn(x.shape, generator=g) + offset


def judge_loss(net: JudgeNet, x: Tensor, y: Tensor) -> Tensor:
    return sum(
        F.cross_entropy(logits, y[:, k], ignore_index=IGNORE) for k, logits in enumerate(net(x))
    )


def train_judge(recipe: JudgeRecipe, log=print) -> JudgeNet:
    """Train a judge from scratch by ``recipe`` (Adam, cosine decay, CPU)."""
    torch.manual_seed(recipe.seed)
    g = torch.Generator().manual_seed(recipe.seed)
    t0 = time.process_time()
    x, y = training_set(recipe.images, recipe.seed)
    log(f"judge: rendered {len(x)} scenes in {time.process_time() - t0:.0f} CPU-s")
    net = JudgeNet(recipe.width, recipe.hidden)
    opt = torch.optim.Adam(net.parameters(), lr=recipe.lr)
    per_epoch = -(-len(x) // recipe.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, recipe.lr, total_steps=recipe.epochs * per_epoch, pct_start=0.1
    )
    net.train()
    for epoch in range(recipe.epochs):
        order, total = torch.randperm(len(x), generator=g), 0.0
        for i in range(0, len(x), recipe.batch_size):
            idx = order[i : i + recipe.batch_size]
            loss = judge_loss(net, _augment(x[idx], g), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        log(
            f"judge: epoch {epoch + 1}/{recipe.epochs} loss {total / len(x):.4f} "
            f"({time.process_time() - t0:.0f} CPU-s)"
        )
    return net.eval()


@dataclass
class Judge:
    """A trained JudgeNet: ``judge(images)`` -> the canonical SceneSpec each image shows."""

    net: JudgeNet
    info: dict

    @torch.no_grad()
    def classes(self, images: Tensor, batch_size: int = 512) -> Tensor:
        """Predicted class of every head: long (N, 9)."""
        self.net.eval()
        out = []
        for i in range(0, len(images), batch_size):
            logits = self.net(images[i : i + batch_size].float())
            out.append(torch.stack([lg.argmax(1) for lg in logits], dim=1))
        return torch.cat(out)

    def __call__(self, images: Tensor) -> list[SceneSpec]:
        return [targets_to_spec(row) for row in self.classes(images).tolist()]


def save_judge(judge: Judge, folder: Path) -> None:
    """judge.safetensors (float16: half the size, predictions checked after the round trip)
    and judge.json (recipe, version, validation); the json is written last."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().half().contiguous() for k, v in judge.net.state_dict().items()}
    save_file(state, folder / "judge.safetensors")
    (folder / "judge.json").write_text(json.dumps(judge.info, indent=1) + "\n")


def read_judge(folder: Path) -> Judge:
    info = json.loads((folder / "judge.json").read_text())
    net = JudgeNet(info["recipe"]["width"], info["recipe"]["hidden"])
    net.load_state_dict({k: v.float() for k, v in load_file(folder / "judge.safetensors").items()})
    return Judge(net.eval(), info)


def bundled_judge_path() -> Path:
    return Path(str(resources.files("diffusionforge.assets") / "judge"))


def load_judge(path: str | Path | None = None, cache: Path | None = None, log=print) -> Judge:
    """The judge in ``path``; else the bundled one; else a cached one; else train and cache."""

    if path is not None:
        return read_judge(Path(path))
    for folder in (bundled_judge_path(), _cache_folder(cache or cache_dir(), JudgeRecipe())):
        meta = folder / "judge.json"
        if meta.exists() and json.loads(meta.read_text()).get("version") == JUDGE_VERSION:
            return read_judge(folder)
    log("training the scene judge once (about 10 CPU-minutes); it is cached afterwards")
    return build_judge(JudgeRecipe(), _cache_folder(cache or cache_dir(), JudgeRecipe()), log)


def _cache_folder(cache: Path, recipe: JudgeRecipe) -> Path:
    key = "-".join(str(v) for v in asdict(recipe).values())
    return cache / f"judge-v{JUDGE_VERSION}-{key}"


# --- validation ----------------------------------------------------------------------------

ATTRIBUTES = ("layout", "shape", "colour", "count", "size")


def validate(judge: Judge, n: int, size: int, split: str, seed: int = 12345) -> dict[str, float]:
    """Per-attribute accuracy on ``n`` fresh renders of ``split`` at ``size``: layout per
    image; shape, colour, count and size per group; ``scene`` = every head right."""
    rng = np.random.default_rng([seed, size, len(split)])
    specs = [sample_spec(rng, split, size_prob=1.0) for _ in range(n)]
    x = render_batch(specs, size, rng)
    y = torch.tensor([spec_targets(s) for s in specs])
    p = judge.classes(x)
    right = (p == y) | (y == IGNORE)
    acc = {"layout": right[:, 0].double().mean().item()}
    for k, attr in enumerate(ATTRIBUTES[1:]):
        cols = y[:, [1 + k, 5 + k]] != IGNORE
        acc[attr] = right[:, [1 + k, 5 + k]][cols].double().mean().item()
    acc["scene"] = right.all(1).double().mean().item()
    return acc


def validation_table(judge: Judge, n: int = 2000) -> dict[str, dict[str, float]]:
    return {
        f"{split}@{size}": validate(judge, n, size, split)
        for split in ("train", "heldout")
        for size in (32, 64)
    }


def build_judge(recipe: JudgeRecipe, folder: Path, log=print, n_val: int = 2000) -> Judge:
    """Train, round-trip through float16 storage, validate on fresh renders, save."""
    t0 = time.process_time()
    net = train_judge(recipe, log)
    info = {"version": JUDGE_VERSION, "recipe": asdict(recipe)}
    info["train_cpu_seconds"] = round(time.process_time() - t0)
    save_judge(Judge(net, info), folder)
    judge = read_judge(folder)  # validate what was stored
    judge.info["validation"] = validation_table(judge, n_val)
    (folder / "judge.json").write_text(json.dumps(judge.info, indent=1) + "\n")
    for name, acc in judge.info["validation"].items():
        log(f"judge validation {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in acc.items()))
    return judge


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="train and validate the scene judge")
    p.add_argument("--out", help="folder for judge.safetensors + judge.json")
    p.add_argument("--validate", help="only validate the judge in this folder (no training)")
    p.add_argument("--n-val", type=int, default=2000, help="fresh renders per validation cell")
    for field, default in asdict(JudgeRecipe()).items():
        p.add_argument(f"--{field.replace('_', '-')}", type=type(default), default=default)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.validate:
        judge = read_judge(Path(args.validate))
        for name, acc in validation_table(judge, args.n_val).items():
            print(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in acc.items()))
        return 0
    if not args.out:
        p.error("give --out FOLDER (train) or --validate FOLDER")
    recipe = JudgeRecipe(**{k: getattr(args, k) for k in asdict(JudgeRecipe())})
    build_judge(recipe, Path(args.out), n_val=args.n_val)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
