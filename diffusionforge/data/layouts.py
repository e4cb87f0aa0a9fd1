"""Prompt -> layout for layout-grounded text-to-image on the procedural scenes (nets/layout.py).

Two stages, as in LLM-grounded Diffusion (Lian et al. 2023) with a learned planner in the LLM's
place:

1. The *planner* (`nets.layout.LayoutPlanner`, trained here by `fit_planner` on the training
   split's captions and the scenes they state) reads a prompt and predicts its structure: one or
   two groups, each group's count, shape, colour and size (or "unnamed"), and the relation.
   Every attribute is its own head, so combinations the training split holds out ("red
   triangle", "three ... to the left of") are predicted from parts it has seen. Decoding keeps
   the scene valid (at most four objects; two groups never alike).
2. The scene's own placement rule (`data.scene_drawing.layout`: groups on either side of a line, the
   relation's axis) turns the structure into boxes, one per object, from a seeded generator:
   each seed gives another arrangement of the same prompt.

The boxes are packed into the rows the in-network `LayoutEncoder` reads (`pack_objects`);
`LayoutPrompts` is the prompt encoder a layout-grounded checkpoint uses in place of the word
tokenizer (`encode_batch(texts, seeds)`), with the tokenizer's warnings for unknown words and
overlong prompts. The planner travels in the checkpoint under ``planner/``
(train/builders_layout.py writes and reads it).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import Tensor

from diffusionforge.data import scene_captions, scene_drawing, scene_specs
from diffusionforge.data.word_tokenizer import Encoded, WordTokenizer
from diffusionforge.nets.layout import PHRASE_WORDS, SLOT, LayoutPlanner

SIZE_CHOICES = (None, *scene_specs.SIZES)
HEADS = {
    "relation": len(scene_specs.RELATIONS),
    **{
        f"{field}{g}": n
        for g in (0, 1)
        for field, n in (
            ("count", scene_specs.MAX_OBJECTS),
            ("shape", len(scene_specs.SHAPES)),
            ("colour", len(scene_specs.COLOURS)),
            ("size", len(SIZE_CHOICES)),
        )
    },
}
IGNORE = -100  # target of a head that does not apply (group 1 of a one-group scene)
PLANNER_DIR = "planner"
_COLOURS = tuple(scene_specs.COLOURS)


def spec_targets(spec: scene_specs.SceneSpec) -> dict[str, int]:
    """The class index of every head for ``spec`` (IGNORE where a head does not apply)."""
    t = dict.fromkeys(HEADS, IGNORE)
    if spec.relation is not None:
        t["relation"] = scene_specs.RELATIONS.index(spec.relation)
    for g, grp in enumerate(spec.groups):
        t[f"count{g}"] = grp.count - 1
        t[f"shape{g}"] = scene_specs.SHAPES.index(grp.shape)
        t[f"colour{g}"] = _COLOURS.index(grp.colour)
        t[f"size{g}"] = SIZE_CHOICES.index(grp.size)
    return t


def decode_spec(logits: dict[str, Tensor], two: bool) -> scene_specs.SceneSpec:
    """One example's head logits (each (n,)) -> the most likely *valid* scene of one group, or
    two (``two``: a word was tagged with group 1).

    Heads are read by argmax; a two-group scene whose counts add to more than four keeps the
    most likely pair of counts that fits, and a second group alike to the first takes its most
    likely other colour.
    """
    lp = {k: torch.log_softmax(v.float(), -1) for k, v in logits.items()}
    if two:
        pairs = [(a, b) for a in range(4) for b in range(4) if a + b + 2 <= scene_specs.MAX_OBJECTS]
        counts = max(pairs, key=lambda p: float(lp["count0"][p[0]] + lp["count1"][p[1]]))
    else:
        counts = (int(lp["count0"].argmax()),)
    groups = []
    for g, c in enumerate(counts):
        shape = scene_specs.SHAPES[int(lp[f"shape{g}"].argmax())]
        order = lp[f"colour{g}"].argsort(descending=True).tolist()
        colour = _COLOURS[order[0]]
        if g == 1 and (shape, colour) == (groups[0].shape, groups[0].colour):
            colour = _COLOURS[order[1]]
        size = SIZE_CHOICES[int(lp[f"size{g}"].argmax())]
        groups.append(scene_specs.Group(c + 1, shape, colour, size))
    relation = scene_specs.RELATIONS[int(lp["relation"].argmax())] if two else None
    return scene_specs.SceneSpec(tuple(groups), relation)


def pack_objects(objects: list[scene_drawing.Placed], tokenizer: WordTokenizer) -> Tensor:
    """Placed objects -> the (MAX_OBJECTS, SLOT) rows LayoutEncoder reads: present, the ids of
    "colour shape", and the object's box (x0, y0, x1, y1) in canvas units."""
    rows = torch.zeros(scene_specs.MAX_OBJECTS, SLOT)
    for k, p in enumerate(objects[: scene_specs.MAX_OBJECTS]):
        ids = tokenizer.encode(f"{p.colour} {p.shape}")[1 : 1 + PHRASE_WORDS]
        rows[k, 0] = 1.0
        rows[k, 1 : 1 + PHRASE_WORDS] = torch.tensor(ids, dtype=torch.float32)
        rows[k, 1 + PHRASE_WORDS :] = torch.tensor([p.x - p.r, p.y - p.r, p.x + p.r, p.y + p.r])
    return rows


