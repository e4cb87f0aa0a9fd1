"""Prompt faithfulness on the procedural scenes: generate for prompts, judge, score per attribute.

A prompt's scene (``parse_prompt``) and the scene the judge reads from the image
(eval/judge.py) are compared in canonical form (``SceneSpec.canonical``), as GenEval-style
object-level checks (Ghosh et al. 2023), attribute by attribute:

- ``kind``, ``colour``, ``count``: every group of the prompt has its shape / colour / number
  of objects in the judged group matched to it; ``size`` likewise, over the groups whose size
  the prompt names (None for a prompt that names no size).
- matching: with two groups on both sides, the judged groups are paired with the prompt's in
  place order (left/top with left/top) unless the swapped pairing agrees on more of shape,
  colour and count; a prompt group with no judged partner gets every attribute wrong.
- ``relation`` (prompts with two groups, None otherwise): the judged layout is the prompt's
  (side by side / stacked) and the groups are not swapped.
- ``overall``: every attribute above right and the judged number of groups equals the prompt's
  (one red circle asked for, a red circle and a blue square drawn: not faithful).

Accuracies are reported per split: ``seen`` prompts come from the training split of
data/scenes.py, ``heldout`` prompts from its held-out combinations, and ``heldout-relation``
is the held-out prompts with two groups (counts and a spatial relation: the issue's bar).
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from diffusionforge.data.scene_captions import describe, parse_prompt
from diffusionforge.data.scene_drawing import render
from diffusionforge.data.scene_specs import Group, SceneSpec, is_heldout, sample_spec
from diffusionforge.plot import label_font

ATTRIBUTES = ("kind", "colour", "count", "size", "relation", "overall")
SPLITS = ("seen", "heldout", "heldout-relation")


class PromptPipeline(Protocol):
    """What eval needs of pipelines/text2image.Text2ImagePipeline."""

    def generate(
        self,
        prompts: list[str],
        *,
        nfe: int,
        guidance: float,
        seeds: list[int],
        sampler: str | None = None,
        schedule: str | None = None,
    ) -> Tensor: ...  # (B, 3, H, W) in [-1, 1]


@dataclass(frozen=True)
class PromptCase:
    prompt: str
    spec: SceneSpec  # what the prompt asks for
    split: str  # "seen" or "heldout"


def prompt_cases(n_seen: int, n_heldout: int, seed: int = 0) -> list[PromptCase]:
    """Prompts drawn like the training captions (data/scenes.py), ``n_seen`` from the training
    split and ``n_heldout`` from the held-out combinations; fixed by ``seed``."""
    rng = np.random.default_rng([seed, 777])
    cases = []
    for split, n in (("train", n_seen), ("heldout", n_heldout)):
        for _ in range(n):
            spec = sample_spec(rng, split)
            name = "seen" if split == "train" else "heldout"
            cases.append(PromptCase(describe(spec, rng), spec, name))
    return cases


def cases_from_prompts(prompts: list[str]) -> tuple[list[PromptCase], list[str]]:
    """User prompts -> cases (split by ``is_heldout``), plus the prompts outside the grammar."""
    cases, outside = [], []
    for text in prompts:
        spec = parse_prompt(text)
        if spec is None:
            outside.append(text)
        else:
            cases.append(PromptCase(text, spec, "heldout" if is_heldout(spec) else "seen"))
    return cases, outside


def _agree(a: Group, b: Group) -> int:
    return (a.shape == b.shape) + (a.colour == b.colour) + (a.count == b.count)


def score(asked: SceneSpec, seen: SceneSpec) -> dict[str, bool | None]:
    """Per-attribute verdict of a judged scene ``seen`` against the prompt's scene ``asked``."""
    asked, seen = asked.canonical(), seen.canonical()
    judged: list[Group | None] = list(seen.groups)
    swapped = False
    if len(asked.groups) == 1:
        # the judged group most like the asked one
        best = max(judged, key=lambda g: _agree(asked.groups[0], g))
        pairs = [(asked.groups[0], best)]
    else:
        judged += [None] * (2 - len(judged))
        if judged[1] is not None:
            straight = _agree(asked.groups[0], judged[0]) + _agree(asked.groups[1], judged[1])
            crossed = _agree(asked.groups[0], judged[1]) + _agree(asked.groups[1], judged[0])
            swapped = crossed > straight
        elif _agree(asked.groups[1], judged[0]) > _agree(asked.groups[0], judged[0]):
            judged = [None, judged[0]]
        if swapped:
            judged = judged[::-1]
        pairs = list(zip(asked.groups, judged, strict=True))
    out: dict[str, bool | None] = {
        "kind": all(g is not None and a.shape == g.shape for a, g in pairs),
        "colour": all(g is not None and a.colour == g.colour for a, g in pairs),
        "count": all(g is not None and a.count == g.count for a, g in pairs),
    }
    sized = [(a, g) for a, g in pairs if a.size is not None]
    out["size"] = all(g is not None and a.size == g.size for a, g in sized) if sized else None
    out["relation"] = None
    if asked.relation is not None:
        out["relation"] = seen.relation == asked.relation and not swapped
    layout_ok = len(seen.groups) == len(asked.groups) and seen.relation == asked.relation
    out["overall"] = layout_ok and all(v is not False for v in out.values())
    return out


