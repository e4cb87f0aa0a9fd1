"""Shared helpers for the training, checkpoint and CLI tests (tiny, CPU-fast settings)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from diffusionforge.cli import main
from diffusionforge.train.config import Config, apply_overrides, load_preset

REPO = Path(__file__).resolve().parent.parent

# A model and data small enough that one step takes a few milliseconds on one core.
TINY = [
    "data.size=512",
    "model.mlp.hidden=32",
    "model.mlp.depth=2",
    "model.mlp.emb_dim=16",
    "train.batch_size=64",
    "train.steps=20",
    "train.log_every=5",
    "train.ckpt_every=10",
    "train.sample_every=0",
    "train.tensorboard=false",
    "train.progress=false",
    "train.threads=1",
    "optim.warmup_steps=5",
    "sample.n=200",
    "sample.nfe=8",
]


# Two steps of batch 16 and one checkpoint, nothing else: the text-to-image tests' runs.
TWO_STEPS = [
    "train.batch_size=16",
    "train.steps=2",
    "train.ckpt_every=2",
    "train.sample_every=0",
    "train.tensorboard=false",
    "train.progress=false",
    "train.threads=1",
]


def tiny_cfg(*overrides: str, preset: str = "moons") -> Config:
    return apply_overrides(load_preset(preset), [*TINY, *overrides])


# The digits preset shrunk to a few steps of a 0.3M UNet on 1 thread.
TINY_IMAGES = [
    "model.unet.preset=tiny",
    "train.batch_size=32",
    "train.steps=6",
    "train.ckpt_every=3",
    "train.keep_last=10",
    "train.sample_every=0",
    "train.tensorboard=false",
    "train.progress=false",
    "train.threads=1",
    "optim.warmup_steps=2",
    "sample.n=20",
    "sample.nfe=4",
]


def digits_cfg(*overrides: str) -> Config:
    return apply_overrides(load_preset("digits"), [*TINY_IMAGES, *overrides])


def tiny_args(*overrides: str) -> list[str]:
    """CLI arguments for `train` with the tiny settings."""
    out = ["--preset", "moons", "--no-progress"]
    for item in [*TINY, *overrides]:
        out += ["--set", item]
    return out


def run_cli(args: list[str], *, cwd: Path | None = None, timeout: float = 120, env=None):
    """Run `python -m diffusionforge ARGS` in a new process; returns CompletedProcess."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "diffusionforge", *args],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def assert_one_line_error(proc_or_text, code: int = 2) -> str:
    """The CLI failed with `code` and printed exactly one line, `error: ...`, no traceback."""
    if isinstance(proc_or_text, subprocess.CompletedProcess):
        assert proc_or_text.returncode == code, (proc_or_text.returncode, proc_or_text.stderr)
        err = proc_or_text.stderr
    else:
        err = proc_or_text
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


def launch_two_processes(mode: list[str], train_args: list[str]) -> subprocess.CompletedProcess:
    """`accelerate launch` of `diffusionforge train` on 2 CPU processes (gloo, float32, no
    dynamo) with accelerate flags `mode` (e.g. ["--multi_gpu"] or FSDP's); asserts exit 0."""
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch = [
        sys.executable, "-m", "accelerate.commands.launch", *mode,
        "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no",
        "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
        "-m", "diffusionforge", "train", *train_args,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    p = subprocess.run(launch, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def cli(capsys, *args) -> tuple[int, str, str]:
    """Run the CLI in this process: (exit code, stdout, stderr); argparse usage errors exit."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # argparse usage errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err
