"""Stress test: kill -9 a training run while it writes checkpoints, then check that
`--resume auto` always finds a complete checkpoint (the previous or the new one).

Each trial starts `diffusionforge train --resume auto` on the same run folder (checkpoint every
step, a model large enough that a write takes a while), waits until a checkpoint's temp folder
appears, sleeps a random 0-80 ms, and sends SIGKILL. Then, in this process, it verifies the run:
the newest checkpoint folder must pass its manifest checks, parse, and load into the model.

    python benchmarks/kill9_checkpoints.py --trials 20

Prints one line per trial and a summary; exits non-zero on any corrupt load.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from diffusionforge.errors import CheckpointError
from diffusionforge.pipelines.pipeline import load_pipeline
from diffusionforge.train import checkpoint as io

SETTINGS = [
    "data.size=4096",
    "model.mlp.hidden=768",
    "model.mlp.depth=4",
    "train.batch_size=64",
    "train.steps=1000000",
    "train.ckpt_every=1",
    "train.keep_last=2",
    "train.threads=1",
    "train.tensorboard=false",
    "train.sample_every=0",
    "train.log_every=1000",
]


def _start(run: Path) -> subprocess.Popen:
    args = [
        sys.executable,
        "-m",
        "diffusionforge",
        "train",
        "--preset",
        "moons",
        "--no-progress",
        "--run-dir",
        str(run),
        "--resume",
        "auto",
    ]
    for s in SETTINGS:
        args += ["--set", s]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _writing(run: Path, pid: int) -> bool:
    """A checkpoint of this process is being written (its temp folder exists)."""
    folder = run / "checkpoints"
    return folder.is_dir() and any(
        p.name.startswith(".tmp-step-") and p.name.endswith(f"-{pid}") for p in folder.iterdir()
    )


def _newest_step(run: Path) -> int:
    names = io.list_checkpoints(run)
    return int(names[-1].name.split("-")[1]) if names else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the run folder")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="kill9-"))
    run = root / "run"
    ok = corrupt = mid_write = 0
    last_step = -1
    for trial in range(1, args.trials + 1):
        proc = _start(run)
        deadline = time.monotonic() + 120
        # let this process finish 0-3 checkpoints of its own, then wait for its next write
        target = max(1, _newest_step(run) + rng.randint(0, 3))
        while (
            proc.poll() is None
            and time.monotonic() < deadline
            and not (_newest_step(run) >= target and _writing(run, proc.pid))
        ):
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.08))
        was_writing = _writing(run, proc.pid)
        proc.kill()  # SIGKILL: no handler runs, no cleanup
        proc.wait()
        mid_write += was_writing
        try:
            ckpt, skipped = io.latest_checkpoint(run)
            if skipped or ckpt is None:
                raise CheckpointError("; ".join(skipped) or "no checkpoint at all")
            load_pipeline(ckpt.path)  # parses every file and loads the weights into the model
            if ckpt.step < last_step:
                raise CheckpointError(f"went back from step {last_step} to {ckpt.step}")
            last_step = ckpt.step
            ok += 1
            verdict = f"loaded step {ckpt.step}"
        except CheckpointError as e:
            corrupt += 1
            verdict = f"CORRUPT: {e}"
        temps = len(list((run / "checkpoints").glob(".tmp-*")))
        print(
            f"trial {trial:2d}: killed {'during' if was_writing else 'outside'} a write; "
            f"{temps} temp folder(s) left; {verdict}",
            flush=True,
        )
    print(
        f"\n{ok}/{args.trials} restarts found a complete checkpoint, {corrupt} corrupt loads, "
        f"{mid_write}/{args.trials} kills landed while a checkpoint was being written"
    )
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if corrupt else 0


if __name__ == "__main__":
    sys.exit(main())
