"""`diffusionforge eval` on a text checkpoint: likelihood on held-out text and sample quality.

- held-out perplexity: exp of the NELBO per token for masked diffusion (an upper bound on the
  model's perplexity; core.discrete.MaskedDiffusion.elbo_nll, exact in time, sampled masks; for
  block diffusion the sum of its blocks' NELBOs, core.block_diffusion), or
  the exact perplexity of the AR baseline.
- samples: generative perplexity under an AR checkpoint (`--ar`), per-sample unigram entropy,
  the longest span copied from the training text, and for the grammar corpus the fraction of
  complete sentences that parse and the infilling parse rate on held-out sentences. Each sample
  metric is printed beside the same metric on held-out data: a reference, not a target.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from diffusionforge.core.discrete_samplers import TOKEN_SAMPLERS
from diffusionforge.data.grammar import parses
from diffusionforge.errors import UserError
from diffusionforge.eval.text_metrics import grammar_lines, longest_copied_span, unigram_entropy
from diffusionforge.pipelines.text import DEFAULT_SAMPLER, TextPipeline, load_text_pipeline
from diffusionforge.train.builders_text import Corpus, load_corpus, windows

COPY_N = 64  # samples checked for copied spans


@dataclass
class TextEvalSettings:
    n: int = 64  # samples for the sample metrics
    nfe: int = 64
    sampler: str = DEFAULT_SAMPLER
    seed: int = 0
    elbo_steps: int = 32  # strata of the mask count in the NELBO estimate (None-like 0: all)
    max_windows: int = 512  # held-out windows scored
    batch: int = 32
    ar: str | None = None  # an AR checkpoint that scores the samples
    infill: int = 200  # grammar: held-out sentences infilled (0: skip)


def heldout(pipe: TextPipeline, corpus: Corpus, max_windows: int) -> Tensor:
    held = corpus.heldout or corpus.train[-max(1, len(corpus.train) // 20) :]
    return windows(pipe.tokenizer, held, corpus.sep, pipe.context)[:max_windows]


@torch.no_grad()
def nll_per_token(
    pipe: TextPipeline, data: Tensor, *, steps: int = 32, batch: int = 32, seed: int = 0
) -> float:
    """Mean nats per token over the windows `data` (N, L): NELBO (masked) or exact NLL (AR)."""
    total = 0.0
    for i in range(0, len(data), batch):
        x = data[i : i + batch]
        if pipe.is_ar:
            total += float(pipe.objective.nll(pipe.net, x).sum())
        else:
            gens = [torch.Generator().manual_seed(seed + i + j) for j in range(len(x))]
            nll = pipe.objective.elbo_nll(pipe.net, x, steps=steps or None, generator=gens)
            total += float(nll.sum())
    return total / len(data)


def infill_parse_rate(
    pipe: TextPipeline,
    sentences: list[str],
    *,
    nfe: int,
    sampler: str,
    seed: int = 0,
    temperature: float = 1.0,
    top_p: float | None = None,
) -> tuple[float, list[str]]:
    """Fraction of held-out grammar sentences that parse after their middle third (in tokens)
    is masked and filled in, with the following sentences as right context; and examples."""
    rows, holes = [], []
    for k, s in enumerate(sentences):
        stream = "\n".join([s, *sentences[k + 1 : k + 4], *sentences[:3]]) + "\n"
        ids = pipe.tokenizer.encode(stream)[: pipe.context]
        n = len(pipe.tokenizer.encode(s))
        lo, hi = n // 3, max(n // 3 + 1, (2 * n) // 3)
        x = torch.tensor(ids)
        x[lo:hi] = pipe.mask_id
        rows.append(x)
        holes.append((lo, hi))
    out = []
    for i in range(0, len(rows), 32):
        x = torch.stack(rows[i : i + 32])
        gens = [torch.Generator().manual_seed(seed + i + j) for j in range(len(x))]
        denoise = pipe.objective.precondition(pipe.net)

        y = TOKEN_SAMPLERS[sampler](
            denoise, x, nfe, mask_id=pipe.mask_id, schedule=pipe.objective.schedule,
            generator=gens, temperature=temperature, top_p=top_p,
        )  # fmt: skip
        out += list(y)
    texts = [pipe.tokenizer.decode(y.tolist()).split("\n")[0] for y in out]
    ok = sum(_parses(t) for t in texts)
    examples = [
        f"{sentences[k]!r} -> {pipe.decode(out[k], mark=_span(len(out[k]), *holes[k]))!r}"
        for k in range(min(5, len(out)))
    ]
    return ok / len(texts), examples


def _span(length: int, lo: int, hi: int) -> Tensor:
    m = torch.zeros(length, dtype=torch.bool)
    m[lo:hi] = True
    return m


def _parses(sentence: str) -> bool:

    return parses(sentence)


def sample_report(
    pipe: TextPipeline, samples: Tensor, corpus: Corpus, data: Tensor, ar: TextPipeline | None
) -> dict:
    """Sample metrics, each beside its value on held-out windows `data`."""
    train_text = corpus.sep.join(corpus.train)
    ref = data[: len(samples)]
    texts = [pipe.tokenizer.decode(s.tolist()) for s in samples]
    ref_texts = [pipe.tokenizer.decode(s.tolist()) for s in ref]
    # substring search over the whole training text: the first COPY_N samples are enough
    copied = [longest_copied_span(t, train_text) for t in texts[:COPY_N]]
    copied_ref = [longest_copied_span(t, train_text) for t in ref_texts[:COPY_N]]
    report: dict = {
        "unigram_entropy": _mean([unigram_entropy(s.tolist()) for s in samples]),
        "unigram_entropy_heldout": _mean([unigram_entropy(s.tolist()) for s in ref]),
        "copied_span_mean": _mean(copied),
        "copied_span_max": max(copied),
        "copied_span_mean_heldout": _mean(copied_ref),
        "copied_span_samples": len(copied),
        "sample_chars": _mean([len(t) for t in texts]),
    }
    if ar is not None:
        report["gen_ppl"] = math.exp(nll_per_token(ar, samples))
        report["gen_ppl_heldout"] = math.exp(nll_per_token(ar, ref))
    if pipe.cfg.data.kind == "grammar":
        for name, group in (("", texts), ("_heldout", ref_texts)):
            counts = [grammar_lines(t) for t in group]
            total, ok = sum(c for c, _ in counts), sum(k for _, k in counts)
            report[f"grammar_sentences{name}"] = total
            report[f"grammar_parse_fraction{name}"] = ok / total if total else math.nan
    return report


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def evaluate_text(pipe: TextPipeline, s: TextEvalSettings, out: Path, log) -> dict:
    corpus = load_corpus(pipe.cfg)
    data = heldout(pipe, corpus, s.max_windows)
    log(f"held-out: {len(data)} windows of {pipe.context} tokens")
    nll = nll_per_token(pipe, data, steps=s.elbo_steps, batch=s.batch, seed=s.seed)
    metrics: dict = {
        "checkpoint": str(pipe.checkpoint.path),
        "objective": pipe.kind,
        "heldout_windows": len(data),
        "heldout_nll_per_token": nll,
        "heldout_ppl" if pipe.is_ar else "heldout_ppl_bound": math.exp(nll),
        "nfe": s.nfe,
        "sampler": "ar" if pipe.is_ar else s.sampler,
        "n": s.n,
    }
    ar = None
    if s.ar:
        ar = load_text_pipeline(s.ar)
        if ar.tokenizer.to_json() != pipe.tokenizer.to_json():
            raise UserError(f"--ar {s.ar}: its tokenizer differs from the evaluated model's")
    samples = torch.cat(
        [
            pipe.generate(
                min(s.batch, s.n - i), pipe.context, nfe=s.nfe, sampler=s.sampler, seed=s.seed + i
            )
            for i in range(0, s.n, s.batch)
        ]
    )
    metrics.update(sample_report(pipe, samples, corpus, data, ar))
    if pipe.cfg.data.kind == "grammar" and s.infill and pipe.kind == "masked":
        rate, examples = infill_parse_rate(
            pipe, corpus.heldout[: s.infill], nfe=s.nfe, sampler=s.sampler, seed=s.seed
        )
        metrics["infill_parse_rate"], metrics["infill_examples"] = rate, examples
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    sep = "\n" + "-" * 40 + "\n"
    (out / "samples.txt").write_text(
        sep.join(pipe.tokenizer.decode(x.tolist()) for x in samples), encoding="utf-8"
    )
    return metrics
