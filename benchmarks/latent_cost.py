"""Latent vs pixel sampling cost: one network forward on 8x8x4 latents vs 32x32x3 pixels for the
same UNet preset, plus the one decoder pass a latent sample needs, in FLOPs (exact, machine
independent: torch.utils.flop_counter) and in CPU time measured side by side (interleaved
repeats, median; process time of this process, one thread).

    python benchmarks/latent_cost.py [--presets tiny,small,medium] [--batch 16] [--repeats 7]
        [--nfe 20] [--autoencoder f4-small]

Prints a Markdown table for BENCHMARKS.md. CPU times on a shared machine are indicative only;
the FLOP ratio is the number to quote.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from diffusionforge.nets.autoencoder import AUTOENCODER_PRESETS, KLAutoencoder
from diffusionforge.nets.dit import DIT_PRESETS, DiT
from diffusionforge.nets.unet import UNET_PRESETS, UNet


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def cpu_time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        out.append(time.process_time() - t)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--presets", default="tiny,small,medium")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--nfe", type=int, default=20)
    p.add_argument("--autoencoder", default="f4-small")
    p.add_argument("--dit", default="tiny", help="DiT preset for the patch-size rows")
    args = p.parse_args()
    torch.set_num_threads(1)
    b, nfe = args.batch, args.nfe
    ae = KLAutoencoder(3, 4, **AUTOENCODER_PRESETS[args.autoencoder]).eval()
    z = torch.randn(b, 4, 32 // ae.factor, 32 // ae.factor)
    with torch.no_grad():
        dec_flops = flops(lambda: ae.decode(z)) / b
        dec_time = statistics.median(cpu_time(lambda: ae.decode(z), args.repeats)) / b
    print(
        f"decoder ({args.autoencoder}, {tuple(z.shape[1:])} -> (3, 32, 32)): "
        f"{dec_flops / 1e6:.1f} MFLOP, {dec_time * 1e3:.2f} ms CPU per image"
    )
    print()
    print(
        f"| network | params | pixel 32x32x3 MFLOP | latent MFLOP | FLOP ratio | "
        f"pixel ms | latent ms | time ratio | sample FLOP ratio at NFE {nfe} (incl. decode) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    lat_res = 32 // ae.factor
    pairs = [(f"UNet {n}", UNet(32, 3, **UNET_PRESETS[n]), UNet(lat_res, 4, **UNET_PRESETS[n]))
             for n in args.presets.split(",")]  # fmt: skip
    kw = {k: v for k, v in DIT_PRESETS[args.dit].items() if k != "patch_size"}
    for pp, lp in ((2, 2), (4, 2), (4, 1)):  # patch sizes: pixels, latents
        tokens = ((32 // pp) ** 2, (lat_res // lp) ** 2)
        name = f"DiT {args.dit}, patch {pp} ({tokens[0]} tokens) vs {lp} ({tokens[1]})"
        pairs.append((name, DiT(32, 3, patch_size=pp, **kw), DiT(lat_res, 4, patch_size=lp, **kw)))
    for name, pix, lat in pairs:
        pix, lat = pix.eval(), lat.eval()
        xp, xl, c = torch.randn(b, 3, 32, 32), torch.randn_like(z), torch.zeros(b)
        run_pix, run_lat = functools.partial(pix, xp, c), functools.partial(lat, xl, c)
        with torch.no_grad():
            fp, fl = flops(run_pix) / b, flops(run_lat) / b
            tp, tl = [], []
            for _ in range(args.repeats):  # interleaved, so load changes hit both alike
                tp += cpu_time(run_pix, 1)
                tl += cpu_time(run_lat, 1)
        mp, ml = statistics.median(tp) / b, statistics.median(tl) / b
        sample_ratio = (nfe * fp) / (nfe * fl + dec_flops)
        params = sum(q.numel() for q in pix.parameters()) / 1e6
        print(
            f"| {name} | {params:.2f}M | {fp / 1e6:.1f} | {fl / 1e6:.1f} | {fp / fl:.1f}x | "
            f"{mp * 1e3:.2f} | {ml * 1e3:.2f} | {mp / ml:.1f}x | {sample_ratio:.1f}x |"
        )


if __name__ == "__main__":
    main()