def judged_text(spec: SceneSpec) -> str:
    """A plain caption of a judged (canonical, fully sized) scene, for the verdict pictures."""

    def phrase(g: Group) -> str:
        noun = g.shape if g.count == 1 else g.shape + ("es" if g.shape == "cross" else "s")
        return f"{g.count} {g.size or ''} {g.colour} {noun}".replace("  ", " ")

    if spec.relation is None:
        return phrase(spec.groups[0])
    return f"{phrase(spec.groups[0])} {spec.relation} {phrase(spec.groups[1])}"


@torch.no_grad()
def run_prompts(
    pipe: PromptPipeline,
    judge,
    cases: list[PromptCase],
    *,
    nfe: int,
    guidance: float,
    seed: int = 0,
    batch_size: int = 16,
    sampler: str | None = None,
    schedule: str | None = None,
) -> tuple[list[dict], Tensor]:
    """Generate image i of prompt i from seed ``seed + i``, judge it, score it.

    Returns one row per prompt (prompt, split, seed, judged, the attribute verdicts) and the
    images (N, 3, H, W) in [-1, 1].
    """
    rows, images = [], []
    for start in range(0, len(cases), batch_size):
        chunk = cases[start : start + batch_size]
        seeds = [seed + start + k for k in range(len(chunk))]
        x = (
            pipe.generate(
                [c.prompt for c in chunk],
                nfe=nfe,
                guidance=guidance,
                seeds=seeds,
                sampler=sampler,
                schedule=schedule,
            )
            .float()
            .cpu()
        )
        for case, s, seen in zip(chunk, seeds, judge(x), strict=True):
            verdict = score(case.spec, seen)
            rows.append(
                {"prompt": case.prompt, "split": case.split, "seed": s}
                | {"judged": judged_text(seen), "two_groups": len(case.spec.groups) == 2}
                | verdict
            )
        images.append(x)
    return rows, torch.cat(images)


def sweep(
    pipe: PromptPipeline,
    judge,
    cases: list[PromptCase],
    *,
    guidances: list[float],
    nfes: list[int],
    seed: int = 0,
    batch_size: int = 16,
    sampler: str | None = None,
    schedule: str | None = None,
    on_setting=None,
) -> list[dict]:
    """``run_prompts`` for every guidance x NFE: one dict per setting with ``guidance``,
    ``nfe``, ``seconds`` (generation + judging, wall clock), ``summary`` and ``rows``.
    ``on_setting(setting, images)`` is called after each (pictures, progress lines)."""
    settings = []
    for g in guidances:
        for nfe in nfes:
            t0 = time.perf_counter()
            rows, images = run_prompts(
                pipe,
                judge,
                cases,
                nfe=nfe,
                guidance=g,
                seed=seed,
                batch_size=batch_size,
                sampler=sampler,
                schedule=schedule,
            )
            setting = {"guidance": g, "nfe": nfe, "seconds": round(time.perf_counter() - t0, 2)}
            setting |= {"summary": summarize(rows), "rows": rows}
            if on_setting is not None:
                on_setting(setting, images)
            settings.append(setting)
    return settings


def summarize(rows: list[dict]) -> dict[str, dict[str, float | int | None]]:
    """Accuracy of each attribute per split (over the prompts where it applies), and n."""
    out: dict[str, dict] = {}
    for split in SPLITS:
        if split == "heldout-relation":
            sel = [r for r in rows if r["split"] == "heldout" and r["two_groups"]]
        else:
            sel = [r for r in rows if r["split"] == split]
        if not sel:
            continue
        acc: dict[str, float | int | None] = {"n": len(sel)}
        for attr in ATTRIBUTES:
            vals = [r[attr] for r in sel if r[attr] is not None]
            acc[attr] = float(np.mean(vals)) if vals else None  # None: no prompt asks for it
        out[split] = acc
    return out


