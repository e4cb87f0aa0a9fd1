"""SW2 to fresh moons data of every sampler on each schedule at one NFE, and of the defaults.

    diffusionforge train --preset moons --run-dir runs/moons
    python benchmarks/sampler_default_schedules.py runs/moons --nfe 16

The rows chose each sampler's own default schedule (core.samplers.SAMPLER_INFO[name].schedule,
used by core.plan.default_schedule when a sampler other than the recommended one is named).
2000 samples, seed 0; two draws of the data differ by the "data vs data" row.
"""

from __future__ import annotations

import argparse

from diffusionforge.core.plan import Plan
from diffusionforge.core.samplers import SAMPLERS
from diffusionforge.data.toy import make_toy
from diffusionforge.eval.swd import sliced_wasserstein
from diffusionforge.pipelines.pipeline import load_pipeline

SCHEDULES = ("karras", "optimized", "vp_trailing", "log_uniform")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--nfe", type=int, default=16)
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    pipe = load_pipeline(args.run)
    fresh = make_toy("moons", args.n, seed=12345)
    other = make_toy("moons", args.n, seed=54321)
    print(f"data vs data: {sliced_wasserstein(other, fresh):.4f}")

    def sw2(sampler, schedule) -> float:
        x = pipe.generate(args.n, seed=0, nfe=args.nfe, sampler=sampler, schedule=schedule)
        return sliced_wasserstein(x.float(), fresh)

    p = Plan.resolve(args.nfe)
    print(f"default pair ({p.sampler}, {p.schedule}): {sw2(None, None):.4f}")
    print("| sampler | " + " | ".join(SCHEDULES) + " | default (schedule) |")
    print("|---" * (len(SCHEDULES) + 2) + "|")
    for name in SAMPLERS:
        cells = [f"{sw2(name, s):.4f}" for s in SCHEDULES]
        d = Plan.resolve(args.nfe, name).schedule
        print(f"| {name} | " + " | ".join(cells) + f" | {sw2(name, None):.4f} ({d}) |", flush=True)


if __name__ == "__main__":
    main()
