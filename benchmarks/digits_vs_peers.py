"""Our digits preset against diffusers' and lucidrains' recipes: same data, CPU budget, scorers.

    python benchmarks/digits_vs_peers.py --budget 600 --jobs 3   # issue 4's quality benchmark
    python benchmarks/digits_vs_peers.py --quality-only --seed 1  # another seed of each contender
    python benchmarks/digits_vs_peers.py --throughput-only       # images/s, ours vs UNet2DModel
    python benchmarks/digits_vs_peers.py --latency-only          # bundled digits, NFE 10, CPU
    python benchmarks/digits_vs_peers.py --export-diffusers runs/digits-diffusers --budget 300
        # train only the diffusers contender and save it as a diffusers folder (DDPMPipeline)

Quality per CPU-minute: each contender trains on scikit-learn's 1,797 8x8 digits (class-
conditional) for `--budget` seconds of *process CPU time* (time.process_time(), one torch
thread; fair on a shared machine where wall clock depends on the neighbours), then draws `--n`
samples (n/10 per class) its own recommended way. `--jobs 3` runs the three contenders as three
child processes of this script at once (each measures only its own CPU time) and scores their
samples here; `--jobs 1` runs them one after another in this process. Scorers, all against the
1,797 real digits:
- a classifier (eval/features.py, trained on 80% of the real digits, the other 20% held out):
  FID and KID in its 128-d features, and the fraction of samples it labels as requested;
- FID in raw pixel space (64-d): a second scorer that sees stroke intensity and noise, which a
  classifier is built to ignore;
- floor rows with real digits in place of samples: n digits drawn from the reference (what a
  perfect memoriser scores) and the held-out 20% against the other 80% (what fresh digits score),
  so a reader sees how small a difference the metrics can resolve.

Contenders (parameter counts matched to ours within 10%):
- ours: the `digits` preset (0.3M-parameter UNet, EDM, label dropout 0.1), periodic sample grids
  off, sampled at NFE 16 with the recommended sampler, with guidance 2 and without (1).
- diffusers: the `train_unconditional` example's recipe (UNet2DModel + DDPMScheduler with 1000
  linear-beta steps, epsilon MSE, AdamW, warm-up 500, EMAModel with power 3/4) made class-
  conditional through UNet2DModel's class embedding, lr 1e-3 (the example's 1e-4 is for 10x
  larger models and long runs), sampled as its DDPMPipeline does: 1000 ancestral DDPM steps.
- lucidrains: denoising-diffusion-pytorch's class-conditional module
  (`denoising_diffusion_pytorch.classifier_free_guidance`: Unet with `num_classes` and
  `cond_drop_prob` 0.5, GaussianDiffusion with its defaults: epsilon objective, cosine betas,
  1000 steps), narrowed to 8x8 (dim 10, dim_mults (1, 2, 4): 8 -> 4 -> 2 like ours), trained as
  its Trainer does (Adam betas (0.9, 0.99), grad-norm clip 1, ema_pytorch EMA 0.995 every 10
  steps) at batch 128 and lr 1e-3 (its README's 8e-5 is for 700k steps), sampled with DDIM
  `sampling_timesteps=250` as its README recommends, at its example's guidance `cond_scale=6`
  (rescaled_phi 0.7, its default); `--lucidrains-scales 6,1` adds unguided sampling
  (`cond_scale=1`: the module returns a bare tensor there, which its own sampler cannot unpack,
  so a one-line subclass pairs it).
  Installing it: `pip install --no-deps denoising-diffusion-pytorch ema-pytorch einops` (its
  declared torchvision / pytorch-fid would replace the pinned torch 2.13.0, and PyPI's
  torchvision does not import beside it). The package imports torchvision and pytorch_fid at
  module level only for its Trainer and FID helpers, which are not used here: `lucidrains()`
  puts empty stand-in modules for them into sys.modules before the import.

Throughput: training images/s (forward + backward + AdamW step) of our UNet and of a
UNet2DModel with a parameter count within 10% of it, same batch, side by side in one process.

Latency: seconds per image of the bundled digits model at NFE 10 (recommended sampler,
guidance 2), batch 1 and batch 100, wall clock and process CPU time; run it on an idle machine.
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from diffusionforge.assets import bundled_path
from diffusionforge.data.builtin import load_digits
from diffusionforge.eval import extract_features, fid, kid, train_classifier
from diffusionforge.modalities import make_trainer
from diffusionforge.pipelines.pipeline import load_pipeline
from diffusionforge.train.builders import build_formulation, build_model
from diffusionforge.train.config import apply_overrides, load_preset

CONTENDER_NAMES = ("ours", "diffusers", "lucidrains")
# --seed s trains each contender from seed s and samples with seeds from s * stride on, so
# seeds 0 and 1 share no sampling noise; seed 0 reproduces the first runs recorded.
SAMPLE_SEED_STRIDE = 100_000


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


def request_labels(n: int) -> torch.Tensor:
    return torch.arange(10).repeat_interleave(n // 10)  # (n,) n/10 of each class


def row(name: str, x, steps: int, train_cpu: float, sample_cpu: float, params: int) -> dict:
    x = x.float().clamp(-1, 1)
    return dict(
        name=name, x=x, steps=steps, train_cpu=train_cpu, sample_cpu=sample_cpu, params=params
    )


# --- ours ----------------------------------------------------------------------------------


def run_ours(images, labels, budget: float, n: int, run_dir: str, seed: int = 0) -> Iterator[dict]:
    cfg = load_preset("digits")
    cfg.train.seed = seed
    cfg.train.progress = False
    cfg.train.sample_every = 0  # the peers draw no grids while training either
    c0 = time.process_time()
    result = make_trainer(cfg, run_dir, max_cpu_time=f"{budget}s", log=lambda m: None).fit()
    train_cpu = time.process_time() - c0
    pipe = load_pipeline(result.checkpoint)
    params = sum(p.numel() for p in pipe.net.parameters())
    y, s0 = request_labels(n), SAMPLE_SEED_STRIDE * seed  # per-image sampling seeds s0 + i
    for g in (2.0, 1.0):
        c1 = time.process_time()
        x = torch.cat(
            [
                pipe.generate_images(
                    list(range(s0 + i, s0 + min(i + 250, n))),
                    labels=y[i : i + 250],
                    guidance=g,
                    nfe=16,
                )
                for i in range(0, n, 250)
            ]
        )
        name = f"ours, guidance {g:g}, NFE 16"
        yield row(name, x, result.step, train_cpu, time.process_time() - c1, params)


# --- diffusers -----------------------------------------------------------------------------


def train_diffusers(images, labels, budget: float, seed: int = 0):
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    torch.manual_seed(seed)
    model, n_params, width = diffusers_unet(ours_params(), 10)
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-6)
    ema = EMAModel(model.parameters(), decay=0.9999, use_ema_warmup=True, power=0.75)
    g = torch.Generator().manual_seed(seed)
    step, c0, batch = 0, time.process_time(), 128
    model.train()
    while time.process_time() - c0 < budget:
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
    train_cpu = time.process_time() - c0
    ema.copy_to(model.parameters())
    return model.eval(), sched, step, n_params, width, train_cpu


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


def run_diffusers(
    images, labels, budget: float, n: int, run_dir: str, seed: int = 0
) -> Iterator[dict]:
    model, sched, steps, params, width, train_cpu = train_diffusers(images, labels, budget, seed)
    y, c1, s0 = request_labels(n), time.process_time(), SAMPLE_SEED_STRIDE * seed
    x = torch.cat(
        [sample_diffusers(model, sched, y[i : i + 500], s0 + i) for i in range(0, n, 500)]
    )
    name = f"diffusers UNet2DModel (widths {width}), DDPM 1000"
    yield row(name, x, steps, train_cpu, time.process_time() - c1, params)


def export_diffusers(folder: str, budget: float, seed: int = 0) -> None:
    """The diffusers contender, trained for `budget` CPU-seconds, as a DDPMPipeline folder
    (safetensors) that `diffusionforge sample/info/eval` and diffusers itself both load."""
    from diffusers import DDPMPipeline

    real = load_digits()
    model, sched, steps, params, width, train_cpu = train_diffusers(
        real.images, real.labels, budget, seed
    )
    DDPMPipeline(unet=model, scheduler=sched).save_pretrained(folder)
    print(
        f"saved {folder}: UNet2DModel widths {width}, {params:,} parameters, {steps} steps, "
        f"{train_cpu:.0f} CPU-s"
    )


# --- lucidrains ----------------------------------------------------------------------------


def lucidrains():
    """denoising_diffusion_pytorch's class-conditional module, importable without torchvision.

    The package's __init__ imports its Trainer module, which does `from torchvision import
    transforms as T, utils` at module level (used only for image folders and sample grids;
    pytorch_fid is imported lazily, only for FID during training). Neither is used here, so
    when torchvision is absent an empty stand-in with those two attributes goes into
    sys.modules first."""
    import importlib.util

    if importlib.util.find_spec("torchvision") is None and "torchvision" not in sys.modules:
        tv = types.ModuleType("torchvision")
        tv.transforms = sys.modules["torchvision.transforms"] = types.ModuleType("transforms")
        tv.utils = sys.modules["torchvision.utils"] = types.ModuleType("utils")
        sys.modules["torchvision"] = tv
    from denoising_diffusion_pytorch import classifier_free_guidance

    classifier_free_guidance.tqdm = lambda steps, **kw: steps  # no progress bar per sampling
    return classifier_free_guidance


def lucidrains_model(seed: int = 0):
    m = lucidrains()

    class PairedUnet(m.Unet):
        # at cond_scale == 1 the module's Unet returns a bare tensor, which its own
        # model_predictions unpacks as (guided, unguided): pair it so unguided sampling works
        def forward_with_cond_scale(self, *args, cond_scale=1.0, **kwargs):
            out = super().forward_with_cond_scale(*args, cond_scale=cond_scale, **kwargs)
            return (out, out) if cond_scale == 1 else out

    torch.manual_seed(seed)
    net = PairedUnet(dim=10, num_classes=10, channels=1, dim_mults=(1, 2, 4))
    diffusion = m.GaussianDiffusion(net, image_size=8, timesteps=1000, sampling_timesteps=250)
    return diffusion, sum(p.numel() for p in net.parameters())


def run_lucidrains(
    images,
    labels,
    budget: float,
    n: int,
    run_dir: str,
    seed: int = 0,
    scales: tuple[float, ...] = (6.0,),
) -> Iterator[dict]:
    from ema_pytorch import EMA

    diffusion, params = lucidrains_model(seed)
    opt = torch.optim.Adam(diffusion.parameters(), lr=1e-3, betas=(0.9, 0.99))
    ema = EMA(diffusion, beta=0.995, update_every=10)
    g = torch.Generator().manual_seed(seed)
    step, c0, batch = 0, time.process_time(), 128
    diffusion.train()
    while time.process_time() - c0 < budget:
        idx = torch.randint(0, len(images), (batch,), generator=g)
        loss = diffusion((images[idx] + 1) / 2, classes=labels[idx])  # it wants [0, 1]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(diffusion.parameters(), 1.0)
        opt.step()
        ema.update()
        step += 1
    train_cpu = time.process_time() - c0
    sampler = ema.ema_model.eval()
    y = request_labels(n)
    for scale in scales:
        torch.manual_seed(SAMPLE_SEED_STRIDE * seed + 1)  # its sampler draws from the global RNG
        c1 = time.process_time()
        with torch.no_grad():
            x = torch.cat(
                [sampler.sample(classes=y[i : i + 500], cond_scale=scale) for i in range(0, n, 500)]
            )
        name = f"lucidrains Unet + GaussianDiffusion, DDIM 250, cond_scale {scale:g}"
        yield row(name, x * 2 - 1, step, train_cpu, time.process_time() - c1, params)


CONTENDERS = {"ours": run_ours, "diffusers": run_diffusers, "lucidrains": run_lucidrains}


# --- scoring -------------------------------------------------------------------------------


def pixels(x: torch.Tensor) -> np.ndarray:
    return x.reshape(len(x), -1).double().numpy()  # (N, 64)


def score(clf, ref_feat, ref_pix, x, labels) -> dict:
    feats = extract_features(clf, x).double().numpy()
    pred = torch.cat([clf.predict(x[i : i + 500]) for i in range(0, len(x), 500)])
    return {
        "fid": fid(ref_feat, feats),
        "kid": kid(ref_feat, feats)[0],
        "pix_fid": fid(ref_pix, pixels(x)),
        "as_requested": (pred == labels).double().mean().item(),
    }


def save_grid(x: torch.Tensor, path: Path, per_class: int = 10) -> None:
    """10 rows (classes) x per_class samples, 4x nearest upscale, for looking at."""
    from PIL import Image

    k = len(x) // 10
    per_class = min(per_class, k)
    x = x.reshape(10, k, 8, 8)[:, :per_class]  # (10, per_class, 8, 8)
    img = ((x.permute(0, 2, 1, 3).reshape(80, 8 * per_class) + 1) * 127.5).clamp(0, 255)
    Image.fromarray(img.round().byte().numpy()).resize((32 * per_class, 320), 0).save(path)


def floor_rows(real, clf, n: int) -> list[tuple[str, dict]]:
    """Real digits in place of samples: n drawn from the reference, and the classifier's held-out
    20% against its other 80% (the split train_classifier(seed=0) made)."""
    ref_feat = extract_features(clf, real.images).double().numpy()
    g = torch.Generator().manual_seed(1)
    idx = torch.cat(
        [
            torch.nonzero(real.labels == c)[:, 0][
                torch.randperm(int((real.labels == c).sum()), generator=g)[: n // 10]
            ]
            for c in range(10)
        ]
    )
    rows = [
        (
            f"floor: {len(idx)} real digits from the reference",
            score(clf, ref_feat, pixels(real.images), real.images[idx], real.labels[idx]),
        )
    ]
    perm = torch.randperm(len(real.images), generator=torch.Generator().manual_seed(0))
    val, tr = perm[: int(0.2 * len(perm))], perm[int(0.2 * len(perm)) :]
    tr_feat = extract_features(clf, real.images[tr]).double().numpy()
    m = score(clf, tr_feat, pixels(real.images[tr]), real.images[val], real.labels[val])
    rows.append((f"floor: {len(val)} held-out real digits vs the other {len(tr)}", m))
    return rows


def options(name: str, scales: str, seed: int) -> dict:
    """Per-contender keyword arguments from the command line."""
    kw: dict = {"seed": seed}
    if name == "lucidrains":
        kw["scales"] = tuple(float(v) for v in scales.split(","))
    return kw


def quality(
    budget: float,
    n: int,
    jobs: int,
    out: str,
    names: list[str],
    scales: str,
    rescore: bool,
    seed: int = 0,
) -> None:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    real = load_digits()
    results: dict[str, list[dict]] = {}
    if rescore:  # score the rows that (possibly stopped) contender processes saved
        for name in names:
            if (out_dir / f"{name}.pt").exists():
                results[name] = torch.load(out_dir / f"{name}.pt", weights_only=True)
    elif jobs > 1:
        procs = {
            name: subprocess.Popen(
                [sys.executable, __file__, "--contender", name, "--budget", str(budget)]
                + ["--n", str(n), "--out", out, "--lucidrains-scales", scales, "--seed", str(seed)]
            )
            for name in names
        }
        for name, p in procs.items():
            if p.wait() != 0:
                print(f"{name}: child process failed with exit code {p.returncode}")
                continue
            results[name] = torch.load(out_dir / f"{name}.pt", weights_only=True)
    else:
        for name in names:
            results[name] = list(
                CONTENDERS[name](
                    real.images,
                    real.labels,
                    budget,
                    n,
                    str(out_dir / name),
                    **options(name, scales, seed),
                )
            )
    clf = train_classifier(real.images, real.labels, num_classes=10, seed=0)
    ref_feat = extract_features(clf, real.images).double().numpy()
    ref_pix = pixels(real.images)
    y = request_labels(n)
    cpu = platform.processor() or platform.machine()
    print(f"\n{date.today()}, {cpu}, 1 torch thread per contender, {n} samples each, seed {seed}")
    print(f"budget {budget:g} training CPU-s each; classifier held-out {clf.val_accuracy:.4f}")
    cols = (
        "params | steps | train CPU s | sample CPU s | FID (classifier) | KID x1e3 | FID (pixels)"
    )
    print(f"| contender | {cols} | as requested |")
    print("|---|---|---|---|---|---|---|---|---|")

    def metrics(m: dict) -> str:
        return (
            f"{m['fid']:.3f} | {1e3 * m['kid']:.2f} | {m['pix_fid']:.2f} | {m['as_requested']:.3f}"
        )

    best: dict[str, float] = {}
    for name in names:
        for i, r in enumerate(results.get(name, [])):
            m = score(clf, ref_feat, ref_pix, r["x"], y)
            save_grid(r["x"], out_dir / f"{name}-{i}.png")
            for key in ("fid", "pix_fid"):
                best[f"{name}:{key}"] = min(best.get(f"{name}:{key}", math.inf), m[key])
            cost = f"{r['steps']} | {r['train_cpu']:.0f} | {r['sample_cpu']:.0f}"
            print(f"| {r['name']} | {r['params']:,} | {cost} | {metrics(m)} |")
    for label, m in floor_rows(real, clf, n):
        print(f"| {label} | - | - | - | - | {metrics(m)} |")
    peers = [p for p in names if p != "ours" and p in results]
    if "ours" in results and peers:
        for key, label in (("fid", "classifier FID"), ("pix_fid", "pixel FID")):
            ours, b = best[f"ours:{key}"], min(best[f"{p}:{key}"] for p in peers)
            print(
                f"{label}: best ours {ours:.3f} / best peer {b:.3f} = {ours / b:.2f} (goal <= 0.7)"
            )


def child(name: str, budget: float, n: int, out: str, scales: str, seed: int = 0) -> None:
    """One contender in its own process: train, sample, save the rows for the parent to score."""
    real = load_digits()
    t0 = time.monotonic()
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / f"{name}.pt").unlink(missing_ok=True)
    rows = []
    kw = options(name, scales, seed)
    for r in CONTENDERS[name](real.images, real.labels, budget, n, str(Path(out) / name), **kw):
        rows.append(r)
        torch.save(rows, Path(out) / f"{name}.pt")  # after each row: a stopped run keeps them
        print(f"{name}: {r['name']} sampled at {time.monotonic() - t0:.0f} s wall", flush=True)
    print(f"{name}: done in {time.monotonic() - t0:.0f} s wall clock", flush=True)


# --- latency -------------------------------------------------------------------------------


def latency(reps: int) -> None:
    pipe = load_pipeline(bundled_path("digits"))
    print(f"\n{date.today()}, bundled digits model, NFE 10, guidance 2, 1 torch thread")
    print("| batch | wall ms / image | CPU ms / image |")
    print("|---|---|---|")
    for batch, r in ((1, 10 * reps), (100, reps)):
        y = torch.arange(batch) % 10
        pipe.generate_images(list(range(batch)), labels=y, guidance=2.0, nfe=10)  # warm-up
        w0, c0 = time.monotonic(), time.process_time()
        for _ in range(r):
            pipe.generate_images(list(range(batch)), labels=y, guidance=2.0, nfe=10)
        w, c = (time.monotonic() - w0) / (r * batch), (time.process_time() - c0) / (r * batch)
        print(f"| {batch} | {1e3 * w:.2f} | {1e3 * c:.2f} |")


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
    ap.add_argument(
        "--budget", type=float, default=600.0, help="training CPU-seconds per contender"
    )
    ap.add_argument("--n", type=int, default=1000, help="samples per contender (multiple of 500)")
    ap.add_argument("--jobs", type=int, default=1, help="3: the contenders as parallel processes")
    ap.add_argument("--contenders", default=",".join(CONTENDER_NAMES))
    ap.add_argument("--out", default="runs/bench-digits-peers", help="samples, grids, our run")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=20.0, help="throughput timing per network")
    ap.add_argument("--reps", type=int, default=5, help="latency repetitions (x10 at batch 1)")
    ap.add_argument(
        "--seed", type=int, default=0, help="training and sampling seed of every contender"
    )
    ap.add_argument("--lucidrains-scales", default="6", help="its cond_scale values, e.g. 6,1")
    ap.add_argument("--throughput-only", action="store_true")
    ap.add_argument("--quality-only", action="store_true")
    ap.add_argument(
        "--rescore", action="store_true", help="score the samples a stopped run saved in --out"
    )
    ap.add_argument("--latency-only", action="store_true")
    ap.add_argument("--contender", choices=CONTENDER_NAMES, help=argparse.SUPPRESS)  # child
    ap.add_argument("--export-diffusers", metavar="DIR", help="train diffusers' UNet, save it")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.export_diffusers:
        return export_diffusers(args.export_diffusers, args.budget, args.seed)
    if args.contender:
        return child(
            args.contender, args.budget, args.n, args.out, args.lucidrains_scales, args.seed
        )
    names = [c for c in args.contenders.split(",") if c]
    if args.latency_only:
        return latency(args.reps)
    if not args.quality_only:
        throughput(args.batch, args.seconds)
    if not args.throughput_only:
        quality(
            args.budget,
            args.n,
            args.jobs,
            args.out,
            names,
            args.lucidrains_scales,
            args.rescore,
            args.seed,
        )


if __name__ == "__main__":
    main()
