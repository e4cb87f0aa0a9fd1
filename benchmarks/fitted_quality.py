"""Sample quality with and without a checkpoint's fitted schedules (issue 16): `eval`'s FID in
the features of the data's own classifier (not Inception) and the as-requested rate (the
fraction that classifier reads as the asked class), per NFE, for the default schedule (the
checkpoint without schedules.json) and the fitted one (`fit-schedule --out`):

    diffusionforge fit-schedule digits --nfe 5,8,10,16 --seconds 60 --out runs/digits-fitted
    python benchmarks/fitted_quality.py digits runs/digits-fitted --nfe 5 8 10 16 --n 1000
    python benchmarks/fitted_quality.py glyphs32 runs/glyphs32-fit8 --nfe 5 8 10 16 --n 1000

Any image checkpoint whose data has labels: the features come from the classifier `eval`
trains on the checkpoint's own training images (cached after the first time).

Both draw with eval's own code (pipelines.evaluate.draw_batched: seeds 0..n-1, classes in
turn, the config's guidance) and score with eval's extractor, so each number is what
`diffusionforge eval CKPT --nfe N --n 1000` reports as the headline FID. A fitted entry the
held-out check rejected ("kept": false) is not used: such an NFE runs the default and says so.
"""

from __future__ import annotations

import argparse
import time

import torch

from diffusionforge.eval import extract_features, fid
from diffusionforge.modalities import build_dataset
from diffusionforge.pipelines.evaluate import EvalSettings, draw_batched, extractor_for
from diffusionforge.pipelines.pipeline import load_pipeline


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("default", help="the checkpoint without fitted schedules (e.g. digits)")
    p.add_argument("fitted", help="the same network with schedules.json (fit-schedule --out)")
    p.add_argument("--nfe", type=int, nargs="+", default=[5, 8, 10, 16])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0, help="first seed (eval's default: 0)")
    p.add_argument(
        "--also-sampler",
        help="a third row: the default checkpoint with this sampler named (its own default "
        "schedule; e.g. unipc: unipc + optimized, the default pair at NFE 8+ until 2026-12-06)",
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    c0 = time.process_time()
    pipes = {"default": load_pipeline(args.default), "fitted": load_pipeline(args.fitted)}
    data = build_dataset(pipes["default"].cfg)  # the training images, as `eval` reads them
    real = data.data if isinstance(data.data, torch.Tensor) else data.data[:]
    clf = extractor_for(real, data.labels, None, print)
    ref = extract_features(clf, real).double().numpy()
    print("\n| NFE | schedule | FID[classifier features, not Inception] | as requested |")
    print("|---|---|---|---|")
    for nfe in args.nfe:
        rows = [(name, pipe, None) for name, pipe in pipes.items()]
        if args.also_sampler:
            rows.append(("named", pipes["default"], args.also_sampler))
        for name, pipe, sampler in rows:
            s = EvalSettings(n=args.n, nfe=nfe, guidance=pipe.cfg.sample.guidance, seed=args.seed)
            plan = pipe.plan(nfe, sampler=sampler)
            x = draw_batched(pipe, args.n, s, nfe, sampler).clamp(-1, 1)
            feats = extract_features(clf, x).double().numpy()
            asked = torch.arange(args.n) % pipe.num_classes
            rate = float((clf.predict(x) == asked).double().mean())
            label = f"{name}: {plan.sampler} + {plan.schedule}"
            print(f"| {nfe} | {label} | {fid(ref, feats):.3f} | {rate:.3f} |", flush=True)
    print(f"\n{time.process_time() - c0:.0f} CPU-s")


if __name__ == "__main__":
    main()
