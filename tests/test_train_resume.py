"""Exact resume (issue 3, item 5) and clean stops on SIGINT/SIGTERM and the time budget.
Each run is a new process, as a preempted job would be."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from diffusionforge.train import checkpoint as io

from trainkit import REPO, run_cli, tiny_args

COMPARED = [
    "model.safetensors",
    "ema.safetensors",
    "training_state/optimizer.safetensors",
    "training_state/optimizer.json",
    "training_state/ema_all.safetensors",
]


@pytest.mark.parametrize(
    "extra",
    [
        # shuffling and per-example jitter on; stop in the middle of epoch 1 (8 batches/epoch)
        ["data.augment=jitter", "data.jitter=0.05", "ema.kind=classic"],
        # power EMA, mirror augmentation, two accumulation steps
        pytest.param(
            ["data.augment=flip", "ema.kind=power", "train.grad_accum=2"], marks=pytest.mark.slow
        ),
    ],
    ids=["classic-jitter", "power-flip-accum"],
)
def test_interrupted_and_resumed_run_is_bitwise_equal(tmp_path, extra):
    args = tiny_args("train.steps=30", "train.ckpt_every=7", "train.keep_last=10", *extra)
    whole, split = tmp_path / "whole", tmp_path / "split"
    p = run_cli(["train", *args, "--run-dir", str(whole)])
    assert p.returncode == 0, p.stderr
    p = run_cli(["train", *args, "--run-dir", str(split), "--until-step", "13"])
    assert p.returncode == 0 and "stopped at --until-step at step 13" in p.stdout, p.stderr
    p = run_cli(["train", *args, "--run-dir", str(split), "--resume", "auto"])
    assert p.returncode == 0 and "resumed from" in p.stderr and "step-000000013" in p.stderr
    a = io.load_checkpoint(whole / "checkpoints" / "step-000000030", need_training_state=True)
    b = io.load_checkpoint(split / "checkpoints" / "step-000000030", need_training_state=True)
    for rel in COMPARED:
        assert a.files[rel] == b.files[rel], rel
    # and the split run really did restart: its state differs from a run stopped early
    assert (
        a.files["model.safetensors"]
        != io.load_checkpoint(split / "checkpoints" / "step-000000013").files["model.safetensors"]
    )


@pytest.mark.parametrize(
    "sig",
    [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)],
    ids=["TERM", "INT"],
)
def test_signal_saves_a_checkpoint_and_exits_cleanly(tmp_path, sig):
    run = tmp_path / "run"
    args = tiny_args("train.steps=1000000", "train.ckpt_every=0", "train.log_every=1000")
    proc = subprocess.Popen(
        [sys.executable, "-m", "diffusionforge", "train", *args, "--run-dir", str(run)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()  # "training <run> from step 0 ..." once the loop starts
        assert line.startswith("training"), line
        time.sleep(0.5)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=300)  # generous: a loaded CI box is slow, not wrong
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert f"{sig.name} received" in err and "Traceback" not in err
    assert "interrupted at step" in out
    ckpt, skipped = io.latest_checkpoint(run)
    assert ckpt is not None and not skipped and ckpt.step > 0
    p = run_cli(
        [
            "train",
            *args,
            "--run-dir",
            str(run),
            "--resume",
            "auto",
            "--until-step",
            str(ckpt.step + 3),
        ],
        timeout=300,
    )
    assert p.returncode == 0 and f"stopped at --until-step at step {ckpt.step + 3}" in p.stdout


def test_time_budget_stops_with_a_checkpoint(tmp_path):
    run = tmp_path / "run"
    p = run_cli(
        [
            "train",
            *tiny_args("train.steps=1000000", "train.ckpt_every=0"),
            "--run-dir",
            str(run),
            "--max-time",
            "2s",
        ]
    )
    assert p.returncode == 0, p.stderr
    assert "stopped by the time budget" in p.stdout
    # Without the budget the run would go on for a million steps (run_cli's timeout would
    # fail the test); the budget is checked after each step, so at least one step is saved.
    # No wall-clock bound on the test itself: a loaded machine must not fail it.
    ckpt, _ = io.latest_checkpoint(run)
    assert ckpt is not None and ckpt.step >= 1


def test_cpu_time_budget_stops_with_a_checkpoint(tmp_path):
    run = tmp_path / "run"
    p = run_cli(
        [
            "train",
            *tiny_args("train.steps=1000000", "train.ckpt_every=0"),
            "--run-dir",
            str(run),
            "--max-cpu-time",
            "2s",
        ]
    )
    assert p.returncode == 0, p.stderr
    assert "stopped by the time budget" in p.stdout
    ckpt, _ = io.latest_checkpoint(run)
    assert ckpt is not None and ckpt.step > 10
