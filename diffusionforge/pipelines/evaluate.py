"""`diffusionforge eval`: an image checkpoint against its training set.

Writes into one folder: `metrics.json` (FID, KID, precision/recall of Kynkäänniemi et al. 2019,
memorization fraction), `sweep.csv` + `sweep.png` (FID per sampler and NFE), `samples.png`, and
`memorization.png` (the generated samples whose nearest training image is closest relative to
the second nearest, side by side; Carlini et al. 2023's criterion d1 < alpha * d2).

Features: Inception-v3 when a weights file is given, otherwise a small classifier trained on the
labelled training set (eval/features.py), cached under `cache_dir()/classifiers` so repeated
evaluations share one extractor and their numbers stay comparable.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torch import Tensor

from diffusionforge.data.builtin import cache_dir
from diffusionforge.eval import (
    InceptionFeatures,
    cached_classifier,
    extract_features,
    fid,
    kid,
    memorization,
    precision_recall,
    save_worst_pairs,
)
from diffusionforge.pipelines.pipeline import Pipeline
from diffusionforge.plot import COLOURS, image_grid, label_font, save_png


@dataclass
class EvalSettings:
    n: int = 1000  # samples for the headline metrics and the memorization report
    nfe: int = 16
    sampler: str | None = None
    guidance: float = 1.0
    seed: int = 0
    # "recommended": the recommended pair for each NFE (what sample/generate run by default);
    # a named sampler runs its own default schedule (core.plan.default_schedule).
    sweep_samplers: list[str] = field(
        default_factory=lambda: ["recommended", "euler", "heun", "dpmpp_2m"]
    )
    sweep_nfe: list[int] = field(default_factory=lambda: [4, 8, 16, 32])
    sweep_n: int = 500
    alpha: float = 1 / 3
    classifier_epochs: int = 30
    device: str = "cpu"  # where the network draws (features and metrics: the cpu)


def extractor_for(train_images: Tensor, labels: Tensor | None, inception: str | None, log):

    if inception:
        return InceptionFeatures(inception)
    t0 = time.monotonic()
    clf = cached_classifier(train_images, labels, cache_dir() / "classifiers")
    log(
        f"features: classifier trained on the data, held-out accuracy {clf.val_accuracy:.3f} "
        f"({time.monotonic() - t0:.0f}s, cached)"
    )
    return clf


def fid_label(features: str) -> str:
    """The FID's name in logs: plain FID only on Inception-v3 features; on the data's own
    classifier features the number is not comparable with published FIDs, and says so."""
    return "FID" if features == "inception-v3" else "FID[classifier features, not Inception]"


def draw_batched(pipe: Pipeline, n: int, s: EvalSettings, nfe: int, sampler: str | None) -> Tensor:
    """n samples, classes in turn when conditional; per-image seeds, batches of 250."""
    # deferred: only evaluation shows a bar (a terminal only: disable=None is off in a log file)
    from tqdm import tqdm

    labels = torch.arange(n) % pipe.num_classes if pipe.num_classes else None
    out = []
    what = f"{sampler or 'recommended'} NFE {nfe}"
    for i in tqdm(range(0, n, 250), desc=what, unit="batch", leave=False, disable=None):
        lab = None if labels is None else labels[i : i + 250]
        seeds = list(range(s.seed + i, s.seed + min(n, i + 250)))
        out.append(
            pipe.generate_images(
                seeds,
                labels=lab,
                guidance=s.guidance if lab is not None else 1.0,
                nfe=nfe,
                sampler=sampler,
                device=s.device,
            )
            .float()
            .cpu()
        )
    return torch.cat(out)


def evaluate(pipe: Pipeline, train: Tensor, extractor, s: EvalSettings, out: Path, log) -> dict:

    out.mkdir(parents=True, exist_ok=True)
    real = extract_features(extractor, train).double().numpy()
    t0 = time.monotonic()
    # the schedule run: "fitted" when the checkpoint has one for this NFE (fit-schedule)
    scale = s.guidance if pipe.num_classes else 1.0
    plan = pipe.plan(s.nfe, s.sampler, guidance=scale) if hasattr(pipe, "plan") else None
    ran = f"{plan.sampler} + {plan.schedule}" if plan else f"{s.sampler or 'recommended'} sampler"
    log(f"drawing {s.n} samples ({ran}, NFE {s.nfe})")
    x = draw_batched(pipe, s.n, s, s.nfe, s.sampler)
    sample_s = time.monotonic() - t0
    fake = extract_features(extractor, x).double().numpy()
    k_mean, k_std = kid(real, fake)
    prec, rec = precision_recall(real, fake)
    mem = memorization(x, train, alpha=s.alpha)
    save_worst_pairs(out / "memorization.png", x, train, mem)
    cols = pipe.num_classes if 0 < pipe.num_classes <= 16 else 10
    save_png(image_grid(x[: cols * 10], cols, value_range=(-1, 1)), out / "samples.png")
    metrics = {
        "checkpoint": str(pipe.checkpoint.path),
        "step": pipe.checkpoint.step,
        "features": getattr(extractor, "name", "features"),
        "samples": s.n,
        "nfe": s.nfe,
        "sampler": s.sampler or "recommended",
        "schedule": plan.schedule if plan else None,
        "guidance": s.guidance if pipe.num_classes else None,
        "fid": fid(real, fake),
        "kid": k_mean,
        "kid_std": k_std,
        "precision": prec,
        "recall": rec,
        "memorized_fraction": mem.fraction,
        "memorization_alpha": s.alpha,
        "seconds_per_sample": sample_s / s.n,
    }
    if pipe.num_classes and hasattr(extractor, "predict"):  # the classifier reads the class
        asked = torch.arange(s.n) % pipe.num_classes  # draw_batched's labels
        metrics["as_requested"] = float((extractor.predict(x) == asked).double().mean())
        log(f"as requested (the classifier reads the asked class): {metrics['as_requested']:.3f}")
    log(
        f"{fid_label(metrics['features'])} {metrics['fid']:.3f}  KID {k_mean:.5f} +- {k_std:.5f}  "
        f"precision {prec:.3f}  "
        f"recall {rec:.3f}  memorized {mem.fraction:.3%} (d1 < {s.alpha:.2f} d2)"
    )
    rows = []
    for sampler in s.sweep_samplers:
        for nfe in s.sweep_nfe:
            t0 = time.monotonic()
            y = draw_batched(pipe, s.sweep_n, s, nfe, None if sampler == "recommended" else sampler)
            secs = time.monotonic() - t0
            f = extract_features(extractor, y).double().numpy()
            rows.append(
                {
                    "sampler": sampler,
                    "nfe": nfe,
                    "fid": fid(real, f),
                    "kid": kid(real, f)[0],
                    "seconds_per_sample": secs / s.sweep_n,
                }
            )
            log(f"sweep {sampler:>10} NFE {nfe:>3}: {fid_label(metrics['features'])} "
                f"{rows[-1]['fid']:.3f}")  # fmt: skip
    if rows:
        with open(out / "sweep.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        label = fid_label(metrics["features"])
        save_png(
            sweep_plot(rows, f"{label} vs NFE ({metrics['features']})", label),
            out / "sweep.png",
        )
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def sweep_plot(rows: list[dict], title: str, ylabel: str = "FID", size=(640, 420)) -> Image.Image:
    """FID (log scale) against NFE (log2 scale), one line per sampler, with Pillow only;
    `ylabel` says which FID (fid_label: classifier-feature FIDs are not Inception FIDs)."""
    w, h = size
    left, right, top, bottom = 70, 150, 52, 50
    im = Image.new("RGB", size, "white")
    d, font = ImageDraw.Draw(im), label_font(13)
    nfes = sorted({r["nfe"] for r in rows})
    fids = [max(r["fid"], 1e-6) for r in rows if math.isfinite(r["fid"])]
    lo, hi = math.log10(min(fids)), math.log10(max(fids))
    if hi - lo < 1e-6:
        lo, hi = lo - 0.5, hi + 0.5
    xlo, xhi = math.log2(nfes[0]), math.log2(nfes[-1]) if len(nfes) > 1 else math.log2(nfes[0]) + 1

    def px(nfe: float, f: float) -> tuple[float, float]:
        x = left + (math.log2(nfe) - xlo) / (xhi - xlo) * (w - left - right)
        y = top + (hi - math.log10(max(f, 1e-6))) / (hi - lo) * (h - top - bottom)
        return x, y

    d.rectangle([left, top, w - right, h - bottom], outline=(120, 120, 120))
    d.text((left, 4), title, fill=(0, 0, 0), font=font)
    for nfe in nfes:
        x, _ = px(nfe, 10**lo)
        d.line([x, h - bottom, x, h - bottom + 5], fill=(0, 0, 0))
        d.text((x - 6, h - bottom + 8), str(nfe), fill=(0, 0, 0), font=font)
    d.text(((left + w - right) / 2 - 10, h - 20), "NFE", fill=(0, 0, 0), font=font)
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        _, y = px(nfes[0], 10**v)
        d.text((8, y - 7), f"{10**v:.3g}", fill=(0, 0, 0), font=font)
    d.text((8, top - 28), ylabel, fill=(0, 0, 0), font=font)
    for i, sampler in enumerate(dict.fromkeys(r["sampler"] for r in rows)):
        colour = COLOURS[i % len(COLOURS)] if i < len(COLOURS) else (255, 127, 14)
        pts = [px(r["nfe"], r["fid"]) for r in rows if r["sampler"] == sampler]
        if len(pts) > 1:
            d.line(pts, fill=colour, width=2)
        for x, y in pts:
            d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        d.text((w - right + 10, top + 18 * i), sampler, fill=colour, font=font)
    return im
