"""Text-to-image benchmark on the procedural scenes: prompt faithfulness and pixel vs latent.

    python benchmarks/t2i_faithfulness.py [--pixel runs/t2i-scenes]
        [--latent runs/t2i-scenes-latent] [--seen 30 --heldout 90] [--guidance 1 2 4]
        [--nfe 10 20 40] [--out runs/bench-t2i]

1. Faithfulness per attribute (eval/prompts.py, judged by eval/judge.py) vs guidance scale at
   NFE 20, then vs NFE at the best guidance on held-out prompts with two groups, for the pixel
   model (and the latent model when given).
2. Pixel vs latent at the stated setting: faithfulness, FID in the judge's feature space
   (eval/fid.py: judge penultimate features of the samples vs fresh renders of the same
   prompts' scenes) and sampling seconds per image, the two models timed alternately in one
   process on one thread (the machine is shared: compare the ratio, rerun alone for absolutes).

Prints markdown tables; writes summary json, the per-setting tables and a verdict picture.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from diffusionforge.eval.fid import fid
from diffusionforge.eval.judge import load_judge
from diffusionforge.eval.prompts import (
    RenderPipeline,
    prompt_cases,
    run_prompts,
    summarize,
    table,
    verdict_picture,
)
from diffusionforge.pipelines.text2image import load_text2image

BAR = "heldout-relation"  # held-out compositions with counts and a spatial relation


def sweep(pipe, judge, cases, settings, out: Path, name: str) -> list[dict]:
    results = []
    for guidance, nfe in settings:
        t0 = time.process_time()
        rows, images = run_prompts(pipe, judge, cases, nfe=nfe, guidance=guidance, seed=1000)
        s = {"guidance": guidance, "nfe": nfe, "summary": summarize(rows), "rows": rows}
        s["cpu_s"] = round(time.process_time() - t0, 1)
        results.append(s)
        bar = s["summary"].get(BAR, {}).get("overall", float("nan"))
        print(f"{name} guidance {guidance:g} nfe {nfe}: {BAR} overall {100 * bar:.1f}%", flush=True)
        verdict_picture(images[:36], rows[:36]).save(out / f"{name}-g{guidance:g}-nfe{nfe}.png")
    return results


def _rank(acc: dict) -> tuple[float, float]:
    """Overall faithfulness first; ties (all zero, early in training) by the mean attribute."""
    return acc["overall"], sum(acc[a] for a in ("kind", "colour", "count", "relation")) / 4


@torch.no_grad()
def judge_features(judge, images: torch.Tensor) -> torch.Tensor:
    judge.net.eval()
    x = images.float()
    if x.shape[-1] != 32:
        x = torch.nn.functional.interpolate(x, size=(32, 32), mode="area")
    return torch.cat([judge.net.body(x[i : i + 256]) for i in range(0, len(x), 256)])


def timing(pipes: dict, prompts: list[str], nfe: int, guidance: float, rounds: int = 3) -> dict:
    """CPU seconds per image for each pipeline, alternating so both see the same load."""
    spent = {k: 0.0 for k in pipes}
    for _ in range(rounds):
        for name, pipe in pipes.items():
            t0 = time.process_time()
            pipe.generate(prompts, nfe=nfe, guidance=guidance, seeds=list(range(len(prompts))))
            spent[name] += time.process_time() - t0
    return {k: v / (rounds * len(prompts)) for k, v in spent.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pixel", help="pixel-space text-to-image checkpoint")
    ap.add_argument("--latent", help="latent text-to-image checkpoint to compare")
    ap.add_argument("--seen", type=int, default=30)
    ap.add_argument("--heldout", type=int, default=90)
    ap.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    ap.add_argument("--nfe", type=int, nargs="+", default=[10, 20, 40])
    ap.add_argument("--base-nfe", type=int, default=20)
    ap.add_argument("--out", default="runs/bench-t2i")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    judge = load_judge()
    cases = prompt_cases(args.seen, args.heldout, seed=5)
    pipes = {
        k: load_text2image(v) for k, v in (("pixel", args.pixel), ("latent", args.latent)) if v
    }
    if not pipes:
        ap.error("give --pixel and/or --latent")
    report: dict = {"seen": args.seen, "heldout": args.heldout}
    ceiling = summarize(run_prompts(RenderPipeline(), judge, cases, nfe=1, guidance=1.0)[0])
    report["ceiling"] = ceiling
    print(f"judge ceiling (true renders): {BAR} overall {100 * ceiling[BAR]['overall']:.1f}%")
    best = {}
    for name, pipe in pipes.items():
        g_runs = sweep(pipe, judge, cases, [(g, args.base_nfe) for g in args.guidance], out, name)
        g_best = max(g_runs, key=lambda s: _rank(s["summary"][BAR]))["guidance"]
        nfes = [n for n in args.nfe if n != args.base_nfe]
        n_runs = sweep(pipe, judge, cases, [(g_best, n) for n in nfes], out, name)
        runs = sorted(g_runs + n_runs, key=lambda s: (s["guidance"], s["nfe"]))
        best[name] = g_best
        report[name] = [{k: v for k, v in s.items() if k != "rows"} for s in runs]
        print(f"\n### {name}\n\n{table(runs)}\n", flush=True)
        (out / f"{name}-table.md").write_text(table(runs) + "\n")
    # pixel vs latent at the base NFE and each model's best guidance: FID and speed
    real = RenderPipeline().generate([c.prompt for c in cases], seeds=list(range(len(cases))))
    real_f = judge_features(judge, real)
    for name, pipe in pipes.items():
        x = pipe.generate(
            [c.prompt for c in cases],
            nfe=args.base_nfe,
            guidance=best[name],
            seeds=[1000 + i for i in range(len(cases))],
        )
        report[f"{name}_fid_judge"] = fid(real_f, judge_features(judge, x))
    report["cpu_s_per_image"] = timing(
        {k: p for k, p in pipes.items()},
        [c.prompt for c in cases[:16]],
        args.base_nfe,
        2.0,
    )
    report["best_guidance"] = best
    (out / "summary.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k not in pipes}, indent=1))


if __name__ == "__main__":
    main()
