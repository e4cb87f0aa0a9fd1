"""Sudoku as a reasoning benchmark: masked diffusion (LLaDA SFT) vs its AR twin.

1. Trains the `sudoku` preset twice through the engine, `formulation.kind=masked` and `=ar`
   (the same transformer, bidirectional vs causal), each capped by the same `--max-cpu-time`
   (process CPU time: fair on a shared machine), in parallel. `--skip-train` evaluates runs
   already there (their newest checkpoints).
2. Held-out puzzles: generated from seeds the training set never used (data/sudoku.split_seeds),
   unique solutions checked by the solver, `--min-givens`..`--max-givens` givens (default 25-30).
   A puzzle is solved when every cell is right and every given kept (data/sudoku.is_solution).
   Reported per sampler: solved fraction, accuracy on blank cells, fraction of outputs that keep
   every given; masked diffusion with confidence (LLaDA) and margin (adaptive order) remasking,
   greedy, one cell per step (81 steps); the AR twin greedy left to right, with and without its
   key/value cache (same outputs), and tokens per second of each (shared machine: relative).
   With `--draws K` (default 24) also masked diffusion with self-verification (margin, then
   fresh draws at temperature 1 for the puzzles whose weakest written cell the model doubts
   with the rest filled in, leave-one-out probability below `--accept`; the draw of highest
   pseudo-likelihood is kept: core/discrete_verify.py) and, to be fair, the AR twin's best of K
   draws by its own likelihood. `--offset` skips the first held-out puzzles (a fresh set).

    python benchmarks/sudoku.py --cpu-minutes 14 --out runs/bench-sudoku
    python benchmarks/sudoku.py --skip-train --out runs/bench-sudoku --n 200

`--trend` evaluates every checkpoint of both runs instead (masked: margin; AR: KV cache), the
solve rate against training steps (train.keep_last must have kept them), into trend.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch


def train(out: Path, cpu_minutes: float, steps: int, extra: list[str]) -> None:
    procs = []
    for kind in ("masked", "ar"):
        # the AR twin needs the puzzle as its prompt: the pairs format (the preset's is "grid"),
        # 163 tokens whose separator shifts the solution a column off a 9-wide grid, so its
        # positions are learned per position instead of grid rows and columns
        fmt = [] if kind == "masked" else [
            "--set", "data.sudoku.format=pairs", "--set", "data.sudoku.bases=2000",
            "--set", "model.transformer.positions=learned",
        ]  # fmt: skip
        cmd = [
            sys.executable, "-m", "diffusionforge", "train", "--preset", "sudoku",
            "--run-dir", str(out / kind), "--no-progress", "--steps", str(steps),
            "--max-cpu-time", f"{cpu_minutes}m", "--set", f"formulation.kind={kind}", *fmt, *extra,
        ]  # fmt: skip
        procs.append(subprocess.Popen(cmd))
    for p in procs:
        if p.wait() != 0:
            sys.exit(f"training failed ({p.args})")


def ar_best_of(pipe, x: torch.Tensor, draws: int, seed: int) -> torch.Tensor:
    """The AR twin's counterpart of the verified sampler: a greedy draw and draws - 1 at
    temperature 1, keeping per row the one of highest likelihood under the AR model itself."""
    from diffusionforge.pipelines import text_pairs

    start = (x == pipe.mask_id).int().argmax(1)  # where each row's response begins
    best, best_ll = None, None
    for d in range(draws):
        temp = 0.0 if d == 0 else 1.0
        y = text_pairs.fill(pipe, x, nfe=0, sampler="", seed=seed + 100_000 * d, temperature=temp)
        with torch.no_grad():  # log p(response | puzzle) per response token (AutoregressiveSFT)
            ll = -pipe.objective.nll(pipe.net, y, start)
        if best is None:
            best, best_ll = y, ll
        else:
            better = ll > best_ll
            best[better], best_ll[better] = y[better], ll[better]
    return best


def evaluate(
    pipe, puzzles, *, sampler: str, batch: int, kv_cache: bool = True, draws: int = 1,
    accept: float = 0.9,
) -> dict:  # fmt: skip
    from diffusionforge.data import sudoku
    from diffusionforge.data.pairs import response_text
    from diffusionforge.pipelines import text_pairs

    solved = kept = right = blanks = 0
    tokens, seconds = 0, 0.0
    for start in range(0, len(puzzles), batch):
        chunk = puzzles[start : start + batch]
        rows = [text_pairs.prompt_window(pipe, p) for p, _ in chunk]
        x = torch.stack([window for window, _ in rows])
        nfe = int((x == pipe.mask_id).sum(1).max())  # one cell per step
        t0 = time.perf_counter()
        if pipe.is_ar and not kv_cache:
            from diffusionforge.core.autoregressive import sample_autoregressive

            gens = [torch.Generator().manual_seed(start + i) for i in range(len(rows))]
            with torch.no_grad():
                y = sample_autoregressive(
                    pipe.net, x, bos_id=pipe.objective.bos_id, mask_id=pipe.mask_id,
                    generator=gens, temperature=0.0,
                )  # fmt: skip
        elif pipe.is_ar and draws > 1:
            y = ar_best_of(pipe, x, draws, seed=start)
        else:
            y = text_pairs.fill(
                pipe, x, nfe=nfe, sampler=sampler, seed=start, temperature=0.0, draws=draws,
                accept=accept,
            )  # fmt: skip
        seconds += time.perf_counter() - t0
        tokens += int((x == pipe.mask_id).sum())
        for r, (puzzle, solution) in enumerate(chunk):
            answer = response_text(pipe.tokenizer, y[r, rows[r][1] :].tolist())
            solved += sudoku.is_solution(puzzle, answer)
            cells = answer.ljust(81)[:81]
            kept += all(p == a for p, a in zip(puzzle, cells, strict=True) if p != sudoku.BLANK)
            for p, a, s in zip(puzzle, cells, solution, strict=True):
                if p == sudoku.BLANK:
                    blanks += 1
                    right += a == s
    n = len(puzzles)
    return {
        "solved": solved / n,
        "blank_cell_accuracy": right / blanks,
        "givens_kept": kept / n,
        "tokens_per_second": tokens / seconds,
        "seconds": seconds,
    }


def trend(out: Path, puzzles, batch: int, ema: bool) -> None:
    from diffusionforge.pipelines.text import load_text_pipeline

    rows = []
    for kind, sampler in (("masked", "margin"), ("ar", "")):
        for ckpt in sorted((out / kind / "checkpoints").glob("step-*")):
            pipe = load_text_pipeline(ckpt, use_ema=ema)
            r = evaluate(pipe, puzzles, sampler=sampler, batch=batch)
            rows.append({"kind": kind, "step": pipe.checkpoint.step, **r})
            print(json.dumps(rows[-1]), flush=True)
    (out / "trend.json").write_text(json.dumps(rows, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench-sudoku")
    ap.add_argument("--cpu-minutes", type=float, default=30)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--set", action="append", default=[], help="training overrides")
    ap.add_argument("--n", type=int, default=200, help="held-out puzzles")
    ap.add_argument("--min-givens", type=int, default=25)
    ap.add_argument("--max-givens", type=int, default=30)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--samplers", nargs="+", default=["margin", "confidence"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--draws", type=int, default=24,
        help="also: masked margin + self-verification with up to this many draws; AR best of "
        "this many by its likelihood (0: skip)",
    )  # fmt: skip
    ap.add_argument("--accept", type=float, default=0.9, help="verification threshold")
    ap.add_argument("--offset", type=int, default=0, help="skip the first held-out puzzles")
    ap.add_argument("--trend", action="store_true", help="every checkpoint, one sampler each")
    ap.add_argument("--no-ema", action="store_true", help="raw weights (short runs: EMA lags)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if not args.skip_train:
        extra = [x for s in args.set for x in ("--set", s)]
        train(out, args.cpu_minutes, args.steps, extra)

    from diffusionforge.data import sudoku
    from diffusionforge.pipelines.text import load_text_pipeline

    ema = not args.no_ema
    pipes = {kind: load_text_pipeline(out / kind, use_ema=ema) for kind in ("masked", "ar")}
    seed = pipes["masked"].cfg.data.seed
    puzzles = sudoku.puzzles(
        args.offset + args.n, 1, seed, args.min_givens, args.max_givens, heldout=True
    )[args.offset :]  # fmt: skip
    for p, s in puzzles:
        assert sudoku.solve(p, limit=2) == [s]  # unique, checked by the solver
    if args.trend:
        trend(out, puzzles, args.batch, ema)
        return
    results: dict = {
        "puzzles": args.n,
        "offset": args.offset,
        "givens": [args.min_givens, args.max_givens],
        "machine": platform.processor() or platform.machine(),
        "weights": "ema" if ema else "model",
    }
    for kind, pipe in pipes.items():
        results[f"{kind}_checkpoint"] = {
            "path": str(pipe.checkpoint.path),
            "step": pipe.checkpoint.step,
        }
    for sampler in args.samplers:
        r = evaluate(pipes["masked"], puzzles, sampler=sampler, batch=args.batch)
        results[f"masked/{sampler}"] = r
        print(f"masked diffusion, {sampler:10s}: {json.dumps(r)}", flush=True)
    if args.draws > 1:
        r = evaluate(
            pipes["masked"], puzzles, sampler="margin", batch=args.batch, draws=args.draws,
            accept=args.accept,
        )  # fmt: skip
        results[f"masked/margin+verify{args.draws}"] = r
        label = f"masked diffusion, margin + verify ({args.draws} draws)"
        print(f"{label}: {json.dumps(r)}", flush=True)
    for cache in (True, False):
        r = evaluate(pipes["ar"], puzzles, sampler="", batch=args.batch, kv_cache=cache)
        name = "ar/kv-cache" if cache else "ar/no-cache"
        results[name] = r
        print(f"{name:28s}: {json.dumps(r)}", flush=True)
    if args.draws > 1:
        r = evaluate(pipes["ar"], puzzles, sampler="", batch=args.batch, draws=args.draws)
        results[f"ar/best-of-{args.draws}"] = r
        print(f"AR twin, best of {args.draws} by its likelihood: {json.dumps(r)}", flush=True)
    (out / "sudoku.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {out / 'sudoku.json'}")


if __name__ == "__main__":
    main()