def caption_set(n: int, split: str, seed: int) -> tuple[list[str], list, list[list[int]]]:
    """``n`` captions of ``split``, the scenes they state and each word's group (no rendering)."""
    caps, specs, tags = [], [], []
    for i in range(n):
        rng = np.random.default_rng([seed, scene_specs.SPLITS[split], i, 11])
        spec = scene_specs.sample_spec(rng, split)
        caption, word_tags = scene_captions.describe_tagged(spec, rng)
        caps.append(caption)
        specs.append(spec)
        tags.append(word_tags)
    return caps, specs, tags


def _slot_targets(tags: list[list[int]], max_tokens: int) -> Tensor:
    """Word groups -> (N, max_tokens) slot classes aligned with the tokenizer (<cls> first)."""
    out = torch.full((len(tags), max_tokens), IGNORE, dtype=torch.long)
    for i, t in enumerate(tags):
        t = t[: max_tokens - 1]
        out[i, 1 : 1 + len(t)] = torch.tensor(t, dtype=torch.long) + 1
    return out


def fit_planner(
    tokenizer: WordTokenizer,
    *,
    n: int = 20000,
    steps: int = 600,
    batch: int = 128,
    seed: int = 0,
    dim: int = 64,
    depth: int = 2,
    word_dropout: float = 0.25,
) -> tuple[LayoutPlanner, dict]:
    """Train a planner on ``n`` training-split captions (word tags + the scenes they state);
    report exact-scene accuracy on 2000 fresh training-split and 2000 held-out-split captions,
    and the CPU seconds it took."""
    start = time.process_time()
    caps, specs, tags = caption_set(n, "train", seed)
    ids = tokenizer.encode_batch(caps).cond
    slot_t = _slot_targets(tags, tokenizer.max_tokens)
    targets = {k: torch.tensor([spec_targets(s)[k] for s in specs]) for k in HEADS}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        planner = LayoutPlanner(tokenizer.vocab_size, tokenizer.max_tokens, HEADS, dim, depth)
    opt = torch.optim.AdamW(planner.parameters(), lr=3e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    ce = torch.nn.functional.cross_entropy
    for _ in range(steps):
        idx = torch.randint(0, n, (batch,), generator=gen)
        # The tagger sees some words as <unk>, so it tags a word by its place in the sentence
        # more than by which word it is: "three" in a group the split never put it in is still
        # tagged with its group.
        hide = (torch.rand(ids[idx].shape, generator=gen) < word_dropout) & (ids[idx] > 2)
        tagger_ids = torch.where(hide, torch.full_like(ids[idx], tokenizer.unk_id), ids[idx])
        loss = ce(
            planner.slots(tagger_ids).flatten(0, 1), slot_t[idx].flatten(), ignore_index=IGNORE
        )
        # attributes are learned from the true tags (teacher forcing); planning uses predicted
        out = planner.attributes(ids[idx], slot_t[idx].clamp(min=0))
        loss = loss + sum(ce(out[k], targets[k][idx], ignore_index=IGNORE) for k in HEADS)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    planner.eval().requires_grad_(False)
    report = {"train_captions": n, "steps": steps}
    for split in ("train", "heldout"):
        caps, specs, _ = caption_set(2000, split, seed + 1)
        report[f"exact_{split}"] = planner_accuracy(planner, tokenizer, caps, specs)
    report["cpu_seconds"] = round(time.process_time() - start, 1)
    return planner, report


@torch.no_grad()
def plan_ids(planner: LayoutPlanner, ids: Tensor) -> list:
    """The scene each row of word ids (WordTokenizer.encode_batch) asks for."""
    slots = planner.slots(ids).argmax(-1) * (ids > 2)  # <pad>, <unk>, <cls>: no group
    out = planner.attributes(ids, slots)
    return [
        decode_spec({k: v[i] for k, v in out.items()}, bool((slots[i] == 2).any()))
        for i in range(ids.shape[0])
    ]


def plan(planner: LayoutPlanner, tokenizer: WordTokenizer, texts: list[str]) -> list:
    """The scene each prompt asks for, as the planner reads it."""
    return plan_ids(planner, tokenizer.encode_batch(texts).cond)


def planner_accuracy(planner, tokenizer, captions: list[str], specs: list) -> float:
    """Fraction of captions whose planned scene equals the stated one (sizes included)."""
    got = plan(planner, tokenizer, captions)
    return sum(a == b for a, b in zip(got, specs, strict=True)) / len(specs)


class LayoutPrompts:
    """Prompt encoder of layout-grounded models: strings -> planned, placed, packed layouts.
    Prompt i's arrangement comes from ``seeds[i]`` (0 when no seeds are given)."""

    takes_seeds = True

    def __init__(self, planner: LayoutPlanner, tokenizer: WordTokenizer) -> None:
        self.planner, self.tokenizer = planner, tokenizer
        self.max_tokens = tokenizer.max_tokens

    def layouts(self, texts: list[str], seeds: list[int] | None = None) -> list:
        """(scene, placed objects) per prompt."""
        return self._place(plan(self.planner, self.tokenizer, texts), seeds)

    @staticmethod
    def _place(specs: list, seeds: list[int] | None) -> list:
        seeds = [0] * len(specs) if seeds is None else seeds
        return [
            (spec, scene_drawing.layout(spec, np.random.default_rng([int(seed), 23])))
            for spec, seed in zip(specs, seeds, strict=True)
        ]

    def encode_batch(self, texts: list[str], seeds: list[int] | None = None) -> Encoded:
        words = self.tokenizer.encode_batch(texts)  # the planner's input and the warnings
        rows = torch.zeros(len(texts), scene_specs.MAX_OBJECTS, SLOT)
        real = [i for i, t in enumerate(texts) if t.strip()]  # "" is the null (empty) layout
        if real:
            specs = plan_ids(self.planner, words.cond[real])
            planned = self._place(specs, None if seeds is None else [seeds[i] for i in real])
            for i, (_, objects) in zip(real, planned, strict=True):
                rows[i] = pack_objects(objects, self.tokenizer)
        return Encoded(rows, words.unknown, words.truncated)

    @property
    def null_cond(self) -> Tensor:
        return torch.zeros(scene_specs.MAX_OBJECTS, SLOT)
