"""Masked diffusion (MDLM) vs the autoregressive baseline on Debian's fortunes, at equal
parameters and equal training CPU time; then sample quality against NFE.

1. Trains the `fortunes` preset twice through the engine, `formulation.kind=masked` and `=ar`
   (the same 0.8M-parameter transformer, bidirectional vs causal), each capped by the same
   `--max-cpu-time` (process CPU time: fair while other jobs share the machine), in parallel,
   on `--tokenizer` tokens (BPE by default); `--judge` also trains a third model, AR with
   another seed, that scores the samples instead of the AR twin scoring its own rival's.
2. Held-out perplexity: exp(NELBO per token) for masked diffusion (an upper bound), exact
   exp(NLL per token) for AR, on the same held-out windows, and both per character (tokens per
   character of those windows); the ratio is the headline.
3. Quality vs NFE: masked-diffusion samples (one context) at each NFE, scored by the judge
   (generative perplexity per token) with per-sample unigram entropy over tokens, each also as
   a ratio to held-out text's; beside AR samples (KV cache) of the same length and held-out
   text; tokens per second of each (the machine is shared: rerun alone before quoting them).
4. Block diffusion (BD3-LM, core/block_diffusion.py) beside them: `--blocks 4 16` trains one
   block model per block size under the same CPU cap (its training pass covers the noisy and the
   clean copy, about twice a step's cost, so its LR schedule is `--block-steps` long), and
   `--block-runs DIR ...` scores block runs trained elsewhere; each gets the same held-out
   figures (sum of its blocks' NELBOs, exact in time) and sample rows, with network calls.

    python benchmarks/text_fortunes.py --cpu-minutes 30 --steps 3300 --judge   # train + evaluate
    python benchmarks/text_fortunes.py --skip-train --out runs/bench-fortunes
    python benchmarks/text_fortunes.py --trend --out runs/bench-fortunes --elbo-steps 32
    python benchmarks/text_fortunes.py --skip-train --out runs/fortunes-bpe \
        --block-runs runs/fortunes-bpe-block/b4 runs/fortunes-bpe-block/b16
    python benchmarks/text_fortunes.py --frontier --out runs/fortunes-bpe \
        --block-runs runs/fortunes-bpe-block/b4 runs/fortunes-bpe-block/b16

Data-constrained runs (many passes over a slice of the training fortunes, the same held-out
part): train both kinds with `--set data.text.subset=0.05` and frequent checkpoints, then
`--trend` on their folder (BENCHMARKS.md, "data-constrained").
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch


def train(
    out: Path, cpu_minutes: float, steps: int, tokenizer: str, judge: bool, blocks, block_steps
) -> None:
    procs = []
    runs = [("masked", "masked", 0, steps, []), ("ar", "ar", 0, steps, [])]
    runs += [("judge", "ar", 1, steps, [])] if judge else []
    runs += [(f"block{b}", "block", 0, block_steps, ["--set", f"formulation.block_size={b}"])
             for b in blocks]  # fmt: skip
    for name, kind, seed, n, extra in runs:
        cmd = [
            sys.executable, "-m", "diffusionforge", "train", "--preset", "fortunes",
            "--run-dir", str(out / name), "--no-progress", "--steps", str(n),
            "--max-cpu-time", f"{cpu_minutes}m", "--set", f"formulation.kind={kind}",
            "--set", "train.tensorboard=false", "--set", f"data.text.tokenizer={tokenizer}",
            "--set", f"train.seed={seed}", *extra,
        ]  # fmt: skip
        print(" ".join(cmd), flush=True)
        log = open(out / f"{name}.log", "w")  # noqa: SIM115 - closed when the process ends
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
    for p in procs:
        if p.wait():
            raise SystemExit(f"training failed; see {out}/*.log")


def trend(out: Path, n: int, elbo_steps: int) -> None:
    """Held-out and training NLL (NELBO for masked and block diffusion) per token of each
    checkpoint kept in OUT/ar, OUT/masked and OUT/block*, on n windows of each split, into
    trend.json."""
    from diffusionforge.pipelines.text import load_text_pipeline
    from diffusionforge.pipelines.text_eval import heldout, nll_per_token
    from diffusionforge.train.builders_text import load_corpus, windows

    first = load_text_pipeline(out / "masked")
    corpus = load_corpus(first.cfg)
    held = heldout(first, corpus, n)
    seen = windows(first.tokenizer, corpus.train[:2000], corpus.sep, first.context)[:n]
    # passes over the training text: windows drawn so far / training windows
    n_train = len(windows(first.tokenizer, corpus.train, corpus.sep, first.context))
    batch = first.cfg.train.batch_size
    print(f"# {len(corpus.train)} training documents (data.text.subset "
          f"{first.cfg.data.text.subset}), {n_train} windows of {first.context} tokens; "
          f"{n} windows of each split scored")  # fmt: skip
    rows = []
    kinds = ["ar", "masked"] + [p.name for p in sorted(out.glob("block*")) if p.is_dir()]
    for kind in kinds:
        for ckpt in sorted((out / kind / "checkpoints").glob("step-*")):
            pipe = load_text_pipeline(ckpt)
            rows.append({
                "kind": kind, "step": pipe.checkpoint.step,
                "passes": round(pipe.checkpoint.step * batch / n_train, 1),
                "heldout_nll": nll_per_token(pipe, held, steps=elbo_steps),
                "train_nll": nll_per_token(pipe, seen, steps=elbo_steps),
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    (out / "trend.json").write_text(json.dumps(rows, indent=2))
    by = {(r["kind"], r["step"]): r for r in rows}
    names = {"ar": "AR", "masked": "MDLM"}
    print("| step | passes | " + " | ".join(f"{names.get(k, k)} held-out / train" for k in kinds)
          + " |")  # fmt: skip
    print("|---|---|" + "---|" * len(kinds))
    for step in sorted({r["step"] for r in rows}):
        cells = []
        for kind in kinds:
            r = by.get((kind, step))
            cells.append("-" if r is None else f"{r['heldout_nll']:.3f} / {r['train_nll']:.3f}")
        passes = next(r["passes"] for r in rows if r["step"] == step)
        print(f"| {step} | {passes} | " + " | ".join(cells) + " |")
    for kind in kinds:
        mine = [r for r in rows if r["kind"] == kind]
        if mine:
            b = min(mine, key=lambda r: r["heldout_nll"])
            print(f"best held-out {kind}: {b['heldout_nll']:.3f} at step {b['step']} "
                  f"({b['passes']} passes)")  # fmt: skip


def frontier(out: Path, runs: list[str], n: int) -> None:
    """The two sample goals against each other: judge perplexity and unigram entropy (each as a
    ratio to held-out text's) of n samples (seed 0) of OUT/masked and each block run, over
    sampler shapings: ancestral at temperatures and top-p, and (masked only) LLaDA's
    semi-autoregressive remasking inside the context: the confidence sampler over blocks of
    32/16/8 tokens left to right, the text to the right of a block still masked."""
    from diffusionforge.core.block_diffusion import sample_blocks
    from diffusionforge.core.discrete_samplers import sample_confidence
    from diffusionforge.eval.text_metrics import unigram_entropy
    from diffusionforge.pipelines.text import load_text_pipeline
    from diffusionforge.pipelines.text_eval import heldout, nll_per_token
    from diffusionforge.train.builders_text import load_corpus

    judge = load_text_pipeline(out / "judge" if (out / "judge").exists() else out / "ar")
    mdlm = load_text_pipeline(out / "masked")
    ref = heldout(mdlm, load_corpus(mdlm.cfg), n)
    base = (math.exp(nll_per_token(judge, ref)), sum(unigram_entropy(x.tolist()) for x in ref))

    def row(label: str, s: torch.Tensor) -> None:
        ppl = math.exp(nll_per_token(judge, s)) / base[0]
        ent = sum(unigram_entropy(x.tolist()) for x in s) / base[1]
        print(f"| {label} | {ppl:.2f}x | {ent:.2f}x |", flush=True)

    print("| model, sampler | judge perplexity vs held-out | unigram entropy vs held-out |")
    print("|---|---|---|")
    pipes = {"MDLM": mdlm} | {f"BD3 {Path(r).name}": load_text_pipeline(r) for r in runs}
    for name, pipe in pipes.items():
        for temp, top_p in ((1.0, None), (0.7, None), (0.5, None), (0.3, None), (1.0, 0.6)):
            s = pipe.generate(n, pipe.context, nfe=128, sampler="ancestral", seed=0,
                              temperature=temp, top_p=top_p)  # fmt: skip
            row(f"{name} ancestral NFE 128, temperature {temp}, top-p {top_p or '-'}", s)
    denoise, length = mdlm.objective.precondition(mdlm.net), mdlm.context

    def right_masked(prefix: torch.Tensor):  # LLaDA: the block sees masks to its right
        def d(z, t, c=None, start=prefix.shape[1]):
            right = torch.full((len(z), length - start - z.shape[1]), mdlm.mask_id)
            return denoise(torch.cat([prefix, z, right], 1), t, c)[:, start : start + z.shape[1]]

        return d

    for block in (32, 16, 8):
        for nfe in (64, 128):
            gens = [torch.Generator().manual_seed(i) for i in range(n)]
            x = torch.full((n, length), mdlm.mask_id)
            s = sample_blocks(denoise, x, nfe, mask_id=mdlm.mask_id, block=block,
                              inner=sample_confidence, context=right_masked, generator=gens,
                              schedule=mdlm.objective.schedule)  # fmt: skip
            row(f"MDLM confidence NFE {nfe}, semi-AR blocks of {block}", s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench-fortunes")
    ap.add_argument("--cpu-minutes", type=float, default=10.0)
    ap.add_argument("--steps", type=int, default=1500, help="LR schedule length (cap)")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--windows", type=int, default=512, help="held-out windows scored")
    ap.add_argument("--elbo-steps", type=int, default=128, help="strata of the NELBO estimate")
    ap.add_argument("--nfe", type=int, nargs="+", default=[16, 32, 64, 128])
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--sampler", default="ancestral")
    ap.add_argument("--tokenizer", default="bpe", choices=["bpe", "char"])
    ap.add_argument("--blocks", type=int, nargs="*", default=[], help="block sizes to train")
    ap.add_argument("--block-steps", type=int, default=1700, help="block runs' LR schedule")
    ap.add_argument("--block-runs", nargs="*", default=[], help="block runs trained elsewhere")
    ap.add_argument(
        "--judge", action="store_true",
        help="train a third model, AR with another seed, that scores the samples (else the "
        "AR twin scores them; with --skip-train: used if OUT/judge exists)",
    )  # fmt: skip
    ap.add_argument(
        "--trend", action="store_true",
        help="instead: held-out and training nats per token of every kept checkpoint of both "
        "runs (the data-constrained view: when does held-out stop improving?)",
    )  # fmt: skip
    ap.add_argument(
        "--frontier", action="store_true",
        help="instead: judge perplexity and entropy of samples over sampler shapings "
        "(ancestral temperature / top-p, semi-autoregressive blocks) of OUT/masked and "
        "--block-runs",
    )  # fmt: skip
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    if args.frontier:
        frontier(out, args.block_runs, args.samples)
        return
    if args.trend:
        trend(out, args.windows, args.elbo_steps)
        return
    out.mkdir(parents=True, exist_ok=True)
    if not args.skip_train:
        train(out, args.cpu_minutes, args.steps, args.tokenizer, args.judge, args.blocks,
              args.block_steps)  # fmt: skip

    from diffusionforge.eval.text_metrics import unigram_entropy
    from diffusionforge.pipelines.text import load_text_pipeline
    from diffusionforge.pipelines.text_eval import heldout, nll_per_token
    from diffusionforge.train.builders_text import load_corpus
    from diffusionforge.train.checkpoint import resolve_checkpoint

    mdlm, ar = load_text_pipeline(out / "masked"), load_text_pipeline(out / "ar")
    runs = {"masked": out / "masked", "ar": out / "ar"}
    runs |= {p.name: p for p in sorted(out.glob("block*")) if p.is_dir()}
    runs |= {Path(p).name: Path(p) for p in args.block_runs}
    pipes = {"masked": mdlm, "ar": ar} | {
        name: load_text_pipeline(path)
        for name, path in runs.items()
        if name not in ("masked", "ar")
    }
    corpus = load_corpus(mdlm.cfg)
    data = heldout(mdlm, corpus, args.windows)
    for name, pipe in pipes.items():
        if pipe.tokenizer.to_json() != mdlm.tokenizer.to_json():
            raise SystemExit(f"{runs[name]}: its tokenizer differs from {runs['masked']}'s")
    judge = load_text_pipeline(out / "judge") if (out / "judge").exists() else ar
    # characters per token of the held-out windows: per-token figures -> per-character ones
    chars = sum(len(mdlm.tokenizer.decode(x.tolist())) for x in data)
    per_char = data.numel() / chars
    rows: dict = {
        "machine": f"{platform.processor() or platform.machine()}, 1 torch thread",
        "tokenizer": mdlm.cfg.data.text.tokenizer,
        "tokens_per_char": per_char,
        "judge": str(judge.checkpoint.path),
    }
    for name, pipe in pipes.items():
        state = resolve_checkpoint(runs[name])
        log = runs[name].parent / f"{runs[name].name}.log"
        log = log.read_text() if log.exists() else ""
        nll = nll_per_token(pipe, data, steps=args.elbo_steps)
        rows[name] = {
            "step": state.step,
            "params": sum(p.numel() for p in pipe.net.parameters()),
            "heldout_nll": nll,
            "heldout_ppl": math.exp(nll),
            "heldout_ppl_per_char": math.exp(nll * per_char),
            "log_tail": log.strip().splitlines()[-1:] if log else [],
        }
        print(name, rows[name], flush=True)
    print("| model | steps | held-out perplexity per token | per character | ratio to AR per token "
          "| per character |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name in pipes:
        r, a = rows[name], rows["ar"]
        r["ratio"] = r["heldout_ppl"] / a["heldout_ppl"]
        r["ratio_per_char"] = r["heldout_ppl_per_char"] / a["heldout_ppl_per_char"]
        print(f"| {name} | {r['step']} | {r['heldout_ppl']:.2f} | {r['heldout_ppl_per_char']:.3f}"
              f" | {r['ratio']:.3f} | {r['ratio_per_char']:.3f} |")  # fmt: skip
    rows["ratio"], rows["ratio_per_char"] = (
        rows["masked"]["ratio"],
        rows["masked"]["ratio_per_char"],
    )

    n, length = args.samples, mdlm.context
    ref = data[:n]
    quality = [{
        "model": "held-out text", "nfe": "-", "calls": 0,
        "gen_ppl": math.exp(nll_per_token(judge, ref)),
        "entropy": sum(unigram_entropy(x.tolist()) for x in ref) / n, "sec_per_sample": 0.0,
    }]  # fmt: skip

    def score(label: str, pipe, steps, **kw) -> torch.Tensor:
        calls = [0]
        hook = pipe.net.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
        t0 = time.perf_counter()
        s = pipe.generate(n, length, seed=0, **kw)
        seconds = time.perf_counter() - t0
        hook.remove()
        quality.append({
            "model": label, "nfe": steps, "calls": calls[0],
            "gen_ppl": math.exp(nll_per_token(judge, s)),
            "entropy": sum(unigram_entropy(x.tolist()) for x in s) / n,
            "sec_per_sample": seconds / n,
        })  # fmt: skip
        print(quality[-1], flush=True)
        return s

    ar_samples = score("AR", ar, length)
    for name, pipe in pipes.items():
        if name == "ar":
            continue
        label = "MDLM" if name == "masked" else f"BD3 {name}"
        for sampler in dict.fromkeys([args.sampler, "confidence"]):
            for nfe in args.nfe:
                s = score(f"{label} {sampler}", pipe, nfe, nfe=nfe, sampler=sampler)
                if nfe == args.nfe[-1]:
                    prefix = "" if name == "masked" else f"{name}-"
                    (out / f"samples-{prefix}{sampler}-{nfe}.txt").write_text(
                        "\n----\n".join(mdlm.tokenizer.decode(x.tolist()) for x in s[:8])
                    )
    (out / "samples-ar.txt").write_text(
        "\n----\n".join(ar.tokenizer.decode(x.tolist()) for x in ar_samples[:8])
    )
    rows["quality"] = quality
    print("| model | NFE | network calls | gen. perplexity per token (AR judge) | vs held-out "
          "| unigram entropy | vs held-out | tokens/s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    base = quality[0]
    for q in quality:
        speed = f"{length / q['sec_per_sample']:.0f}" if q["sec_per_sample"] else "-"
        print(f"| {q['model']} | {q['nfe']} | {q['calls']} | {q['gen_ppl']:.2f} | "
              f"{q['gen_ppl'] / base['gen_ppl']:.2f}x | {q['entropy']:.2f} | "
              f"{q['entropy'] / base['entropy']:.2f}x | {speed} |")  # fmt: skip
    (out / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
