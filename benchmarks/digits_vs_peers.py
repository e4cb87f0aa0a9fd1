"""Our digits preset against diffusers' recipe, same data, same wall-clock budget, same scorer.

    python benchmarks/digits_vs_peers.py --budget 600          # issue 4's quality benchmark
    python benchmarks/digits_vs_peers.py --throughput-only     # images/s, ours vs UNet2DModel

Quality per CPU-minute: each contender trains on scikit-learn's 1,797 8x8 digits (class-
conditional) for `--budget` seconds on one torch thread, then draws 1,000 samples (100 per class)
its own recommended way, and all are scored by one classifier (eval/features.py, trained on the
real digits with a held-out 20%): FID and KID in its features, and the fraction of samples it
labels as the requested class.

- ours: the `digits` preset (0.3M-parameter UNet, EDM, label dropout), sampled at NFE 16 with
  the recommended sampler, with guidance 2 and without guidance (1).
- diffusers: the `train_unconditional` example's recipe (UNet2DModel + DDPMScheduler with 1000
  linear-beta steps, epsilon MSE, AdamW, warm-up 500, EMAModel with power 3/4) made class-
  conditional through UNet2DModel's class embedding, at a width matched to ours (+-10%
  parameters), lr 1e-3 (the example's 1e-4 is for 10x larger models and long runs), sampled as
  its DDPMPipeline does: 1000 ancestral DDPM steps.
- lucidrains' denoising-diffusion-pytorch is not run: installing it would replace the pinned
  torch 2.13.0 (pip's dry run pulls torch 2.14 and CUDA wheels).

Throughput: training images/s (forward + backward + AdamW step) of our UNet and of a
UNet2DModel with a parameter count within 10% of it, same batch, side by side in one process.
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import time
from datetime import date

import torch
import torch.nn.functional as F

from diffusionforge.data.builtin import load_digits
from diffusionforge.eval import extract_features, fid, kid, train_classifier
from diffusionforge.pipelines.generate import load_pipeline
from diffusionforge.train.builders import build_formulation, build_model
from diffusionforge.train.config import apply_overrides, load_preset
from diffusionforge.train.trainer import Trainer


def diffusers_unet(target_params: int, num_classes: int, res: int = 8):
    """UNet2DModel of the train_unconditional layout, narrowed to within 10% of target_params:
    the most group-norm groups (4, 2, then 1) that allow it, then the closest count."""
    from diffusers import UNet2DModel

    for groups in (4, 2, 1):
        best = None
        for w in range(groups * 2, 97, groups):
            m = UNet2DModel(
                sample_size=res,
                in_channels=1,
                out_channels=1,
                layers_per_block=1,
                block_out_channels=(w, 2 * w, 2 * w),
                down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
                num_class_embeds=num_classes,
                norm_num_groups=groups,
            )
            n = sum(p.numel() for p in m.parameters())
            if best is None or abs(n - target_params) < abs(best[1] - target_params):
                best = (m, n, f"{w}, {groups} groups")
            if n > 1.2 * target_params:
                break
        if abs(best[1] - target_params) <= 0.1 * target_params:
            return best
    return best


def ours_params() -> int:
    cfg = apply_overrides(load_preset("digits"), ["model.num_classes=10"])
    return sum(p.numel() for p in build_model(cfg, (1, 8, 8)).parameters())


def train_diffusers(images, labels, budget: float, seed: int = 0):
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    torch.manual_seed(seed)
    model, n_params, width = diffusers_unet(ours_params(), 10)
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-6)
    ema = EMAModel(model.parameters(), decay=0.9999, use_ema_warmup=True, power=0.75)
    g = torch.Generator().manual_seed(seed)
    step, t0, batch = 0, time.monotonic(), 128
    model.train()
    while time.monotonic() - t0 < budget:
        for group in opt.param_groups:
            group["lr"] = 1e-3 * min(1.0, (step + 1) / 500)
        idx = torch.randint(0, len(images), (batch,), generator=g)
        x0, y = images[idx], labels[idx]
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, 1000, (batch,), generator=g)
        pred = model(sched.add_noise(x0, noise, t), t, class_labels=y).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema.step(model.parameters())
        step += 1
    ema.copy_to(model.parameters())
    return model.eval(), sched, step, n_params, width


@torch.no_grad()
def sample_diffusers(model, sched, labels, seed: int = 0):
    """DDPMPipeline's way: 1000 ancestral steps from pure noise, clipped x0 (its default)."""
    sched = copy.deepcopy(sched)
    sched.set_timesteps(1000)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((len(labels), 1, 8, 8), generator=g)
    for t in sched.timesteps:
        eps = model(x, t, class_labels=labels).sample
        x = sched.step(eps, t, x, generator=g).prev_sample
    return x.clamp(-1, 1)


