"""GPU paths (issue 20, item 2): what runs on CPU is tested here on CPU; the tests marked
`cuda` need a CUDA device, skip cleanly without one and are what `make gpu-check` runs first."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_train_trainer import FlakyFormulation

from diffusionforge.errors import TrainingDiverged
from diffusionforge.modalities import make_trainer
from diffusionforge.train import checkpoint as io
from diffusionforge.train.builders import build_formulation

from trainkit import REPO, digits_cfg, run_cli, tiny_cfg

CHECK = REPO / "benchmarks" / "gpu_check.py"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_gpu_check_without_cuda_says_so_in_one_line():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    p = subprocess.run(
        [sys.executable, str(CHECK)], cwd=REPO, capture_output=True, text=True, env=env
    )
    assert p.returncode == 0, p.stderr
    lines = [line for line in (p.stdout + p.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "no CUDA device" in lines[0], lines


@pytest.mark.slow
def test_gpu_check_runs_its_whole_path_on_cpu(tmp_path):
    p = subprocess.run(
        [sys.executable, str(CHECK), "--device", "cpu", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    steps = report["steps"]
    assert list(steps) == ["device_tests", "train", "sampling", "throughput"]
    assert all(s["status"] == "ok" for s in steps.values()), steps
    assert set(steps["train"]["result"]) == {"digits", "glyphs32"}
    assert steps["sampling"]["result"]["max_abs_diff"] == 0.0  # CPU against itself
    rows = steps["throughput"]["result"]
    assert [r["network"] for r in rows] == ["UNet-tiny", "DiT-tiny/2"]
    assert all(r["images_per_s"] > 0 and r["train_gflop_per_image"] > 0 for r in rows)
    md = (tmp_path / "report.md").read_text()
    assert "| throughput | ok |" in md and "UNet-tiny" in md


def test_flop_count_of_a_linear_layer_is_the_closed_form():
    """The counter the Scaling table rests on: a (B, n) @ (n, m) product is 2 B n m FLOPs
    forward and twice that backward (input and weight gradients)."""
    from torch.utils.flop_counter import FlopCounterMode

    layer, x = torch.nn.Linear(48, 32), torch.randn(8, 48, requires_grad=True)
    with FlopCounterMode(display=False) as fwd:
        y = layer(x).sum()
    with FlopCounterMode(display=False) as bwd:
        y.backward()
    assert fwd.get_total_flops() == 2 * 8 * 48 * 32
    assert bwd.get_total_flops() == 2 * (2 * 8 * 48 * 32)


@pytest.mark.slow
def test_compiled_training_matches_eager_on_cpu(tmp_path):
    """train.compile = true on CPU (inductor; ~30 CPU-s of compiling): 5 steps of the tiny
    moons MLP agree with eager mode to rounding (measured 5e-8)."""
    runs = {}
    for name, extra in (("eager", ()), ("compiled", ("train.compile=true",))):
        cfg = tiny_cfg("train.steps=5", *extra)
        runs[name] = make_trainer(cfg, tmp_path / name, log=lambda m: None).fit()
    a, b = (io.load_checkpoint(r.checkpoint).tensors("model.safetensors") for r in runs.values())
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


# --- CUDA only ---------------------------------------------------------------------------


@pytest.mark.cuda
@needs_cuda
def test_bf16_training_on_cuda_uses_tf32_channels_last_and_loads_on_cpu(tmp_path):
    cfg = digits_cfg("train.steps=10", "train.mixed_precision=bf16", "train.ckpt_every=10")
    trainer = make_trainer(cfg, tmp_path, log=lambda m: None)
    result = trainer.fit()
    assert result.status == "done" and np.isfinite(result.loss) and result.skipped_steps == 0
    assert trainer.acc.device.type == "cuda"
    assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    conv = next(p for p in trainer.net.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    ckpt = io.load_checkpoint(result.checkpoint)
    assert all(t.device.type == "cpu" for t in ckpt.tensors("model.safetensors").values())
    p = run_cli(
        [
            "sample",
            str(result.checkpoint),
            "--n",
            "4",
            "--nfe",
            "4",
            "--out",
            str(tmp_path / "s.npy"),
        ]
    )
    assert p.returncode == 0, p.stderr


@pytest.mark.cuda
@needs_cuda
def test_compiled_training_on_cuda_matches_eager(tmp_path):
    base = ("train.steps=5", "train.ckpt_every=5")
    eager = make_trainer(digits_cfg(*base), tmp_path / "eager", log=lambda m: None).fit()
    compiled = make_trainer(
        digits_cfg(*base, "train.compile=true"), tmp_path / "c", log=lambda m: None
    ).fit()
    a = io.load_checkpoint(eager.checkpoint).tensors("model.safetensors")
    b = io.load_checkpoint(compiled.checkpoint).tensors("model.safetensors")
    assert (
        max((a[k] - b[k]).abs().max().item() for k in a) < 1e-3
    )  # fused kernels round differently


@pytest.mark.cuda
@needs_cuda
def test_cuda_sampling_matches_cpu(tmp_path):
    out = {}
    for device in ("cpu", "cuda"):
        path = tmp_path / f"{device}.npy"
        p = run_cli(
            ["sample", "digits", "--class", "0,1,2,3,4,5,6,7", "--n", "1", "--nfe", "16"]
            + ["--device", device, "--out", str(path)],
            env={"NVIDIA_TF32_OVERRIDE": "0"},
        )
        assert p.returncode == 0, p.stderr
        out[device] = np.load(path)
    assert np.abs(out["cpu"] - out["cuda"]).max() < 1e-3


# --- the device-side step (the default on CUDA), run on CPU ------------------------------


def _weights(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.net.state_dict().items()}


def test_device_side_step_matches_the_host_side_one(tmp_path):
    """No .item() per step: the fused AdamW and the EMA take found_inf from the device. 20
    steps agree with the host-side loop to rounding (fused vs foreach kernels; measured 3e-8)."""
    runs = {}
    for side in (False, True):
        t = make_trainer(tiny_cfg(), tmp_path / str(side), log=lambda m: None, device_side=side)
        result = t.fit()
        assert result.status == "done" and result.skipped_steps == 0
        runs[side] = (t, result)
    (host, r0), (dev, r1) = runs[False], runs[True]
    assert abs(r0.loss - r1.loss) < 1e-5
    a, b = _weights(host), _weights(dev)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    assert all(g["fused"] for g in dev.optimizer.param_groups)


def test_device_side_skips_non_finite_steps_without_touching_anything(tmp_path):
    cfg = tiny_cfg()
    clean = make_trainer(
        cfg, tmp_path / "clean", until_step=4, log=lambda m: None, device_side=True
    )
    clean.fit()
    lines = []
    flaky = make_trainer(
        cfg,
        tmp_path / "flaky",
        until_step=6,
        log=lines.append,
        formulation=FlakyFormulation(build_formulation(cfg), {5, 6}),
        device_side=True,
    )
    result = flaky.fit()
    assert result.step == 6 and result.skipped_steps == 2
    # told at the logging steps (every 5) and at the end: one skipped in 1-5, one in 6
    warnings = [line for line in lines if line.startswith("warning:")]
    assert warnings == [
        "warning: 1 of steps 1-5: non-finite loss or gradient; skipped",
        "warning: 1 of steps 6-6: non-finite loss or gradient; skipped",
    ]
    for name, value in _weights(clean).items():
        assert torch.equal(value, flaky.net.state_dict()[name]), name
    for name, value in clean.ema.avg.items():
        assert torch.equal(value, flaky.ema.avg[name]), name
    for p, q in zip(
        clean.optimizer.param_groups[0]["params"],
        flaky.optimizer.param_groups[0]["params"],
        strict=True,
    ):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(clean.optimizer.state[p][key], flaky.optimizer.state[q][key]), key


def test_device_side_nan_streak_stops_at_the_next_logging_step(tmp_path):
    cfg = tiny_cfg("train.nan_limit=3", "train.steps=50", "train.log_every=5")
    good = make_trainer(cfg, tmp_path / "good", until_step=3, log=lambda m: None, device_side=True)
    good.fit()
    bad = make_trainer(
        cfg,
        tmp_path / "bad",
        log=lambda m: None,
        formulation=FlakyFormulation(build_formulation(cfg), range(4, 100)),
        device_side=True,
    )
    # bad from step 4: 2 in a row when step 5 logs, 7 at step 10
    with pytest.raises(TrainingDiverged, match="7 non-finite losses in a row"):
        bad.fit()
    ckpt, _ = io.latest_checkpoint(tmp_path / "bad")
    assert ckpt.step == 10
    weights = ckpt.tensors("model.safetensors")
    for name, value in good.net.state_dict().items():
        assert torch.equal(value, weights[name]), name
