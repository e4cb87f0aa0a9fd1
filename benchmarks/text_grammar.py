"""Masked diffusion on the PCFG corpus: exact validity of generated text and of infilling vs NFE.

For each sampler and NFE:
- free generation: `--n` windows of the model's context (64 characters) from all-masks; every
  complete sentence inside a window (between two newlines) is checked by the Earley recognizer
  (data/grammar.py). Reported: the fraction of sentences that parse, and the fraction of
  windows whose sentences all parse.
- infilling (issue 6's bar, >= 95%): `--infill` held-out sentences (never in the training set)
  with their middle third of characters masked, the following held-out sentences as right
  context; the fraction whose completed sentence parses.

    python benchmarks/text_grammar.py                      # the bundled model
    python benchmarks/text_grammar.py --checkpoint runs/grammar --nfe 8 16 64
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from diffusionforge.assets import bundled_path
from diffusionforge.eval.text_metrics import grammar_lines
from diffusionforge.pipelines.text import load_text_pipeline
from diffusionforge.pipelines.text_eval import infill_parse_rate
from diffusionforge.train.builders_text import load_corpus


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="default: the bundled grammar model")
    ap.add_argument("--nfe", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    ap.add_argument("--samplers", nargs="+", default=["ancestral", "confidence"])
    ap.add_argument("--n", type=int, default=256, help="free-generation windows per point")
    ap.add_argument("--infill", type=int, default=500, help="held-out sentences per point")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-p", type=float, default=None)
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    pipe = load_text_pipeline(args.checkpoint or bundled_path("grammar"))
    held = load_corpus(pipe.cfg).heldout[: args.infill]
    print(f"checkpoint {pipe.checkpoint.path} (step {pipe.checkpoint.step}), "
          f"context {pipe.context}, {len(held)} held-out sentences, temperature "
          f"{args.temperature}, top-p {args.top_p}")  # fmt: skip
    rows = []
    print("| sampler | NFE | sentences parse | windows all valid | infill parses | s |")
    print("|---|---|---|---|---|---|")
    for sampler in args.samplers:
        for nfe in args.nfe:
            t0 = time.perf_counter()
            out = torch.cat([
                pipe.generate(min(64, args.n - i), pipe.context, nfe=nfe, sampler=sampler, seed=i,
                              temperature=args.temperature, top_p=args.top_p)
                for i in range(0, args.n, 64)
            ])  # fmt: skip
            counts = [grammar_lines(pipe.tokenizer.decode(x.tolist())) for x in out]
            total, ok = sum(c for c, _ in counts), sum(k for _, k in counts)
            windows_ok = sum(c == k for c, k in counts) / len(counts)
            rate, examples = infill_parse_rate(
                pipe, held, nfe=nfe, sampler=sampler, seed=10_000,
                temperature=args.temperature, top_p=args.top_p,
            )  # fmt: skip
            row = {
                "sampler": sampler, "nfe": nfe, "sentences": total,
                "sentence_parse": ok / max(total, 1), "windows_valid": windows_ok,
                "infill_parse": rate, "seconds": time.perf_counter() - t0, "examples": examples,
            }  # fmt: skip
            rows.append(row)
            cells = [sampler, nfe, f"{row['sentence_parse']:.3f} ({total})", f"{windows_ok:.3f}"]
            cells += [f"{rate:.3f}", f"{row['seconds']:.0f}"]
            print("| " + " | ".join(map(str, cells)) + " |", flush=True)
    for line in rows[-1]["examples"]:
        print("infill example:", line)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