def score(clf, real_feat, x, labels) -> dict:
    feats = extract_features(clf, x).double().numpy()
    pred = torch.cat([clf.predict(x[i : i + 500]) for i in range(0, len(x), 500)])
    return {
        "fid": fid(real_feat, feats),
        "kid": kid(real_feat, feats)[0],
        "as_requested": (pred == labels).double().mean().item(),
    }


def quality(budget: float, run_dir: str) -> None:
    real = load_digits()
    clf = train_classifier(real.images, real.labels, num_classes=10, seed=0)
    print(f"classifier held-out accuracy {clf.val_accuracy:.4f}")
    real_feat = extract_features(clf, real.images).double().numpy()
    labels = torch.arange(10).repeat_interleave(100)
    rows = []

    cfg = load_preset("digits")
    cfg.train.progress = False
    t0 = time.monotonic()
    result = Trainer(cfg, run_dir, max_time=f"{budget}s", log=lambda m: None).fit()
    train_s = time.monotonic() - t0
    pipe = load_pipeline(result.checkpoint)
    for g in (2.0, 1.0):
        t1 = time.monotonic()
        x = torch.cat(
            [
                pipe.generate_images(
                    list(range(i, i + 250)), labels=labels[i : i + 250], guidance=g, nfe=16
                )
                for i in range(0, 1000, 250)
            ]
        )
        rows.append(
            (f"ours, guidance {g:g}, NFE 16", result.step, train_s, time.monotonic() - t1)
            + (score(clf, real_feat, x, labels),)
        )

    t0 = time.monotonic()
    model, sched, steps, n_params, width = train_diffusers(real.images, real.labels, budget)
    train_s = time.monotonic() - t0
    t1 = time.monotonic()
    x = torch.cat([sample_diffusers(model, sched, labels[i : i + 500], i) for i in (0, 500)])
    rows.append(
        (f"diffusers UNet2DModel ({n_params:,} params, width {width}), DDPM 1000", steps)
        + (train_s, time.monotonic() - t1, score(clf, real_feat, x, labels))
    )
    print(f"\n{date.today()}, {platform.processor() or platform.machine()}, 1 torch thread")
    print("| contender | steps | train s | sample s (1000) | FID | KID x1e3 | as requested |")
    print("|---|---|---|---|---|---|---|")
    for name, steps, tr, sa, m in rows:
        print(
            f"| {name} | {steps} | {tr:.0f} | {sa:.0f} | {m['fid']:.2f} | "
            f"{1e3 * m['kid']:.2f} | {m['as_requested']:.3f} |"
        )


def throughput(batch: int, seconds: float) -> None:
    cfg = apply_overrides(load_preset("digits"), ["model.num_classes=10"])
    ours = build_model(cfg, (1, 8, 8))
    form = build_formulation(cfg)
    theirs, n_theirs, width = diffusers_unet(ours_params(), 10)
    x = load_digits().images[:batch]
    y = torch.arange(batch) % 10
    n_ours = sum(p.numel() for p in ours.parameters())

    def ours_step(opt):
        form.loss(ours, x, y).mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def theirs_step(opt):
        t = torch.randint(0, 1000, (batch,))
        F.mse_loss(theirs(x, t, class_labels=y).sample, x).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    results = {}
    for name, net, fn in (("ours", ours, ours_step), ("diffusers", theirs, theirs_step)):
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
        for _ in range(3):
            fn(opt)
        n, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < seconds:
            fn(opt)
            n += 1
        results[name] = n * batch / (time.monotonic() - t0)
    print(
        f"\n{date.today()}, {platform.processor() or platform.machine()}, 1 torch thread, "
        f"batch {batch}, 8x8x1, forward + backward + AdamW"
    )
    print("| network | parameters | train images/s |")
    print("|---|---|---|")
    print(f"| ours: UNet 'tiny' (digits preset) | {n_ours:,} | {results['ours']:.0f} |")
    print(f"| diffusers UNet2DModel, width {width} | {n_theirs:,} | {results['diffusers']:.0f} |")
    print(
        f"ratio ours / diffusers: {results['ours'] / results['diffusers']:.2f}x "
        f"(parameter ratio {n_theirs / n_ours:.2f})"
    )
    assert math.isfinite(results["ours"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=600.0, help="training seconds per contender")
    ap.add_argument("--run-dir", default="runs/bench-digits-ours")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=20.0, help="throughput timing per network")
    ap.add_argument("--throughput-only", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    throughput(args.batch, args.seconds)
    if not args.throughput_only:
        quality(args.budget, args.run_dir)


if __name__ == "__main__":
    main()
