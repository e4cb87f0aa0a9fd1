"""One surface for the drawing verbs (#18 points 5 and 7): one --out rule, one meaning of --n,
--steps as a deprecated spelling of --nfe, resolved names and the weights hash in every
manifest, help texts with defaults, --device/--dtype on every command through one helper, and
accelerate's --mixed_precision winning over the config's value. Bundled models, NFE 2."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from diffusionforge.cli import common
from diffusionforge.cli.main import build_parser
from diffusionforge.errors import UserError

from trainkit import cli

DRAWING = ("sample", "generate", "generate-text", "generate-audio")
DEVICE_COMMANDS = (*DRAWING, "eval", "eval-prompts", "serve", "fit-schedule")


def manifest(folder) -> dict:
    return json.loads((folder / "samples.json").read_text())


# --- one --out rule, one meaning of --n ---------------------------------------------------


def test_class_3_7_n_2_gives_four_in_every_class_verb(tmp_path, capsys):
    """--n counts per class: --class 3,7 --n 2 is four outputs in sample and generate-audio,
    named <verb>-<seed>-<label>.<ext>, listed in samples.json with resolved names."""
    code, _, err = cli(capsys, "sample", "digits", "--class", "3,7", "--n", 2, "--nfe", 2,
                       "--seed", 5, "--out", tmp_path / "s")  # fmt: skip
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "s").glob("sample-*.png"))
    assert names == ["sample-5-3.png", "sample-6-3.png", "sample-7-7.png", "sample-8-7.png"]
    m = manifest(tmp_path / "s")
    assert m["classes"] == [3, 7] and [f["class"] for f in m["files"]] == [3, 3, 7, 7]
    code, _, err = cli(capsys, "generate-audio", "audio-digits", "--class", "3,7", "--n", 2,
                       "--nfe", 2, "--out", tmp_path / "a")  # fmt: skip
    assert code == 0, err
    wavs = sorted(p.name for p in (tmp_path / "a").glob("*.wav"))
    assert wavs == [
        "generate-audio-0-three.wav",
        "generate-audio-1-three.wav",
        "generate-audio-2-seven.wav",
        "generate-audio-3-seven.wav",
    ]
    assert (tmp_path / "a" / "spectrograms.png").is_file()


def test_every_drawing_verb_records_resolved_names_and_the_weights_hash(tmp_path, capsys):
    runs = {
        "sample": ["sample", "digits", "--class", "1", "--n", 1],
        "generate": ["generate", "a red circle", "--n", 2],
        "generate-text": ["generate-text", "grammar", "--prompt", "the cat [____:2] sleeps."],
        "generate-audio": ["generate-audio", "audio-digits", "--class", "1", "--n", 1],
    }
    for verb, args in runs.items():
        out = tmp_path / verb
        code, _, err = cli(capsys, *args, "--nfe", 2, "--out", out)
        assert code == 0, (verb, err)
        m = manifest(out)
        assert m["verb"] == verb
        assert len(m["checkpoint_sha256"]) == 64, verb
        assert m["nfe"] == 2 and m["sampler"] not in (None, "auto"), verb
        if verb != "generate-text":  # token samplers have no sigma schedule
            assert m["schedule"] not in (None, "auto"), verb
        assert m["device"] == "cpu" and m["dtype"] == "float32", verb
        for row in m["files"]:
            assert row["file"].startswith(f"{verb}-{row['seed']}")
            assert (out / row["file"]).is_file()


def test_a_file_out_writes_one_file(tmp_path, capsys):
    for args, name in [
        (["sample", "digits", "--class", "3,7", "--n", 2], "grid.png"),
        (["sample", "digits", "--class", "3", "--n", 2], "arr.npy"),
        (["generate", "a red circle", "two blue squares"], "t.png"),
        (["generate-audio", "audio-digits", "--class", "3,7", "--n", 1], "clips.wav"),
        (["generate-text", "grammar", "--n", 2, "--length", 16], "all.txt"),
    ]:
        folder = tmp_path / name.split(".")[0]
        folder.mkdir()
        code, _, err = cli(capsys, *args, "--nfe", 2, "--out", folder / name)
        assert code == 0, (args, err)
        assert [p.name for p in folder.iterdir()] == [name], args
    import numpy as np

    assert np.load(tmp_path / "arr" / "arr.npy").shape == (2, 1, 8, 8)  # digits are 8x8
    from diffusionforge.pipelines.images import read_metadata

    grid = read_metadata(tmp_path / "grid" / "grid.png")  # a grid records every class
    assert grid["class"] == [3, 7] and grid["classes"] == [3, 3, 7, 7] and grid["count"] == 4
    assert (tmp_path / "all" / "all.txt").read_text().count("--- sample") == 2


def test_reusing_an_out_folder_replaces_only_what_the_tool_wrote(tmp_path, capsys):
    out = tmp_path / "s"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert (
        cli(capsys, "sample", "digits", "--class", "1", "--n", 3, "--nfe", 2, "--out", out)[0] == 0
    )
    code, _, err = cli(capsys, "sample", "digits", "--class", "2", "--n", 1, "--nfe", 2,
                       "--seed", 9, "--out", out)  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [
        "grid.png",
        "notes.txt",
        "sample-9-2.png",
        "samples.json",
    ]
    assert "replaced the 4 file(s)" in err and "1 other file(s), left as they are" in err
    # a samples.json that names a path outside the folder deletes nothing there
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"x")
    (out / "samples.json").write_text(json.dumps({"files": [{"file": "../victim.png"}]}))
    assert (
        cli(capsys, "sample", "digits", "--class", "2", "--n", 1, "--nfe", 2, "--out", out)[0] == 0
    )
    assert victim.is_file()


def test_bad_out_is_one_line_before_any_work(tmp_path, capsys):
    code, _, err = cli(capsys, "generate-audio", "audio-digits", "--out", tmp_path / "x.mp3")
    assert code == 2 and "--out" in err and ".wav, .npy" in err and err.count("\n") == 1
    (tmp_path / "d.png").mkdir()
    code, _, err = cli(capsys, "sample", "digits", "--out", tmp_path / "d.png")
    assert code == 2 and "a folder" in err


# --- --steps / --nfe ---------------------------------------------------------------------


def test_steps_is_a_deprecated_spelling_of_nfe_in_drawing_verbs(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    code, _, err = cli(capsys, "sample", "digits", "--class", "4", "--n", 1, "--steps", 3,
                       "--out", a)  # fmt: skip
    assert code == 0 and "--steps means --nfe here" in err and "use --nfe" in err
    assert cli(capsys, "sample", "digits", "--class", "4", "--n", 1, "--nfe", 3, "--out", b)[0] == 0
    assert manifest(a)["nfe"] == manifest(b)["nfe"] == 3
    assert (a / "sample-0-4.png").read_bytes() == (b / "sample-0-4.png").read_bytes()
    code, _, err = cli(capsys, "sample", "digits", "--steps", 3, "--nfe", 4)
    assert code == 2 and "give --nfe only" in err
    for verb in DRAWING:  # hidden from help: one name in the docs
        help_text = build_parser()._subparsers._group_actions[0].choices[verb].format_help()
        assert "--nfe" in help_text and "--steps" not in help_text, verb


def test_http_api_takes_nfe_and_steps_as_its_alias():
    from diffusionforge.server.audio_handler import AudioParams
    from diffusionforge.server.diffusers_handler import DiffusersParams
    from diffusionforge.server.image_handler import ImageParams
    from diffusionforge.server.t2i_handler import Text2ImageParams
    from diffusionforge.server.text_handler import TextParams

    base = {"model": "m", "prompt": "a red circle"}
    for params in (AudioParams, DiffusersParams, ImageParams, Text2ImageParams, TextParams):
        extra = {} if "prompt" in params.model_fields else None
        body = base if extra is not None else {"model": "m"}
        assert params.model_validate({**body, "steps": 7}).nfe == 7, params.__name__
        assert params.model_validate({**body, "nfe": 6}).nfe == 6, params.__name__
        assert "nfe" in params.model_json_schema()["properties"], params.__name__


# --- help, devices, precision ------------------------------------------------------------


def test_help_shows_defaults():
    choices = build_parser()._subparsers._group_actions[0].choices
    text = " ".join(choices["generate-audio"].format_help().split())
    assert "--nfe NFE network evaluations per clip (default: 16)" in text
    assert "--guidance GUIDANCE classifier-free guidance scale (default: 2.0)" in text
    assert "(default: None)" not in text and "(default: False)" not in text
    text = " ".join(choices["generate"].format_help().split())
    assert "(default: )" not in text
    assert "--nfe NFE network evaluations per image (default: 20)" in text


@pytest.mark.parametrize("command", DEVICE_COMMANDS)
def test_every_running_command_has_device_and_dtype(command):
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    flags = {s: a for a in sub._actions for s in a.option_strings}
    assert flags["--device"].default == "auto" and flags["--dtype"].default == "float32"


def _ns(**kw):
    return argparse.Namespace(**{"device": "auto", "dtype": "float32", **kw})


def test_resolve_device_picks_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert common.resolve_device(_ns()).type == "cpu"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert str(common.resolve_device(_ns())) == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    args = _ns()
    assert str(common.resolve_device(args)) == "cuda" and args.device == "cuda"
    assert str(common.resolve_device(_ns(device="cuda:1"))) == "cuda:1"
    with pytest.raises(UserError, match="only 2 CUDA"):
        common.resolve_device(_ns(device="cuda:2"))
    # a part that runs on the cpu only so far: auto is the cpu, a named GPU one line
    assert common.resolve_device(_ns(), cpu_only="the server").type == "cpu"
    with pytest.raises(UserError, match="the server runs on the cpu only"):
        common.resolve_device(_ns(device="cuda"), cpu_only="the server")


def test_resolve_device_errors_are_one_line(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for device, words in [("gpu7", "expected auto, cpu"), ("cuda", "no CUDA"), ("mps", "no MPS")]:
        with pytest.raises(UserError, match=words):
            common.resolve_device(_ns(device=device))
    with pytest.raises(UserError, match="--dtype: expected one of float32"):
        common.resolve_device(_ns(dtype="float64"))
    assert common.resolve_device(_ns(dtype="bfloat16")).type == "cpu"
    assert "warning: --dtype bfloat16 on the cpu" in capsys.readouterr().err
    code, _, err = cli(capsys, "generate", "x", "--device", "cuda")
    assert code == 2 and err == "error: --device cuda: no CUDA device is available here\n"


def test_precision_is_autocast_in_the_asked_dtype():
    args = _ns(device="cpu", dtype="bfloat16")
    lin = torch.nn.Linear(4, 4)
    x = torch.ones(2, 4)
    with common.precision(args):
        assert lin(x).dtype == torch.bfloat16
    with common.precision(_ns(device="cpu")):
        assert lin(x).dtype == torch.float32


def test_on_device_moves_arguments_and_returns_cpu_float32():
    calls = []

    def fn(x, sigma, cond=None):
        calls.append((x.device.type, sigma.device.type))
        return (x * 2).half()

    moved = common.on_device(fn, torch.nn.Linear(1, 1), torch.device("cpu"))
    assert moved is fn  # the cpu: nothing wrapped
    meta = common.on_device(fn, torch.nn.Linear(1, 1), torch.device("meta"))
    with pytest.raises(NotImplementedError):  # meta tensors cannot come back: it did move them
        meta(torch.ones(2), torch.ones(2))
    assert calls == [("meta", "meta")]


def test_a_bf16_draw_stays_close_to_float32(tmp_path, capsys):
    """Autocast bfloat16 (what --dtype does on cuda/mps) on the bundled digits: the image
    moves by at most a few bfloat16 roundings (8 bits of mantissa: 2**-8 relative)."""
    from diffusionforge.pipelines.pipeline import load_pipeline

    torch.set_num_threads(1)
    pipe = load_pipeline("digits")
    ref = pipe.generate_images([0, 1], labels=[3, 7], nfe=4)
    with common.precision(_ns(device="cpu", dtype="bfloat16")):
        low = pipe.generate_images([0, 1], labels=[3, 7], nfe=4)
    assert low.dtype == torch.float32
    assert (low - ref).abs().mean() < 0.05 and (low - ref).abs().max() < 0.5


# --- accelerate launch --mixed_precision ---------------------------------------------------


def test_accelerate_launch_mixed_precision_wins_over_the_config(monkeypatch, capsys):
    from diffusionforge.train.config import load_preset

    cfg = load_preset("moons")
    assert cfg.train.mixed_precision == "no"
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    got = common.launcher_precision(cfg, [])
    assert got.train.mixed_precision == "bf16"
    assert "mixed precision: bf16 (accelerate launch --mixed_precision)" in capsys.readouterr().err
    kept = common.launcher_precision(load_preset("moons"), ["train.mixed_precision=no"])  # --set
    assert kept.train.mixed_precision == "no" and "--set" in capsys.readouterr().err
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")  # the launcher's default: no say
    assert common.launcher_precision(load_preset("moons"), []).train.mixed_precision == "no"
    assert capsys.readouterr().err == ""


# --- progress without a terminal -----------------------------------------------------------


def test_train_no_progress_logs_loss_lines_periodically(tmp_path, monkeypatch, capsys):
    """`train --no-progress` (or a log file) writes plain step/loss lines, at most every
    PLAIN_EVERY seconds (30); with the interval at zero, one per logged step."""
    from diffusionforge.train import trainer_progress

    monkeypatch.setattr(trainer_progress, "PLAIN_EVERY", 0.0)
    code, out, err = cli(capsys, "train", "--preset", "moons", "--steps", 20, "--set",
                         "train.log_every=5", "--set", "train.batch_size=16", "--no-progress",
                         "--run-dir", tmp_path / "run")  # fmt: skip
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if ln.startswith("step ") and " loss " in ln]
    assert [ln.split()[1] for ln in lines] == ["5/20", "10/20", "15/20", "20/20"], err