def table(settings: list[dict]) -> str:
    """A markdown table: one row per (guidance, nfe, split) with the attribute accuracies."""
    head = "| guidance | nfe | split | n | " + " | ".join(ATTRIBUTES) + " |"
    lines = [head, "|" + "---|" * (4 + len(ATTRIBUTES))]
    for s in settings:
        for split, acc in s["summary"].items():
            cells = [f"{100 * acc[a]:.1f}" if acc[a] is not None else "-" for a in ATTRIBUTES]
            lines.append(
                f"| {s['guidance']:g} | {s['nfe']} | {split} | {acc['n']} | "
                + " | ".join(cells)
                + " |"
            )
    return "\n".join(lines)


def write_reports(settings: list[dict], out: Path) -> None:
    """summary.csv / summary.json (per setting and split) and results.csv (per image)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(
        json.dumps([{k: v for k, v in s.items() if k != "rows"} for s in settings], indent=1)
    )
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["guidance", "nfe", "split", "n", *ATTRIBUTES])
        for s in settings:
            for split, acc in s["summary"].items():
                w.writerow(
                    [s["guidance"], s["nfe"], split, acc["n"]] + [acc[a] for a in ATTRIBUTES]
                )
    with open(out / "results.csv", "w", newline="") as f:
        fields = ["guidance", "nfe", "prompt", "split", "seed", "judged", *ATTRIBUTES]
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for s in settings:
            for r in s["rows"]:
                w.writerow({"guidance": s["guidance"], "nfe": s["nfe"]} | r)
    (out / "table.md").write_text(table(settings) + "\n")


def verdict_picture(
    images: Tensor, rows: list[dict], cols: int = 6, tile: int = 160
) -> Image.Image:
    """Each image enlarged, with its prompt, what the judge saw, and the verdict (green = all
    right, red = the wrong attributes named)."""

    font = label_font(11)
    line_h, width = 13, tile // 6  # about 6 px per character at this font size
    text_h = 6 * line_h + 4  # prompt (3 lines), what the judge saw (2), the verdict (1)
    n = len(rows)
    rows_n = -(-n // cols)
    canvas = Image.new("RGB", (cols * (tile + 6), rows_n * (tile + text_h)), "white")
    draw = ImageDraw.Draw(canvas)
    arr = ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    for k, row in enumerate(rows):
        x, y = (k % cols) * (tile + 6), (k // cols) * (tile + text_h)
        canvas.paste(Image.fromarray(arr[k]).resize((tile, tile), Image.Resampling.NEAREST), (x, y))
        wrong = [a for a in ATTRIBUTES[:-1] if row[a] is False]
        verdict = "ok" if row["overall"] else "wrong: " + ",".join(wrong or ["extra group"])
        prompt = _wrap(f"[{row['split']}] {row['prompt']}", width)[:3]
        seen = _wrap(f"saw: {row['judged']}", width)[:2]
        for j, line in enumerate(prompt):
            draw.text((x + 1, y + tile + 1 + j * line_h), line, fill=(0, 0, 0), font=font)
        for j, line in enumerate(seen):
            draw.text((x + 1, y + tile + 1 + (3 + j) * line_h), line, fill=(90, 90, 90), font=font)
        colour = (0, 140, 0) if row["overall"] else (200, 0, 0)
        draw.text((x + 1, y + tile + 1 + 5 * line_h), verdict[: width + 4], fill=colour, font=font)
    return canvas


def _wrap(text: str, width: int) -> list[str]:
    lines = [""]
    for word in text.split():
        if lines[-1] and len(lines[-1]) + 1 + len(word) > width:
            lines.append("")
        lines[-1] = f"{lines[-1]} {word}".strip()
    return lines


class RenderPipeline:
    """A stand-in pipeline that draws the true scene of each prompt (with ``seed`` as its
    layout seed): the judge's ceiling, and a check of the scoring (~100% when all is well)."""

    resolution: int

    def __init__(self, resolution: int = 32) -> None:
        self.resolution = resolution

    def generate(self, prompts: list[str], *, seeds: list[int], **_: object) -> Tensor:
        pairs = zip(prompts, seeds, strict=True)
        arr = np.stack([render(parse_prompt(p), self.resolution, int(s)) for p, s in pairs])
        return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1.0
