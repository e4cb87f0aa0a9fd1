"""One command that checks a GPU machine (issue 20): `make gpu-check`.

    python benchmarks/gpu_check.py                        # CUDA: everything, within ~10 minutes
    python benchmarks/gpu_check.py --device cpu --quick   # the same code path on CPU, ~30 s

On a machine with CUDA it runs, logging a line per step:

1. the test suite's device tests (`pytest -m cuda`) on the GPU;
2. a few hundred training steps of the digits and glyphs32 presets on the GPU in bf16;
3. sampling equality: the bundled digits model drawn on the CPU and on the GPU from the same
   seeds (TF32 off on the GPU), max |difference| within SAMPLE_TOLERANCE;
4. training throughput (images/s, bf16) of the UNet and DiT presets at 32x32 and of a
   DiT-B/2-sized model on 32x32x4 latents, at the largest power-of-two batch that fits (up to
   MAX_BATCH), with the FLOPs per image and the utilisation of the card they imply;

and writes report.json and report.md into --out. Each step's failure is recorded and the
others still run; the exit status is 1 when any failed. Nothing is downloaded. On a machine
without CUDA, `python benchmarks/gpu_check.py` says so in one line and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scaling  # noqa: E402  (benchmarks/scaling.py: FLOP counting, throughput loop)

REPO = Path(__file__).resolve().parent.parent
SAMPLE_TOLERANCE = 1e-3  # max |pixel difference| in [-1, 1], float32 on both (TF32 off)
MAX_BATCH = 4096
BUDGET_S = 540.0  # the whole check, leaving a minute of the 10 for start-up and slack
T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[gpu-check {time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def left() -> float:
    return BUDGET_S - (time.monotonic() - T0)


# --- the steps -------------------------------------------------------------------------------


def environment(device: str) -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
        "host": platform.node(),
        "cpu_threads": torch.get_num_threads(),
    }
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(device)
        info |= {
            "gpu": p.name,
            "gpu_memory_gib": round(p.total_memory / 2**30, 1),
            "capability": f"{p.major}.{p.minor}",
            "bf16": torch.cuda.is_bf16_supported(),
            "cuda": torch.version.cuda,
            "gpus": torch.cuda.device_count(),
        }
    return info


def device_tests(device: str, quick: bool) -> dict:
    """The tests marked `cuda` (they skip without one)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "tests"]
    if quick:  # the CPU rehearsal: one file is enough to see them collected and skipped
        cmd[-1] = "tests/test_gpu_paths.py"
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=max(60, left() - 300))
    tail = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else p.stderr[-500:]
    log(f"device tests: {tail}")
    if p.returncode not in (0, 5):  # 5: nothing collected
        raise RuntimeError(f"pytest -m cuda failed:\n{p.stdout[-3000:]}")
    return {"summary": tail, "returncode": p.returncode}


def train_presets(device: str, quick: bool, out: Path) -> dict:
    """A few hundred bf16 steps of the digits and glyphs32 presets through the Trainer."""
    from diffusionforge.modalities import make_trainer
    from diffusionforge.train.config import apply_overrides, load_preset

    steps = 3 if quick else 300
    bf16 = device.startswith("cuda") and torch.cuda.is_bf16_supported()
    results = {}
    for preset in ("digits", "glyphs32"):
        cfg = apply_overrides(
            load_preset(preset),
            [
                f"train.steps={steps}",
                f"train.mixed_precision={'bf16' if bf16 else 'no'}",
                f"train.ckpt_every={steps}",
                f"train.log_every={max(1, steps // 3)}",
                "train.sample_every=0",
                "train.tensorboard=false",
                "train.progress=false",
                *(["train.batch_size=16", "optim.warmup_steps=1"] if quick else []),
            ],
        )
        log(f"train {preset}: {steps} steps, batch {cfg.train.batch_size}, bf16={bf16}")
        result = make_trainer(cfg, out / "runs" / preset, log=lambda m: log(f"  {m}")).fit()
        ips = steps * cfg.train.batch_size / result.seconds
        log(f"train {preset}: loss {result.loss:.4f}, {result.seconds:.1f}s, {ips:,.0f} img/s")
        if not np.isfinite(result.loss) or result.skipped_steps:
            raise RuntimeError(f"{preset}: loss {result.loss}, {result.skipped_steps} skipped")
        results[preset] = {
            "steps": result.step,
            "batch_size": cfg.train.batch_size,
            "bf16": bf16,
            "loss": result.loss,
            "seconds": round(result.seconds, 2),
            "images_per_s": round(ips, 1),
            "checkpoint": str(result.checkpoint),
        }
    return results


