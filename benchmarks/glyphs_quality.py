"""Issue 4's glyphs32 preset scored: does a held-out classifier read samples as the asked glyph?

A SmallCNN (eval/features.py cached_classifier, width 16, 12 epochs: the setting its docstring
measured for glyphs) is trained on 80% of the ~24.5k real 32x32 glyphs (62 classes) and scored
on the other 20%. Then `--per-class` samples of every class are drawn from the checkpoint at
each (NFE, guidance) and classified. Beside the fraction labelled as requested: FID and KID
against all real glyphs in the classifier's features, and two rows of real glyphs in place of
samples (the same number per class drawn from the reference, and the held-out 20% against the
other 80%) so that a reader sees what the scorer gives real data. Some classes look alike in
many typefaces (l / I / 1, O / 0 / o), so the classifier's ceiling is below 100%; the per-class
accuracy on held-out real glyphs is printed for the classes the samples miss most.

    python benchmarks/glyphs_quality.py --checkpoint runs/glyphs32 --per-class 20
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from diffusionforge.data.builtin import GLYPH_CHARS, cache_dir, load_glyphs
from diffusionforge.eval import cached_classifier, extract_features, fid, kid
from diffusionforge.pipelines.pipeline import load_pipeline

CLASSIFIER = {"width": 16, "epochs": 12, "seed": 0}


def predict(clf, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([clf.predict(x[i : i + 500]) for i in range(0, len(x), 500)])


def metrics(clf, ref_feat, x: torch.Tensor, labels: torch.Tensor) -> tuple[dict, torch.Tensor]:
    ok = predict(clf, x) == labels
    feats = extract_features(clf, x).double().numpy()
    m = {"req": ok.double().mean().item(), "fid": fid(ref_feat, feats)}
    m["kid"] = kid(ref_feat, feats)[0]
    return m, ok


def save_grid(x: torch.Tensor, labels: torch.Tensor, path: Path, per_class: int = 4) -> None:
    """62 classes as 62 columns x per_class rows of 32x32 glyphs, for looking at."""
    from PIL import Image

    cols = [x[labels == c][:per_class] for c in range(int(labels.max()) + 1)]
    grid = torch.stack(cols, 1)  # (per_class, classes, 1, 32, 32)
    k, c = grid.shape[:2]
    img = grid[:, :, 0].permute(0, 2, 1, 3).reshape(k * 32, c * 32)
    Image.fromarray(((img + 1) * 127.5).clamp(0, 255).round().byte().numpy()).save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="runs/glyphs32", help="checkpoint or run folder")
    ap.add_argument("--nfe", type=int, nargs="+", default=[16])
    ap.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0])
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1000, help="first per-image seed")
    ap.add_argument("--out", default=None, help="grid PNGs (default: the run's eval folder)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sampler", default=None, help="sampler (default: recommended for the NFE)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    real = load_glyphs()
    t0 = time.process_time()
    clf = cached_classifier(real.images, real.labels, cache_dir() / "classifiers", **CLASSIFIER)
    print(
        f"classifier: held-out accuracy {clf.val_accuracy:.4f} on 20% of {len(real.images)} "
        f"real glyphs ({time.process_time() - t0:.0f} CPU-s, cached)"
    )
    ref_feat = extract_features(clf, real.images).double().numpy()
    pipe = load_pipeline(args.checkpoint)
    out = Path(args.out) if args.out else pipe.checkpoint.path.parent.parent / "eval"
    out.mkdir(parents=True, exist_ok=True)
    print(f"model: {pipe.checkpoint.path} step {pipe.checkpoint.step} ({pipe.weights} weights)")
    print(f"machine: {platform.processor() or platform.machine()}, torch threads {args.threads}")
    classes = pipe.num_classes
    labels = torch.arange(classes).repeat_interleave(args.per_class)
    print("| NFE | guidance | as requested | worst classes | FID | KID x1e3 | CPU s / image |")
    print("|---|---|---|---|---|---|---|")
    for nfe in args.nfe:
        for g in args.guidance:
            c0, chunks = time.process_time(), []
            for i in range(0, len(labels), 250):  # batches for speed; seeds stay per image
                lab = labels[i : i + 250]
                seeds = list(range(args.seed + i, args.seed + i + len(lab)))
                chunks.append(
                    pipe.generate_images(
                        seeds, labels=lab, guidance=g, nfe=nfe, sampler=args.sampler
                    )
                )
            x = torch.cat(chunks).float().clamp(-1, 1)
            cpu = (time.process_time() - c0) / len(x)
            m, ok = metrics(clf, ref_feat, x, labels)
            per_class = torch.stack([ok[labels == c].double().mean() for c in range(classes)])
            worst = per_class.argsort()[:5].tolist()
            names = ", ".join(f"{GLYPH_CHARS[c]} {per_class[c]:.2f}" for c in worst)
            print(
                f"| {nfe} | {g:g} | {m['req']:.3f} | {names} | {m['fid']:.2f} | "
                f"{1e3 * m['kid']:.2f} | {1e3 * cpu:.0f} ms |",
                flush=True,
            )
            save_grid(x, labels, out / f"glyphs-nfe{nfe}-g{g:g}.png")
    # Floors: real glyphs in place of samples.
    g = torch.Generator().manual_seed(1)
    idx = torch.cat(
        [
            torch.nonzero(real.labels == c)[:, 0][
                torch.randperm(int((real.labels == c).sum()), generator=g)[: args.per_class]
            ]
            for c in range(classes)
        ]
    )
    m, _ = metrics(clf, ref_feat, real.images[idx], real.labels[idx])
    print(
        f"| floor: {len(idx)} real glyphs from the reference | - | {m['req']:.3f} | - | "
        f"{m['fid']:.2f} | {1e3 * m['kid']:.2f} | - |"
    )
    perm = torch.randperm(len(real.images), generator=torch.Generator().manual_seed(0))
    val, tr = perm[: int(0.2 * len(perm))], perm[int(0.2 * len(perm)) :]  # train_classifier's
    tr_feat = extract_features(clf, real.images[tr]).double().numpy()
    m, ok = metrics(clf, tr_feat, real.images[val], real.labels[val])
    print(
        f"| floor: {len(val)} held-out real glyphs vs the other {len(tr)} | - | {m['req']:.3f} "
        f"| - | {m['fid']:.2f} | {1e3 * m['kid']:.2f} | - |"
    )
    lab = real.labels[val]
    per_class = torch.stack([ok[lab == c].double().mean() for c in range(classes)])
    worst = per_class.argsort()[:8].tolist()
    print("held-out real glyphs, hardest classes for the classifier: ", end="")
    print(", ".join(f"{GLYPH_CHARS[c]} {per_class[c]:.2f}" for c in worst))


if __name__ == "__main__":
    main()
