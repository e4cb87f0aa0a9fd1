"""Reliability of the command line and of config loading (issue 14): every number a person can
type is bounded (diffusionforge/limits.py) and every bad one ends in one line `error: ...` and
exit code 2, before any model is loaded or any memory grows; a full disk is one line too, and
`sample` writes its output whole or not at all, never NaN.

Add a case by appending to the tables below; checkpoints live in
test_reliability_checkpoints.py, data files and image folders in test_reliability_data.py."""

from __future__ import annotations

import errno
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusionforge import limits
from diffusionforge.cli import main
from diffusionforge.errors import ConfigError, UserError
from diffusionforge.train import checkpoint as io
from diffusionforge.train.config import apply_overrides, load_config_file, load_preset

from trainkit import assert_one_line_error, cli, tiny_args

HUGE = "99999999999999999999999"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished tiny 2-D run (checkpoints at steps 10 and 20)."""
    folder = tmp_path_factory.mktemp("run")
    assert main(["train", *tiny_args(), "--run-dir", str(folder)]) == 0
    return folder


# --- numbers on the command line: checked for every command before it runs ------------------

BAD_FLAGS = [
    (["sample", "digits", "--n", "1000000000"], "--n: 1000000000 is above the limit"),
    (["sample", "digits", "--nfe", "1000000000"], "--nfe: 1000000000 is above the limit"),
    (["sample", "digits", "--steps", "1000000000"], "--nfe"),
    (["sample", "digits", "--seed", HUGE], "--seed: expected a whole number in [0, 4294967295]"),
    (["sample", "digits", "--seed", "-9223372036854775809"], "--seed"),
    (["sample", "digits", "--seed", "-1"], "--seed"),
    (["sample", "digits", "--guidance", "nan"], "--guidance: expected a finite number"),
    (["sample", "digits", "--guidance", "inf"], "--guidance"),
    (["sample", "digits", "--threads", "100000"], "--threads"),
    (["sample", "digits", "--strength", "nan"], "--strength"),
    (["train", "--preset", "moons", "--seed", HUGE], "--seed"),
    (["train", "--preset", "moons", "--seed", "-9223372036854775809"], "--seed"),
    (["train", "--preset", "moons", "--steps", HUGE], "--steps"),
    (["train", "--preset", "moons", "--until-step", HUGE], "--until-step"),
    (["generate", "a red circle", "--n", "1000000000"], "--n"),
    (["generate", "a red circle", "--nfe", "1000000000"], "--nfe"),
    (["generate", "a red circle", "--seed", HUGE], "--seed"),
    (["generate", "a red circle", "--guidance", "nan"], "--guidance"),
    (["generate", "a red circle", "--strength", "inf"], "--strength"),
    (["generate-text", "grammar", "--n", "1000000000"], "--n"),
    (["generate-text", "grammar", "--nfe", "1000000000"], "--nfe"),
    (["generate-text", "grammar", "--seed", HUGE], "--seed"),
    (["generate-text", "grammar", "--temperature", "nan"], "--temperature"),
    (["generate-text", "grammar", "--top-p", "inf"], "--top-p"),
    (["generate-text", "grammar", "--top-k", HUGE], "--top-k"),
    (["generate-text", "grammar", "--hole", HUGE], "--hole"),
    (["generate-audio", "audio-digits", "--n", "1000000000"], "--n"),
    (["generate-audio", "audio-digits", "--nfe", "1000000000"], "--nfe"),
    (["generate-audio", "audio-digits", "--seed", HUGE], "--seed"),
    (["generate-audio", "audio-digits", "--guidance", "nan"], "--guidance"),
    (["eval", "digits", "--n", "1000000000"], "--n"),
    (["eval", "digits", "--sweep-n", "1000000000"], "--sweep-n"),
    (["eval", "digits", "--alpha", "nan"], "--alpha"),
    (["eval", "digits", "--seed", HUGE], "--seed"),
    (["eval-prompts", "t2i-scenes", "--n", "1000000000"], "--n"),
    (["eval-prompts", "t2i-scenes", "--seed", HUGE], "--seed"),
    (["eval-prompts", "t2i-scenes", "--batch-size", HUGE], "--batch-size"),
    (["ema", "somewhere", "--sigma-rel", "nan", "--out", "x"], "--sigma-rel"),
    (["ema", "somewhere", "--sigma-rel", "0.05", "--step", HUGE, "--out", "x"], "--step"),
    (["generate-text", "grammar", "--threads", "0"], "--threads: expected a positive"),
    (["generate-audio", "audio-digits", "--threads", "0"], "--threads"),
    (["generate-audio", "audio-digits", "--guidance", "-1"], "--guidance"),
    (["generate-audio", "audio-digits", "--n", "20000"], "DIFFUSIONFORGE_MAX_N"),  # x 10 classes
    (["eval", "digits", "--sweep-nfe", "4,1000000000"], "--sweep-nfe: 1000000000 is above"),
    (["eval-prompts", "t2i-scenes", "--nfe", "10,1000000000"], "--nfe: 1000000000 is above"),
    (["eval-prompts", "t2i-scenes", "--guidance", "nan"], "--guidance: expected finite"),
    (["eval-prompts", "t2i-scenes", "--guidance", "2,inf"], "--guidance: expected finite"),
    (["ema", "somewhere", "--sigma-rel", "0.05", "--step", "-5", "--out", "x"], "--step"),
    (["generate", "a \udcff circle"], "prompt: not valid UTF-8"),
    (["generate", "a red circle", "--negative", "\udcff"], "--negative: not valid UTF-8"),
    (["generate-text", "grammar", "--prompt", "the \udcff [____]"], "--prompt: not valid"),
    (["serve", "--max-n", HUGE], "--max-n"),
    (["serve", "--max-nfe", "1000000000"], "--max-nfe"),
    (["serve", "--job-timeout", "nan"], "--job-timeout"),
]


@pytest.mark.parametrize(("args", "needle"), BAD_FLAGS, ids=lambda v: " ".join(v)[:60])
def test_bad_numbers_on_the_command_line_are_one_line(capsys, args, needle):
    code, out, err = cli(capsys, *args)
    assert code == 2, (code, err)
    line = assert_one_line_error(err)
    assert needle in line, line


def test_a_limit_is_raised_by_its_environment_variable(monkeypatch):
    with pytest.raises(UserError, match="DIFFUSIONFORGE_MAX_NFE"):
        limits.check_count(1500, "--nfe", bound="nfe")
    monkeypatch.setenv("DIFFUSIONFORGE_MAX_NFE", "2000")
    assert limits.check_count(1500, "--nfe", bound="nfe") == 1500
    monkeypatch.setenv("DIFFUSIONFORGE_MAX_NFE", "lots")
    with pytest.raises(UserError, match="DIFFUSIONFORGE_MAX_NFE: expected a positive"):
        limits.limit("nfe")


def test_the_server_defaults_come_from_the_limits_module():
    from diffusionforge.server.settings import Limits

    assert (Limits().max_n, Limits().max_nfe) == (limits.SERVER_MAX_N, limits.SERVER_MAX_NFE)
    assert limits.SERVER_MAX_N <= limits.limit("n") and limits.SERVER_MAX_NFE <= limits.limit("nfe")


def test_samples_beyond_the_values_limit_are_refused_before_drawing(capsys, run, monkeypatch):
    monkeypatch.setenv("DIFFUSIONFORGE_MAX_VALUES", "1000")  # 2-D points: at most 500
    code, _, err = cli(capsys, "sample", run, "--n", "501", "--out", run / "s.npy")
    assert code == 2 and "DIFFUSIONFORGE_MAX_VALUES" in assert_one_line_error(err)
    assert not (run / "s.npy").exists()


def test_ema_never_replaces_a_file_by_a_checkpoint(capsys, run):
    victim = run / "config.json"
    before = victim.read_bytes()
    code, _, err = cli(capsys, "ema", run, "--sigma-rel", "0.05", "--out", victim)
    assert code == 2 and "not a checkpoint folder" in assert_one_line_error(err)
    assert victim.read_bytes() == before


# --- config values: refused when the config is loaded ---------------------------------------

BAD_SETTINGS = [
    ("optim.lr=nan", "optim.lr: expected a finite number"),
    ("optim.lr=inf", "optim.lr: expected a finite number"),
    ("optim.lr=-1", "optim.lr"),
    ("optim.eps=0", "optim.eps"),
    ("optim.weight_decay=-0.1", "optim.weight_decay"),
    ("optim.grad_clip=nan", "optim.grad_clip"),
    ("optim.min_lr_ratio=2", "optim.min_lr_ratio"),
    ("optim.betas=[nan,0.9]", "optim.betas[0]"),
    ("ema.stds=[nan]", "ema.stds[0]"),
    ("ema.decay=nan", "ema.decay"),
    ("sample.sampler=bogus", "sample.sampler: expected auto or one of"),
    ("sample.schedule=bogus", "sample.schedule: expected auto or one of"),
    ("sample.nfe=1000000000", "sample.nfe"),
    ("sample.n=1000000000", "sample.n"),
    ("sample.seed=-1", "sample.seed"),
    ("sample.guidance=inf", "sample.guidance"),
    ("train.ckpt_every=-1", "train.ckpt_every: expected 0 or more"),
    ("train.sample_every=-1", "train.sample_every"),
    ("train.log_every=0", "train.log_every"),
    ("train.keep_last=0", "train.keep_last"),
    ("train.threads=-1", "train.threads"),
    ("train.threads=1000000", "train.threads"),
    (f"train.seed={HUGE}", "train.seed"),
    ("train.seed=-9223372036854775809", "train.seed"),
    ("train.steps=100000000000", "train.steps"),
    ("train.label_dropout=nan", "train.label_dropout"),
    ("data.seed=-1", "data.seed"),
    ("data.size=-5", "data.size"),
    ("data.jitter=-1", "data.jitter"),
    ("data.image_size=100000000", "data.image_size"),
    ("data.image_size=99999", "DIFFUSIONFORGE_MAX_IMAGE_SIDE"),
    ("data.audio.seconds=100000000", "data.audio: seconds x rate"),
    ("model.mlp.hidden=1000000000", "model.mlp.hidden"),
    ("model.mlp.depth=1000000", "model.mlp.depth"),
    ("model.num_classes=100000000", "model.num_classes"),
    ("formulation.sigma_data=0", "formulation.sigma_data"),
    ("formulation.sigma_data=nan", "formulation.sigma_data"),
    ("formulation.p_std=-1", "formulation.p_std"),
    ("formulation.shift=inf", "formulation.shift"),
    ("data.audio.rate=0", "data.audio.rate"),
    ("data.text.length=-1", "data.text.length"),
]


@pytest.mark.parametrize(("setting", "needle"), BAD_SETTINGS)
def test_bad_config_values_are_refused_at_load(capsys, tmp_path, setting, needle):
    code, _, err = cli(
        capsys, "train", "--preset", "moons", "--set", setting, "--run-dir", tmp_path / "r"
    )
    assert code == 2, err
    assert needle in assert_one_line_error(err)
    assert not (tmp_path / "r").exists()  # refused before the run folder was made


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_numbers_in_a_toml_file_are_refused(tmp_path, value):
    path = tmp_path / "bad.toml"
    path.write_text(f'preset = "moons"\n[optim]\nlr = {value}\n')
    with pytest.raises(ConfigError, match="optim.lr: expected a finite number"):
        load_config_file(path)


def test_every_preset_passes_the_checks():
    from diffusionforge.train.config import preset_names

    for name in preset_names():
        apply_overrides(load_preset(name), [])


def test_a_model_above_the_parameter_limit_is_refused_before_allocating(monkeypatch):
    from diffusionforge.train.builders import build_model, parameter_count

    cfg = apply_overrides(load_preset("moons"), ["model.mlp.hidden=200000"])
    assert parameter_count(cfg, (2,)) > 4 * 200000**2  # counted on the meta device
    with pytest.raises(ConfigError, match="DIFFUSIONFORGE_MAX_PARAMETERS"):
        build_model(cfg, (2,))


# --- training that diverges never leaves non-finite weights -------------------------------


def test_a_huge_learning_rate_never_writes_non_finite_weights(capsys, tmp_path):
    code, _, err = cli(capsys, "train", *tiny_args("optim.lr=1e30"), "--run-dir", tmp_path / "r")
    assert code == 3 and "error: training stopped" in err and "Traceback" not in err
    for folder in io.list_checkpoints(tmp_path / "r"):
        ckpt = io.load_checkpoint(folder)
        for rel in ("model.safetensors", "ema.safetensors"):
            for t in ckpt.tensors(rel).values():
                assert torch.isfinite(t).all(), (folder, rel)
    # whatever was saved, `sample` refuses to write NaN from it
    code, _, err = cli(capsys, "sample", tmp_path / "r", "--out", tmp_path / "s.npy")
    if code != 0:
        assert "NaN or infinite" in assert_one_line_error(err)
        assert not (tmp_path / "s.npy").exists()
    else:
        assert np.isfinite(np.load(tmp_path / "s.npy")).all()


def test_weights_that_became_non_finite_are_never_saved(tmp_path):
    from diffusionforge.errors import TrainingDiverged
    from diffusionforge.modalities import make_trainer

    from trainkit import tiny_cfg

    trainer = make_trainer(tiny_cfg(), tmp_path / "r", until_step=3, log=lambda m: None)
    trainer._setup()
    with torch.no_grad():
        next(trainer.net.parameters()).fill_(math.inf)
    with pytest.raises(TrainingDiverged, match="no longer finite"):
        trainer._save()
    assert io.list_checkpoints(tmp_path / "r") == []


def test_sample_refuses_nan_output():
    from diffusionforge.pipelines.outputs import check_finite_output

    check_finite_output(torch.zeros(3, 2), "ckpt")
    with pytest.raises(UserError, match="1 NaN or infinite"):
        check_finite_output(torch.tensor([[0.0, math.nan]]), "ckpt")


# --- a full disk --------------------------------------------------------------------------


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_train_on_a_full_disk_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(io, "write_file", _enospc)
    code, _, err = cli(capsys, "train", *tiny_args(), "--run-dir", tmp_path / "r")
    assert code == 2
    line = assert_one_line_error(err)
    assert "config.json" in line and "disk full" in line


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_sample_npy_on_a_full_disk_leaves_nothing(capsys, run, tmp_path, monkeypatch):
    out = tmp_path / "o"
    out.mkdir()

    def half_then_full(file, array, *a, **k):
        file.write(b"\x93NUMPY partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", half_then_full)
    code, _, err = cli(capsys, "sample", run, "--n", "10", "--out", out / "s.npy")
    assert code == 2 and "disk full" in assert_one_line_error(err)
    assert _leftovers(out) == []


def test_sample_png_on_a_full_disk_leaves_nothing(capsys, tmp_path, monkeypatch):
    from PIL import Image

    out = tmp_path / "o"
    out.mkdir()
    real_save = Image.Image.save
    calls = []

    def second_save_fails(self, fp, *a, **k):  # the first single PNG lands, then the disk fills
        calls.append(fp)
        if len(calls) > 1:
            Path(fp).write_bytes(b"\x89PNG partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, fp, *a, **k)

    monkeypatch.setattr(Image.Image, "save", second_save_fails)
    code, _, err = cli(
        capsys, "sample", "digits", "--n", "2", "--class", "3", "--nfe", "1",
        "--out", out / "s",
    )  # fmt: skip
    assert code == 2 and "disk full" in assert_one_line_error(err)
    assert _leftovers(out / "s") == []  # the folder --out named stays, empty


def test_any_os_error_of_a_command_is_one_line(capsys, tmp_path, monkeypatch):
    from diffusionforge.train import trainer

    def boom(self):
        raise OSError(errno.EIO, "Input/output error", str(tmp_path / "x"))

    monkeypatch.setattr(trainer.Trainer, "fit", boom)
    code, _, err = cli(capsys, "train", *tiny_args(), "--run-dir", tmp_path / "r")
    assert code == 2 and "Input/output error" in assert_one_line_error(err)


# --- fit-schedule -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--nfe", "0"], "--nfe"),
        (["--nfe", HUGE], "--nfe"),
        (["--seconds", "nan"], "--seconds"),
        (["--seconds", "-1"], "--seconds"),
        (["--seed", HUGE], "--seed"),
        (["--batch", "0"], "--batch"),
        (["--guidance", "inf"], "--guidance"),
        (["--class", "3"], "--class"),
        (["--out", "/dev/null/x"], "--out"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_bad_fit_schedule_flags_are_one_line(capsys, run, flags, needle):
    code, _, err = cli(capsys, "fit-schedule", run, "--seconds", "0.2", *flags)
    assert code == 2 and needle in assert_one_line_error(err)


def test_fit_schedule_fits_a_repeated_nfe_once(capsys, run, tmp_path, monkeypatch):
    from diffusionforge.pipelines import fitted_schedules

    seen = []

    def fake(denoise, shape, nfes, **kw):  # the flags' NFE list, not a timed fit
        seen.extend(nfes)
        return []

    monkeypatch.setattr(fitted_schedules, "fit_entries", fake)
    cli(capsys, "fit-schedule", run, "--nfe", "5,5,8", "--out", tmp_path / "fitted")
    assert seen == [5, 8]
