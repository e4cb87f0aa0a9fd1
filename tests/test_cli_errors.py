"""Every bad input a person can give ends in one line, `error: ...`, exit code 2, and loses
nothing (issue 3, item 11). Most cases call `main()` in-process (fast); a few run the real
console entry point to check the process exit code and that no traceback escapes."""

from __future__ import annotations

import errno

import numpy as np
import pytest

from diffusionforge.cli import main
from diffusionforge.train import checkpoint as io

from trainkit import assert_one_line_error, cli, run_cli, tiny_args


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished tiny run with checkpoints at steps 10 and 20."""
    run = tmp_path_factory.mktemp("run")
    assert main(["train", *tiny_args(), "--run-dir", str(run)]) == 0
    return run


def _fresh_copy(trained, tmp_path):
    import shutil

    dst = tmp_path / "run"
    shutil.copytree(trained, dst)
    return dst


def _snapshot(run) -> dict:
    return {
        p.relative_to(run): p.read_bytes() for p in (run / "checkpoints").rglob("*") if p.is_file()
    }


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train"], "--preset NAME or --config FILE"),
        (["train", "--preset", "nope"], "unknown preset 'nope'"),
        (["train", "--preset", "moons", "--set", "optim.lr=fast"], "optim.lr"),
        (["train", "--preset", "moons", "--set", "optim.nope=1"], "optim.nope"),
        (["train", "--preset", "moons", "--set", "justakey"], "key=value"),
        (["train", "--preset", "moons", "--max-time", "soon"], "--max-time"),
        (["train", "--preset", "moons", "--max-cpu-time", "x"], "--max-cpu-time"),
        (["train", "--preset", "moons", "--data", "/no/such/file.npy"], "no such file"),
        (["train", "--config", "/no/such.toml"], "config file not found"),
        (["train", "--preset", "moons", "--resume", "/no/such/ckpt"], "no such checkpoint"),
        (["train", "--preset", "moons", "--steps", "x"], "invalid int"),
        (["sample", "/no/such/ckpt"], "no such checkpoint"),
        (["info", "/no/such/ckpt"], "no such checkpoint"),
        (["sample", "/x", "--device", "gpu7"], "--device"),
        (["sample", "/x", "--nfe", "0"], "--nfe"),
        (["sample", "/x", "--out", "samples.txt"], "a folder (one file per sample) or a file"),
        (["nonsense"], "invalid choice"),
        (["demo", "--section", "nope"], "--section"),
        (["ema", "/no/run", "--sigma-rel", "0.5", "--out", "x"], "--sigma-rel"),
    ],
)
def test_bad_arguments(capsys, args, needle):
    code, _, err = cli(capsys, *args)
    assert code == 2
    assert needle in assert_one_line_error(err)


@pytest.mark.parametrize("kind", ["empty", "malformed", "truncated", "strings"])
def test_bad_npy_data(capsys, tmp_path, kind):
    path = tmp_path / "data.npy"
    if kind == "empty":
        np.save(path, np.zeros((0, 2), dtype=np.float32))
    elif kind == "malformed":
        path.write_bytes(b"\x93NUMPY garbage that is not a header")
    elif kind == "truncated":
        np.save(path, np.random.default_rng(0).normal(size=(1000, 2)))
        path.write_bytes(path.read_bytes()[:300])
    else:
        np.save(path, np.array(["a", "b"]))
    code, _, err = cli(
        capsys, "train", *tiny_args(), "--data", str(path), "--run-dir", str(tmp_path / "run")
    )
    assert code == 2
    assert str(path) in assert_one_line_error(err)


@pytest.mark.parametrize("damage", ["zero_bytes", "cut_header", "flip_bits"])
@pytest.mark.parametrize("command", ["sample", "info", "resume"])
def test_corrupt_checkpoint(capsys, trained, tmp_path, damage, command):
    run = _fresh_copy(trained, tmp_path)
    newest = io.list_checkpoints(run)[-1]
    target = newest / "model.safetensors"
    data = target.read_bytes()
    if damage == "zero_bytes":
        target.write_bytes(b"")
    elif damage == "cut_header":
        target.write_bytes(data[:6])
    else:
        flipped = bytearray(data)
        for i in range(len(data) // 2, len(data) // 2 + 4):
            flipped[i] ^= 0xFF
        target.write_bytes(bytes(flipped))
    before = _snapshot(run)
    if command == "sample":
        args = ["sample", str(newest), "--out", str(tmp_path / "s.npy")]
    elif command == "info":
        args = ["info", str(newest)]
    else:
        args = ["train", *tiny_args(), "--run-dir", str(run), "--resume", str(newest)]
    code, _, err = cli(capsys, *args)
    assert code == 2
    assert "corrupt checkpoint" in assert_one_line_error(err)
    assert _snapshot(run) == before  # nothing was overwritten or deleted
    assert not (tmp_path / "s.npy").exists()


def test_resume_auto_skips_a_corrupt_newest_checkpoint(capsys, trained, tmp_path):
    run = _fresh_copy(trained, tmp_path)
    newest = io.list_checkpoints(run)[-1]
    (newest / "model.safetensors").write_bytes(b"")
    code, out, err = cli(
        capsys, "train", *tiny_args("train.steps=25"), "--run-dir", str(run), "--resume", "auto"
    )
    assert code == 0, err
    assert "skipping" in err and "resumed from" in err and "step-000000010" in err
    assert "finished at step 25" in out


def test_unwritable_output_folders(capsys, trained, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, _, err = cli(capsys, "train", *tiny_args(), "--run-dir", str(blocker / "run"))
    assert code == 2 and "not writable" in assert_one_line_error(err)
    code, _, err = cli(capsys, "sample", str(trained), "--out", str(blocker / "s.npy"))
    assert code == 2 and "not writable" in assert_one_line_error(err)
    code, _, err = cli(capsys, "demo", "--out", str(blocker / "demo"))
    assert code == 2 and "not writable" in assert_one_line_error(err)


def test_disk_full_while_saving_keeps_the_previous_checkpoint(
    capsys, trained, tmp_path, monkeypatch
):
    run = _fresh_copy(trained, tmp_path)
    before = _snapshot(run)
    real, calls = io.write_file, []

    def full(path, data):
        calls.append(path)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(io, "write_file", full)
    code, _, err = cli(
        capsys, "train", *tiny_args("train.steps=30"), "--run-dir", str(run), "--resume", "auto"
    )
    assert code == 2
    # progress lines came before the failure; the failure itself is one line, no traceback
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0])
    line = errors[0]
    assert "disk full" in line and "earlier checkpoints kept" in line
    assert _snapshot(run) == before
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".tmp")]


def test_real_process_exit_codes(tmp_path):
    """The installed entry point: exit 2, one line, no traceback (argparse and our errors)."""
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 3)))
    assert_one_line_error(run_cli(["train", "--preset", "moons", "--data", str(empty)]))
    assert_one_line_error(run_cli(["sample", str(tmp_path), "--n", "0"]))
    assert_one_line_error(run_cli(["train", "--preset", "moons", "--set", "a.b.c=1"]))
