"""Peak memory of training on an image folder of 10k vs 100k files (#18 point 4, the bar).

Writes synthetic 16x16 RGB PNGs (a random colour gradient plus noise, seeded) under
runs/data_memory/imgs-N, then, for each folder size and data.cache_mb setting, runs
`diffusionforge train --data FOLDER` (the `images` preset: side and batch from the data) for a
few steps in a fresh process and reads that process's peak RSS (getrusage of the waited-for
child: ru_maxrss) and CPU time. A folder decoding to more than data.cache_mb MiB streams from
disk (data/stream.py): its peak RSS should not grow with the number of files beyond the file
list, which is measured separately (tracemalloc around the folder scan, in this process).

    python benchmarks/data_memory.py --sizes 10000,100000 --steps 20
    python benchmarks/data_memory.py --sizes 10000,100000 --cache-mb 0,1024 --workers 0,2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path("runs/data_memory")

CHILD = """
import resource, subprocess, sys, time
t = time.monotonic()
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(p.returncode, ru.ru_maxrss, ru.ru_utime + ru.ru_stime, time.monotonic() - t)
sys.stderr.write(p.stderr[-3000:])
"""


def make_folder(n: int, side: int = 16) -> Path:
    folder = ROOT / f"imgs-{n}"
    done = ROOT / f"imgs-{n}.complete"  # beside the folder: inside, it is a 'not an image' line
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    ramp = np.linspace(0, 1, side)[None, :, None]
    for i in range(n):
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        img = a * (1 - ramp) + b * ramp + rng.normal(0, 12, (side, side, 3))
        pixels = np.clip(img, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:06d}.png", compress_level=1)
    done.write_text("")
    return folder


def file_list_bytes(folder: Path) -> tuple[int, int, int, float]:
    """(files, bytes held by the scanned ImageFolder, peak bytes while scanning, CPU seconds
    of the scan); Python allocations only (tracemalloc), PIL's plugins imported first."""
    from diffusionforge.data.images import ImageFolder

    Image.open(next(folder.glob("*.png"))).close()  # PIL's plugins: imported once, not per file
    tracemalloc.start()
    t = time.process_time()
    images = ImageFolder(folder, 0, check="header", report=lambda line: None)
    cpu = time.process_time() - t
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return len(images), held, peak, cpu


def train(folder: Path, steps: int, cache_mb: int, workers: int) -> dict:
    run = ROOT / f"run-{folder.name}-c{cache_mb}-w{workers}"
    cmd = [sys.executable, "-m", "diffusionforge", "train", "--data", str(folder)]
    cmd += ["--run-dir", str(run), "--overwrite", "--steps", str(steps), "--no-progress"]
    for item in (
        f"data.cache_mb={cache_mb}",
        f"data.num_workers={workers}",
        "train.sample_every=0",
        "train.ckpt_every=0",
        "train.tensorboard=false",
    ):
        cmd += ["--set", item]
    p = subprocess.run([sys.executable, "-c", CHILD, *cmd], capture_output=True, text=True)
    rc, rss_kib, cpu, wall = p.stdout.split()
    if rc != "0":
        raise SystemExit(f"train failed on {folder}:\n{p.stderr}")
    per_step = [line for line in p.stderr.splitlines() if line.startswith("expected:")]
    return {
        "files": int(folder.name.split("-")[1]),
        "cache_mb": cache_mb,
        "workers": workers,
        "peak_rss_mib": round(int(rss_kib) / 1024, 1),
        "cpu_s": round(float(cpu), 1),
        "wall_s": round(float(wall), 1),
        "expected_line": per_step[0] if per_step else "",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cache-mb", default="0")
    ap.add_argument("--workers", default="0")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    for n in sizes:
        t = time.process_time()
        folder = make_folder(n)
        print(f"folder {folder}: ready ({time.process_time() - t:.1f} CPU-s to write)", flush=True)
        files, held, peak, cpu = file_list_bytes(folder)
        print(
            json.dumps(
                {"files": files, "file_list_bytes": held, "bytes_per_file": round(held / files),
                 "scan_peak_bytes": peak, "scan_cpu_s": round(cpu, 1)}
            ),
            flush=True,
        )  # fmt: skip
    for n in sizes:
        for cache in (int(c) for c in args.cache_mb.split(",")):
            for workers in (int(w) for w in args.workers.split(",")):
                print(json.dumps(train(ROOT / f"imgs-{n}", args.steps, cache, workers)), flush=True)


if __name__ == "__main__":
    main()
