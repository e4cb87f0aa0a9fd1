"""Issue 4's bar for digits: does a held-out classifier read guided samples as the asked class?

A SmallCNN (eval/features.py train_classifier) is trained on 80% of the 1,797 real digits and
must be >= 97% accurate on the other 20%. Then, for each (NFE, guidance), `--per-class` samples
of every class are drawn from the checkpoint (default: the bundled model) and classified; the
bar is >= 90% labelled as the requested class. FID and KID against all real digits, in the same
classifier's features, are printed beside it.

    python benchmarks/digits_quality.py               # bundled model, NFE 16, guidance 1,2,3
    python benchmarks/digits_quality.py --checkpoint runs/digits --nfe 8 16 32 --guidance 2
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from diffusionforge.assets import bundled_path
from diffusionforge.data.builtin import load_digits
from diffusionforge.eval import extract_features, fid, kid, train_classifier
from diffusionforge.pipelines.pipeline import load_pipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint or run folder (default bundled)")
    ap.add_argument("--nfe", type=int, nargs="+", default=[16])
    ap.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0, 3.0])
    ap.add_argument("--sampler", default=None)
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1000, help="first per-image seed")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    real = load_digits()
    t0 = time.monotonic()
    clf = train_classifier(real.images, real.labels, num_classes=10, seed=0)
    print(
        f"classifier: held-out accuracy {clf.val_accuracy:.4f} on 20% of the real digits "
        f"(trained in {time.monotonic() - t0:.0f}s)"
    )
    real_feat = extract_features(clf, real.images).double().numpy()

    pipe = load_pipeline(args.checkpoint or bundled_path("digits"))
    print(f"model: {pipe.checkpoint.path} step {pipe.checkpoint.step} ({pipe.weights} weights)")
    print(f"machine: {platform.processor() or platform.machine()}, torch threads {args.threads}")
    labels = torch.arange(10).repeat_interleave(args.per_class)
    print("| NFE | guidance | sampler | as requested | worst class | FID | KID x1e3 | s/image |")
    print("|---|---|---|---|---|---|---|---|")
    for nfe in args.nfe:
        for g in args.guidance:
            t0 = time.monotonic()
            chunks = []
            for i in range(0, len(labels), 250):  # batches for speed; seeds stay per image
                lab = labels[i : i + 250]
                seeds = list(range(args.seed + i, args.seed + i + len(lab)))
                chunks.append(
                    pipe.generate_images(
                        seeds, labels=lab, guidance=g, nfe=nfe, sampler=args.sampler
                    )
                )
            x = torch.cat(chunks)
            per_image = (time.monotonic() - t0) / len(x)
            pred = torch.cat([clf.predict(x[i : i + 500]) for i in range(0, len(x), 500)])
            ok = pred == labels
            per_class = torch.stack([ok[labels == c].double().mean() for c in range(10)])
            worst = int(per_class.argmin())
            feats = extract_features(clf, x).double().numpy()
            k_mean, _ = kid(real_feat, feats)
            print(
                f"| {nfe} | {g:g} | {args.sampler or 'recommended'} | "
                f"{ok.double().mean():.3f} | {worst}: {per_class[worst]:.2f} | "
                f"{fid(real_feat, feats):.2f} | {1e3 * k_mean:.2f} | {per_image * 1e3:.1f} ms |"
            )


if __name__ == "__main__":
    main()
