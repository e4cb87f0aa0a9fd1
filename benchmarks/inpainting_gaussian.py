"""How far replacement inpainting (core.editing.inpaint) is from exact conditioning, on a
correlated 4-D Gaussian where the exact conditional p(x_u | x_k = known) is closed-form.

    python benchmarks/inpainting_gaussian.py [--n 4000] [--nfe 40] [--resample 0,2,8]

For each sampler, prints the mean and covariance of the generated coordinates next to the exact
conditional and the prior marginal, and the fraction of the way from the prior mean to the
conditional mean the samples moved (1 = exact conditioning, 0 = the known pixels ignored).
"""

from __future__ import annotations

import argparse

import torch

from diffusionforge.core.editing import edit

F64 = torch.float64


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=4000)
    p.add_argument("--nfe", type=int, default=40)
    p.add_argument("--resample", default="0,2,8", help="RePaint resamplings per step")
    args = p.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 4, dtype=F64, generator=g) * 0.5
    cov = a @ a.T + 0.05 * torch.eye(4, dtype=F64)
    mu = torch.tensor([0.3, -0.2, 0.1, 0.5], dtype=F64)
    eye = torch.eye(4, dtype=F64)

    def denoise(x, sigma, cond=None):
        gain = torch.linalg.solve(cov + float(sigma[0]) ** 2 * eye, cov)
        return mu + (x - mu) @ gain

    known = torch.tensor([1.0, -0.5, 0.0, 0.0], dtype=F64)
    mask = torch.tensor([0.0, 0.0, 1.0, 1.0])
    s11, s21, s22 = cov[:2, :2], cov[2:, :2], cov[2:, 2:]
    cond_mean = mu[2:] + s21 @ torch.linalg.solve(s11, known[:2] - mu[:2])
    cond_cov = s22 - s21 @ torch.linalg.solve(s11, s21.T)
    print(f"exact conditional mean {cond_mean.numpy().round(3)}, prior mean {mu[2:].numpy()}")
    print(f"exact conditional cov {cond_cov.numpy().round(3).tolist()}")
    print(f"prior cov {s22.numpy().round(3).tolist()}\n")
    print("| sampler | resample | mean | cov | fraction of the way to the conditional mean |")
    print("|---|---|---|---|---|")
    init = known.expand(args.n, 4).clone()
    for sampler in ("heun", "dpmpp_2m", "unipc", "euler_ancestral", "ddpm"):
        for r in (int(v) for v in args.resample.split(",")):
            gen = torch.Generator().manual_seed(1)
            run = dict(nfe=args.nfe, sampler=sampler, schedule="karras", generator=gen)
            out = edit(denoise, init, mask=mask, resample=r, **run)
            u = out[:, 2:]
            frac = (u.mean(0) - mu[2:]) / (cond_mean - mu[2:])
            print(
                f"| {sampler} | {r} | {u.mean(0).numpy().round(3)} | "
                f"{torch.cov(u.T).numpy().round(3).tolist()} | {frac.numpy().round(2)} |"
            )


if __name__ == "__main__":
    main()
