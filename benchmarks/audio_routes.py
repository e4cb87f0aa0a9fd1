"""Waveform vs spectrogram diffusion on the built-in spoken digits, at equal training CPU time.

For each route (preset `spoken-digits` = log-mel UNet + Griffin-Lim, `spoken-digits-wave` =
DiffWave on samples) train with the same `--max-cpu-time` budget on one thread, then draw
`--per-class` clips per digit with guidance and score them with the digit classifier of
eval/audio.py (trained on the real clips; its held-out accuracy is printed): accuracy of the
requested digit, Fréchet distance in its feature space, memorized fraction, and the real-time
factor (CPU seconds per second of audio, network and decoding, one thread). `--nfe` takes a
list for the quality-vs-NFE table. `--checkpoint` scores existing checkpoints instead of
training (e.g. the bundled model: `--checkpoint diffusionforge/assets/audio-digits`, or
`--checkpoint "mel 4 min=runs/spoken-digits/checkpoints/step-000000500"`).

    python benchmarks/audio_routes.py --max-cpu-time 4m --nfe 16
    python benchmarks/audio_routes.py --checkpoint diffusionforge/assets/audio-digits \
        --nfe 2,4,8,16,32 --per-class 20
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from diffusionforge.data.spoken_digits import load_spoken_digits
from diffusionforge.eval.audio import audio_classifier, audio_metrics
from diffusionforge.modalities import make_trainer
from diffusionforge.pipelines.audio import load_audio_pipeline
from diffusionforge.train.config import apply_overrides, load_preset

ROUTES = {"mel": "spoken-digits", "wave": "spoken-digits-wave"}


def train_route(route: str, budget: str, out: Path) -> tuple[Path, dict]:
    cfg = apply_overrides(
        load_preset(ROUTES[route]),
        ["train.sample_every=0", "train.ckpt_every=0", "train.tensorboard=false"],
    )
    t0 = time.process_time()
    result = make_trainer(cfg, out / route, max_cpu_time=budget, log=lambda m: None).fit()
    info = {"steps": result.step, "train_cpu_s": time.process_time() - t0, "loss": result.loss}
    return result.checkpoint, info


def score(checkpoint, classifier, real, train, nfe: int, per_class: int, guidance: float):
    pipe = load_audio_pipeline(checkpoint)
    k = max(pipe.num_classes, 0)
    requested = torch.arange(k).repeat_interleave(per_class) if k else None
    n = len(requested) if requested is not None else 10 * per_class
    waves, cpu = [], {"network": 0.0, "decode": 0.0}
    for i in range(0, n, 50):  # batches of 50 bound memory; seeds make them batch-invariant
        seeds = list(range(i, min(n, i + 50)))
        lab = requested[i : i + 50] if requested is not None else None
        waves.append(pipe.generate(seeds, labels=lab, guidance=guidance, nfe=nfe))
        for key in cpu:
            cpu[key] += pipe.timings[key]
    waves = torch.cat(waves)
    m = audio_metrics(classifier, waves, requested, real, pipe.rate, train=train)
    audio_s = n * pipe.length / pipe.rate
    return {
        "route": pipe.route,
        "nfe": nfe,
        **m.as_dict(),
        "rtf_cpu": (cpu["network"] + cpu["decode"]) / audio_s,
        "rtf_network": cpu["network"] / audio_s,
    }, waves


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--routes", default="mel,wave")
    p.add_argument("--max-cpu-time", default="4m", help="training budget per route")
    p.add_argument(
        "--checkpoint", action="append", help="[NAME=]PATH: score these instead of training"
    )
    p.add_argument("--nfe", default="16")
    p.add_argument("--per-class", type=int, default=10)
    p.add_argument("--guidance", type=float, default=2.0)
    p.add_argument("--out", default="runs/bench-audio")
    args = p.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    waves, labels, _ = load_spoken_digits(8000)
    classifier = audio_classifier(waves, labels, 8000)
    print(f"classifier held-out accuracy on real clips: {classifier.val_accuracy:.3f}")
    g = torch.Generator().manual_seed(1)
    perm = torch.randperm(len(waves), generator=g)
    real = waves[perm[:1000]]  # the reference set of the Fréchet distance
    # The floor: as many real clips as samples, outside the reference. With ~100 clips in the
    # classifier's 128-d feature space the Fréchet distance is dominated by estimation bias, so
    # only differences to this row mean something.
    n_floor = 10 * args.per_class
    held = perm[1000 : 1000 + n_floor]
    floor = audio_metrics(classifier, waves[held], labels[held], real, 8000)
    rows = [{"model": "real clips (floor)", "route": "-", "nfe": "-", **floor.as_dict()}]
    rows[0].update(rtf_cpu=0.0, rtf_network=0.0)
    print(json.dumps(rows[0]), flush=True)
    checkpoints = {}
    if args.checkpoint:  # NAME=PATH or PATH; NAME may say the training CPU time it had
        for item in args.checkpoint:
            name, _, path = item.rpartition("=")
            checkpoints[name or path] = (path, {})
    else:
        for route in args.routes.split(","):
            checkpoints[route] = train_route(route, args.max_cpu_time, out)
            print(f"trained {route}: {checkpoints[route][1]}", flush=True)
    for name, (ckpt, info) in checkpoints.items():
        for nfe in [int(v) for v in args.nfe.split(",")]:
            row, _ = score(ckpt, classifier, real, waves, nfe, args.per_class, args.guidance)
            rows.append({"model": name, **info, **row})
            print(json.dumps(rows[-1]), flush=True)
    print("\n| model | route | train steps | NFE | accuracy | Fréchet | memorized | RTF (CPU) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
        print(
            f"| {r['model']} | {r['route']} | {r.get('steps', '-')} | {r['nfe']} | {acc} | "
            f"{r['frechet']:.2f} | {r['memorized']:.3f} | {r['rtf_cpu']:.3f} |"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
