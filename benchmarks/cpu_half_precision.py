"""What `--dtype bfloat16|float16` (autocast) costs on the cpu, and how far it moves images.

    OMP_NUM_THREADS=1 python benchmarks/cpu_half_precision.py --models digits glyphs32 --n 4

Per bundled model: CPU seconds (process time, one torch thread) to draw n images at NFE 16 in
float32 and under torch.autocast("cpu", bfloat16 / float16), and the mean / max absolute
difference of the images from the float32 ones (images in [-1, 1]). The CLI warns on the cpu
rather than refusing; this is the measurement that line quotes."""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from diffusionforge.pipelines.pipeline import load_pipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["digits", "glyphs32"])
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--nfe", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print("| model | dtype | CPU s | x float32 | mean abs diff | max abs diff |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        pipe = load_pipeline(name)
        labels = [k % max(pipe.num_classes, 1) for k in range(args.n)] if pipe.num_classes else None
        seeds = list(range(args.n))
        pipe.generate_images(seeds[:1], labels=labels and labels[:1], nfe=2)  # warm up
        ref, base = None, None
        for dtype in (None, torch.bfloat16, torch.float16):
            ctx = torch.autocast("cpu", dtype=dtype) if dtype else contextlib.nullcontext()
            t = time.process_time()
            with ctx:
                x = pipe.generate_images(seeds, labels=labels, nfe=args.nfe).float()
            cpu = time.process_time() - t
            ref = x if ref is None else ref
            base = cpu if base is None else base
            d = (x - ref).abs()
            label = str(dtype).split(".")[-1] if dtype else "float32"
            print(f"| {name} | {label} | {cpu:.2f} | {cpu / base:.2f} | {d.mean():.4f} | "
                  f"{d.max():.4f} |")  # fmt: skip


if __name__ == "__main__":
    main()
