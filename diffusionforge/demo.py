"""`diffusionforge demo`: the main job on built-in defaults, one section per modality.

A section is a function `(out_dir, quick) -> Section` registered in `SECTIONS`; `run_demo` runs
them in order and prints one screen: what was trained, how good it is, where the pictures are.
Later modalities (text, audio) add their own section to the dict.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from diffusionforge.assets import bundled_path
from diffusionforge.data.toy import make_toy
from diffusionforge.demo_audio import spoken_digits
from diffusionforge.demo_editing import editing
from diffusionforge.demo_t2i import t2i
from diffusionforge.demo_text import text
from diffusionforge.errors import DataError
from diffusionforge.eval.swd import sliced_wasserstein
from diffusionforge.pipelines.generate import load_pipeline
from diffusionforge.plot import image_panels, save_png, scatter_panels
from diffusionforge.train.config import apply_overrides, load_preset
from diffusionforge.train.datasets import build_dataset
from diffusionforge.train.previews import real_examples
from diffusionforge.train.trainer import Trainer


@dataclass
class Section:
    title: str
    lines: list[str]  # summary lines, each under ~90 characters
    files: list[Path] = field(default_factory=list)  # pictures and folders worth opening


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
    result = Trainer(cfg, run_dir, log=lambda m: None).fit()
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
    noise = sliced_wasserstein(torch.randn(n, 2) * fresh.std(0) + fresh.mean(0), fresh)
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


# The bundled digits model's recommended settings (benchmarks/digits_quality.py, BENCHMARKS.md).
DIGITS_NFE, DIGITS_GUIDANCE = 16, 2.0


def digits(out: Path, quick: bool) -> Section:
    """Sample the bundled class-conditional digits model: one guided row per class."""
    import torch

    torch.set_num_threads(1)  # a 0.3M-parameter network: one thread is fastest
    pipe = load_pipeline(bundled_path("digits"))
    per, nfe = 10, (4 if quick else DIGITS_NFE)
    labels = torch.arange(pipe.num_classes).repeat_interleave(per)
    t0 = time.monotonic()
    samples = pipe.generate_images(
        list(range(len(labels))), labels=labels, guidance=DIGITS_GUIDANCE, nfe=nfe
    )
    sample_s = time.monotonic() - t0
    panels = [(f"bundled model, guidance {DIGITS_GUIDANCE:g}, {nfe} NFE", samples)]
    try:  # the real digits beside them (scikit-learn is in the dev extra)
        real = real_examples(build_dataset(pipe.cfg), labels, 0)
        panels.insert(0, ("real digits", real))
    except DataError:
        pass
    png = save_png(image_panels(panels, cols=per), out / "digits.png")
    params = sum(p.numel() for p in pipe.net.parameters())
    return Section(
        title="images: class-conditional digits (bundled model)",
        lines=[
            f"UNet with {params:,} parameters, trained {pipe.checkpoint.step} steps on "
            "scikit-learn's 1,797 8x8 digits (EMA weights)",
            f"sampled {len(labels)} digits, one row per class 0-9, in {sample_s:.1f}s "
            f"({nfe} NFE, classifier-free guidance {DIGITS_GUIDANCE:g})",
            "more: diffusionforge sample " + str(pipe.checkpoint.path) + " --class 7 --out 7.png",
        ],
        files=[png],
    )


SECTIONS = {
    "toy2d": toy2d,
    "digits": digits,
    "text": text,
    "spoken-digits": spoken_digits,
    "editing": editing,
    "t2i": t2i,
}


def run_demo(out: Path, *, sections: list[str], quick: bool = False) -> int:
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    results = []
    for name in sections:
        print(f"[demo] {name}: running...", flush=True)
        results.append(SECTIONS[name](out, quick))
    bar = "=" * 78
    print(bar)
    print(f"diffusionforge demo: {len(results)} section(s) in {time.monotonic() - start:.0f}s")
    for r in results:
        print(f"\n## {r.title}")
        for line in r.lines:
            print(f"   {line}")
        for f in r.files:
            print(f"   -> {f}")
    print(
        "\nnext: diffusionforge info <checkpoint> | diffusionforge sample <checkpoint> --out s.png"
    )
    print(bar)
    return 0
