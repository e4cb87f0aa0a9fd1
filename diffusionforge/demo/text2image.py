"""`diffusionforge demo --section t2i`: a few prompts through the bundled text-to-image model,
each image read back by the scene judge (eval/judge.py) and marked right or wrong."""

from __future__ import annotations

import time
from pathlib import Path

from diffusionforge.demo.section import Section
from diffusionforge.eval.judge import load_judge
from diffusionforge.eval.prompts import cases_from_prompts, run_prompts, verdict_picture
from diffusionforge.pipelines.text2image import load_text2image
from diffusionforge.plot import save_png

# The bundled model's stated setting (benchmarks/t2i_faithfulness.py, BENCHMARKS.md).
T2I_NFE, T2I_GUIDANCE = 10, 1.0
DEMO_PROMPTS = (
    "two red circles to the left of a blue square",
    "a yellow triangle above two green squares",
    "three white crosses",
    "a blue square with a red cross on its right",
    "one large green circle below a small yellow cross",
    "four red squares",
)


def t2i(out: Path, quick: bool):
    import torch

    torch.set_num_threads(1)
    pipe = load_text2image("t2i-scenes")
    judge = load_judge(log=lambda m: None)
    cases, _ = cases_from_prompts(list(DEMO_PROMPTS[: 3 if quick else None]))
    nfe = 4 if quick else T2I_NFE
    t0 = time.monotonic()
    rows, images = run_prompts(pipe, judge, cases, nfe=nfe, guidance=T2I_GUIDANCE, seed=1)
    sample_s = time.monotonic() - t0
    png = save_png(verdict_picture(images, rows, cols=3), out / "t2i.png")
    right = sum(r["overall"] for r in rows)
    lines = [
        f"bundled text-to-image model (scenes, {pipe.resolution}x{pipe.resolution}): "
        f"{len(rows)} prompts in {sample_s:.1f}s (NFE {nfe}, guidance {T2I_GUIDANCE:g})",
        f"the scene judge reads {right}/{len(rows)} images as exactly what was asked:",
    ]
    for r in rows:
        lines.append(f"  {'ok ' if r['overall'] else 'no '} {r['prompt']}  ->  saw {r['judged']}")
    lines.append('try: diffusionforge generate "two red circles left of a blue square" --n 4')
    return Section(title="text-to-image: scenes", lines=lines, files=[png])
