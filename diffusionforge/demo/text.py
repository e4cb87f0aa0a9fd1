"""The demo's text section: the bundled masked-diffusion grammar model writes and infills text."""

from __future__ import annotations

import time
from pathlib import Path

from diffusionforge.assets import bundled_path
from diffusionforge.data.grammar import parses
from diffusionforge.demo.section import Section
from diffusionforge.eval.text_metrics import grammar_lines
from diffusionforge.pipelines.text import load_text_pipeline

INFILL_PROMPT = "the old cat [____:3] sleeps."  # three words (BPE tokens) in the hole


def text(out: Path, quick: bool):
    """Sample the bundled grammar model (diffusionforge/assets/grammar): free text longer than
    its context (semi-autoregressive blocks) and one infilling example, each parse-checked."""
    import torch

    torch.set_num_threads(1)
    pipe = load_text_pipeline(bundled_path("grammar"))
    nfe = 16 if quick else 64
    t0 = time.monotonic()
    start = pipe.template("\n", 1)  # begin at a sentence boundary
    free = pipe.generate(3, 2 * pipe.context, template=start, nfe=2 * nfe, seed=0)
    template = pipe.template(INFILL_PROMPT, 8)
    filled = pipe.generate(1, len(template), template=template, nfe=nfe, seed=0)[0]
    seconds = time.monotonic() - t0
    texts = [pipe.decode(x) for x in free]
    counts = [grammar_lines(t) for t in texts]
    total, ok = sum(c for c, _ in counts), sum(k for _, k in counts)
    infilled = pipe.decode(filled)
    path = out / "text.txt"
    path.write_text("\n----\n".join(texts) + f"\n----\ninfilling: {infilled}\n", encoding="utf-8")
    shown = [line for t in texts for line in t.split("\n")[1:-1]][:6]
    params = sum(p.numel() for p in pipe.net.parameters())
    unit = "BPE tokens (a word each)" if pipe.tokenizer.kind == "bpe" else "characters"
    return Section(
        title="text: masked diffusion on an English grammar (bundled model)",
        lines=[
            f"transformer denoiser, {params:,} parameters, {unit}, context {pipe.context}; "
            f"{nfe} NFE per context; {seconds:.1f}s for all below",
            *[f"  {s}   [{'parses' if parses(s) else 'does NOT parse'}]" for s in shown],
            f"{ok}/{total} complete generated sentences parse under the grammar",
            f"infill {INFILL_PROMPT!r}",
            f"    -> {pipe.decode(filled, mark=template == pipe.mask_id)!r} "
            f"[{'parses' if parses(infilled) else 'does NOT parse'}]",
            "more: diffusionforge generate-text "
            + str(pipe.checkpoint.path)
            + ' --prompt "the [____:4] sees a dog." --mark',
        ],  # fmt: skip
        files=[path],
    )