def sampling_equality(device: str, quick: bool, out: Path) -> dict:
    """The bundled digits model, the same seeds, on the CPU and on `device` (new processes)."""
    n, nfe = (4, 8) if quick else (20, 16)  # n images of the first n classes
    arrays = {}
    for where in ("cpu", device):
        path = out / f"samples-{where.replace(':', '')}.npy"
        classes = list(range(min(n, 10)))  # --n counts per class: n images in all
        cmd = [sys.executable, "-m", "diffusionforge", "sample", "digits"]
        cmd += ["--n", str(max(1, n // len(classes))), "--class", ",".join(map(str, classes))]
        cmd += ["--nfe", str(nfe), "--seed", "0", "--device", where, "--out", str(path)]
        env = {**os.environ, "NVIDIA_TF32_OVERRIDE": "0"}  # float32 on the GPU as on the CPU
        p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
        if p.returncode:
            raise RuntimeError(f"sample --device {where} failed: {p.stderr.strip()[-1000:]}")
        arrays[where] = np.load(path)
    diff = np.abs(arrays["cpu"].astype(np.float64) - arrays[device].astype(np.float64))
    res = {
        "images": n,
        "nfe": nfe,
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "tolerance": SAMPLE_TOLERANCE,
    }
    log(f"sampling cpu vs {device}: max |d| {res['max_abs_diff']:.2e} (bound {SAMPLE_TOLERANCE})")
    if res["max_abs_diff"] > SAMPLE_TOLERANCE:
        raise RuntimeError(f"cpu vs {device}: max |difference| {res['max_abs_diff']:.3e}")
    return res


def _fits(net, batch: int, device: str, bf16: bool) -> bool:
    try:
        scaling.train_throughput(net, batch, steps=1, device=device, bf16=bf16, warmup=1)
        return torch.cuda.max_memory_allocated(device) < 0.85 * _memory(device)
    except torch.OutOfMemoryError:
        return False
    finally:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _memory(device: str) -> int:
    return torch.cuda.get_device_properties(device).total_memory


def throughput(device: str, quick: bool) -> list[dict]:
    cuda = device.startswith("cuda")
    bf16 = cuda and torch.cuda.is_bf16_supported()
    nets = [n for n in scaling.NETS if "tiny" in n.name] if quick else scaling.NETS
    hopper = cuda and any(k in _gpu_name(device) for k in ("H100", "H200"))  # same bf16 peak
    peak = scaling.H100_BF16_TFLOPS * 1e12 if hopper else None
    rows = []
    for net in nets:
        if left() < 30:
            log(f"throughput {net.name}: skipped (time budget spent)")
            rows.append({"network": net.name, "skipped": "time budget"})
            continue
        fwd, train = scaling.train_flops_per_image(net)
        batch = 4
        if cuda:  # the largest power of two that fits, up to MAX_BATCH
            batch = 32
            while batch * 2 <= MAX_BATCH and left() > 60 and _fits(net, batch * 2, device, bf16):
                batch *= 2
        steps = 2 if quick else 20
        clock = time.perf_counter if cuda else time.process_time
        ips = scaling.train_throughput(net, batch, steps, device, bf16, warmup=3, clock=clock)
        row = {
            "network": net.name,
            "batch": batch,
            "bf16": bf16,
            "images_per_s": round(ips, 1),
            "train_gflop_per_image": round(train / 1e9, 3),
            "achieved_tflops": round(ips * train / 1e12, 2),
        }
        if peak:
            row["utilisation"] = round(ips * train / peak, 3)
        tflops = row["achieved_tflops"]
        log(f"throughput {net.name}: batch {batch}, {ips:,.1f} img/s, {tflops} TFLOP/s")
        rows.append(row)
        if cuda:
            torch.cuda.empty_cache()
    return rows


def _gpu_name(device: str) -> str:
    return torch.cuda.get_device_properties(device).name


# --- the report ------------------------------------------------------------------------------


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [
        "# gpu-check report",
        "",
        f"{env.get('gpu', env['device'])}, torch {env['torch']}, "
        f"{report['seconds']:.0f} s, {'all passed' if report['ok'] else 'FAILURES'}",
        "",
        "| step | status | seconds |",
        "|---|---|---|",
    ]
    for name, step in report["steps"].items():
        lines.append(f"| {name} | {step['status']} | {step['seconds']:.1f} |")
    for name, step in report["steps"].items():
        if step["status"] != "ok":
            lines += ["", f"## {name}: failed", "", "```", step["error"][-2000:], "```"]
    train = report["steps"].get("train", {}).get("result") or {}
    if train:
        lines += ["", "## Training (bf16 where supported)", ""]
        lines += ["| preset | steps | batch | loss | img/s |", "|---|---|---|---|---|"]
        for k, v in train.items():
            lines.append(
                f"| {k} | {v['steps']} | {v['batch_size']} | {v['loss']:.4f} | "
                f"{v['images_per_s']:,.0f} |"
            )
    s = report["steps"].get("sampling", {}).get("result")
    if s:
        lines += [
            "",
            "## Sampling CPU vs device",
            "",
            f"{s['images']} images, NFE {s['nfe']}: max |d| {s['max_abs_diff']:.2e}, "
            f"mean |d| {s['mean_abs_diff']:.2e} (tolerance {s['tolerance']})",
        ]
    rows = report["steps"].get("throughput", {}).get("result") or []
    if rows:
        lines += ["", "## Training throughput", ""]
        lines += [
            "| network | batch | img/s | train GFLOP/img | TFLOP/s | utilisation |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            if "skipped" in r:
                lines.append(f"| {r['network']} | skipped ({r['skipped']}) | | | | |")
                continue
            u = f"{r['utilisation']:.0%}" if "utilisation" in r else "-"
            lines.append(
                f"| {r['network']} | {r['batch']} | {r['images_per_s']:,.1f} | "
                f"{r['train_gflop_per_image']} | {r['achieved_tflops']} | {u} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="check a GPU machine; see the module docstring")
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    ap.add_argument("--quick", action="store_true", help="a few steps of everything")
    ap.add_argument("--out", default="runs/gpu-check", help="folder for report.json/.md")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu-check: no CUDA device on this machine (torch {torch.__version__}); skipped")
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.device.startswith("cuda"):
        torch.cuda.set_device(torch.device(args.device))
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest convolutions
    log(f"device {args.device}, quick={args.quick}, report in {out}")
    report = {"environment": environment(args.device), "steps": {}}
    steps = {
        "device_tests": lambda: device_tests(args.device, args.quick),
        "train": lambda: train_presets(args.device, args.quick, out),
        "sampling": lambda: sampling_equality(args.device, args.quick, out),
        "throughput": lambda: throughput(args.device, args.quick),
    }
    for name, fn in steps.items():
        t = time.monotonic()
        log(f"{name}: start")
        try:
            entry = {"status": "ok", "result": fn()}
        except Exception as e:  # noqa: BLE001  a failed step is reported; the others still run
            log(f"{name}: FAILED: {type(e).__name__}: {e}")
            entry = {"status": "failed", "error": traceback.format_exc()}
        entry["seconds"] = round(time.monotonic() - t, 1)
        report["steps"][name] = entry
        log(f"{name}: {entry['status']} in {entry['seconds']}s")
    report["seconds"] = round(time.monotonic() - T0, 1)
    report["ok"] = all(s["status"] == "ok" for s in report["steps"].values())
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "report.md").write_text(markdown(report))
    log(f"{'all passed' if report['ok'] else 'FAILURES'}; wrote {out / 'report.md'}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
