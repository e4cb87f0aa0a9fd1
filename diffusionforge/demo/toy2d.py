"""The demo's 2-D toy section: train an MLP denoiser on the swiss roll and sample it."""

from __future__ import annotations

import time
from pathlib import Path

from diffusionforge.data.toy import make_toy
from diffusionforge.demo.section import Section
from diffusionforge.eval.swd import sliced_wasserstein
from diffusionforge.modalities import make_trainer
from diffusionforge.pipelines.pipeline import load_pipeline
from diffusionforge.plot import save_png, scatter_panels
from diffusionforge.train.config import apply_overrides, load_preset

DIGITS_NFE, DIGITS_GUIDANCE = 16, 2.0


def toy2d(out: Path, quick: bool) -> Section:
    """Train an MLP denoiser on the 2-D swiss roll, sample it, plot data vs samples."""
    import torch

    preset = "swissroll"
    cfg = load_preset(preset)
    steps = 60 if quick else cfg.train.steps
    cfg = apply_overrides(
        cfg,
        [
            f"train.steps={steps}",
            f"train.ckpt_every={steps}",
            "train.sample_every=0",
            "train.tensorboard=false",
            f"optim.warmup_steps={5 if quick else 100}",
        ],
    )
    run_dir = out / "toy2d"
    t0 = time.monotonic()
    result = make_trainer(cfg, run_dir, log=lambda m: None).fit()
    train_s = time.monotonic() - t0

    pipe = load_pipeline(result.checkpoint)
    n = 1000 if quick else 5000
    midway: dict = {}

    def keep_midway(info: dict) -> None:  # the sampler state as sigma passes 0.3
        if "x" not in midway and float(info["sigma"]) <= 0.3:
            midway.update(x=info["x"].cpu(), sigma=float(info["sigma"]))

    t1 = time.monotonic()
    samples = pipe.generate(n, seed=1, callback=keep_midway)
    sample_s = time.monotonic() - t1
    fresh = make_toy(preset, n, seed=12345)  # data the model never saw
    other = make_toy(preset, n, seed=54321)
    swd = sliced_wasserstein(samples, fresh)
    floor = sliced_wasserstein(other, fresh)  # two honest draws of the data differ this much
    # its own generator: the global one's state after training varies from run to run
    gauss = torch.randn(n, 2, generator=torch.Generator().manual_seed(777))
    noise = sliced_wasserstein(gauss * fresh.std(0) + fresh.mean(0), fresh)
    panels = [("data (swiss roll)", fresh)]
    if midway:
        panels.append((f"while sampling, sigma={midway['sigma']:.2f}", midway["x"]))
    panels.append((f"samples, {pipe.cfg.sample.nfe} NFE", samples))
    png = save_png(scatter_panels(panels), out / "toy2d.png")
    params = sum(p.numel() for p in pipe.net.parameters())
    return Section(
        title="2-D toy: swiss roll",
        lines=[
            f"trained an MLP denoiser ({params:,} parameters, EDM) for {result.step} steps "
            f"in {train_s:.0f}s; final loss {result.loss:.3f}",
            f"sampled {n} points in {sample_s:.1f}s ({pipe.cfg.sample.nfe} network evaluations "
            "each, EMA weights)",
            f"sliced Wasserstein to fresh data: {swd:.3f}   (data vs data: {floor:.3f}, "
            f"Gaussian noise: {noise:.3f})",
        ],
        files=[png, result.checkpoint],
    )
