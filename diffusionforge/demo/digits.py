"""The demo's image section: the bundled digits model, one row per class."""

from __future__ import annotations

import time
from pathlib import Path

from diffusionforge.assets import bundled_path
from diffusionforge.demo.section import Section
from diffusionforge.errors import DataError
from diffusionforge.modalities import build_dataset
from diffusionforge.pipelines.pipeline import load_pipeline
from diffusionforge.plot import image_panels, save_png
from diffusionforge.train.previews import real_examples

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
    # "fitted" when the checkpoint has a schedule fitted for this NFE and guidance
    ran = pipe.plan(nfe, guidance=DIGITS_GUIDANCE)
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
            f"({nfe} NFE, {ran.sampler} + {ran.schedule} schedule, classifier-free guidance "
            f"{DIGITS_GUIDANCE:g})",
            "more: diffusionforge sample " + str(pipe.checkpoint.path) + " --class 7 --out 7.png",
        ],
        files=[png],
    )
