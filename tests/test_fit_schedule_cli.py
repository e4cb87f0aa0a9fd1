"""fit-schedule: fitted sigmas stored in a checkpoint (schedules.json, in the manifest) and used
by sampling for that NFE and sampler unless a schedule is named. The fit itself is replaced by a
stub here (core.fit_schedule has its own closed-form tests), so these tests do not depend on
the machine's speed."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import pytest
import torch

from diffusionforge.cli import main
from diffusionforge.core.samplers import SAMPLER_INFO
from diffusionforge.pipelines import fitted_schedules
from diffusionforge.pipelines.pipeline import load_pipeline
from diffusionforge.train.checkpoint import load_checkpoint

FAKE = [80.0, 9.0, 2.0, 0.7, 0.3, 0.12, 0.05, 0.02, 0.0]  # 8 steps: unipc at NFE 8


@pytest.fixture
def digits(tmp_path) -> Path:
    dst = tmp_path / "digits"
    shutil.copytree(Path(str(resources.files("diffusionforge.assets") / "digits")), dst)
    return dst


@pytest.fixture
def stub_fit(monkeypatch):
    calls = []

    def fake(denoise, shape, nfe, **kw):
        calls.append((tuple(shape), nfe, kw))
        kw["callback"]({"phase": "search", "trajectories": shape[0], "rms": 0.01})
        steps = len(FAKE) - 1 if nfe == 8 else SAMPLER_INFO[kw["sampler"]].steps_for(nfe)
        return torch.tensor(
            FAKE if nfe == 8 else [80.0] + [1.0 / (i + 1) for i in range(steps)][:-1] + [0.0],
            dtype=torch.float64,
        )

    monkeypatch.setattr(fitted_schedules, "fit_schedule", fake)
    return calls


def test_fit_schedule_writes_a_manifest_listed_file_that_sampling_uses(digits, stub_fit, capsys):
    assert main(["fit-schedule", str(digits), "--nfe", "8", "--seconds", "5", "--batch", "4"]) == 0
    shape, nfe, kw = stub_fit[0]
    assert shape == (4, 1, 8, 8) and nfe == 8 and kw["sampler"] == "unipc_gaussian"
    assert kw["cond"].tolist() == [0, 1, 2, 3] and kw["seconds"] == 5.0
    assert "wrote 1 fitted schedule(s)" in capsys.readouterr().out
    ckpt = load_checkpoint(digits)  # verified against the manifest
    table = json.loads(ckpt.files["schedules.json"])
    assert table["entries"][0]["sigmas"] == FAKE and table["entries"][0]["nfe"] == 8
    pipe = load_pipeline(digits)
    plan = pipe.plan(8)
    assert plan.schedule == "fitted" and plan.sampler == "unipc_gaussian"
    assert plan.sigmas(0.002, 80.0).tolist() == FAKE
    assert pipe.plan(8, schedule="karras").schedule == "karras"  # a named schedule overrides
    assert pipe.plan(10).schedule != "fitted"  # no entry for 10 steps
    assert pipe.plan(8, sampler="heun").schedule != "fitted"  # fitted for another sampler


def test_a_budget_in_network_calls_is_passed_on_and_recorded(digits, monkeypatch, capsys):
    def fake(denoise, shape, nfe, **kw):
        kw["callback"]({"phase": "search", "trajectories": 4, "rms": 0.01, "calls": 290})
        return torch.tensor(FAKE, dtype=torch.float64)

    seen = []
    monkeypatch.setattr(
        fitted_schedules, "fit_schedule", lambda *a, **kw: seen.append(kw) or fake(*a, **kw)
    )
    assert main(["fit-schedule", str(digits), "--nfe", "8", "--calls", "300"]) == 0
    assert seen[0]["calls"] == 300
    assert "290 network calls" in capsys.readouterr().out
    entry = json.loads(load_checkpoint(digits).files["schedules.json"])["entries"][0]
    assert entry["calls"] == 290


def test_refitting_one_nfe_keeps_the_others(digits, stub_fit):
    assert main(["fit-schedule", str(digits), "--nfe", "8,5", "--seconds", "5"]) == 0
    assert main(["fit-schedule", str(digits), "--nfe", "8", "--seconds", "5"]) == 0
    entries = json.loads(load_checkpoint(digits).files["schedules.json"])["entries"]
    assert [e["nfe"] for e in entries] == [5, 8]


def test_a_fit_for_another_sampler_sits_beside_the_recommended_one(digits, stub_fit):
    """--sampler heun fits for Heun; sampling with --sampler heun at that NFE uses it, the
    recommended sampler keeps its own entry, and refitting one replaces only that one."""
    assert main(["fit-schedule", str(digits), "--nfe", "8", "--seconds", "5"]) == 0
    argv = ["fit-schedule", str(digits), "--nfe", "16", "--sampler", "heun", "--seconds", "5"]
    assert main(argv) == 0
    assert stub_fit[-1][2]["sampler"] == "heun" and stub_fit[-1][1] == 16
    assert main(argv) == 0  # refit: replaces the heun entry only
    entries = json.loads(load_checkpoint(digits).files["schedules.json"])["entries"]
    assert [(e["nfe"], e["sampler"]) for e in entries] == [(8, "unipc_gaussian"), (16, "heun")]
    pipe = load_pipeline(digits)
    plan = pipe.plan(16, sampler="heun")
    assert plan.schedule == "fitted" and plan.sigmas(0.002, 80.0).tolist() == entries[1]["sigmas"]
    assert pipe.plan(8).schedule == "fitted" and pipe.plan(16).schedule != "fitted"


def test_a_fit_is_used_only_at_the_guidance_it_was_fitted_for(digits, stub_fit, tmp_path, capsys):
    argv = ["fit-schedule", str(digits), "--nfe", "8", "--seconds", "5", "--guidance", "2"]
    assert main(argv) == 0
    (entry,) = json.loads(load_checkpoint(digits).files["schedules.json"])["entries"]
    assert entry["guidance"] == 2.0
    pipe = load_pipeline(digits)
    assert pipe.plan(8, guidance=2.0).schedule == "fitted"
    assert pipe.plan(8, guidance=1.0).schedule != "fitted"  # another ODE: the default
    assert pipe.plan(8).schedule == "fitted"  # guidance not given: any entry matches
    capsys.readouterr()
    for scale, used in (("1", False), ("2", True)):
        out = tmp_path / f"g{scale}.png"
        argv = ["sample", str(digits), "--nfe", "8", "--n", "1", "--class", "3"]
        assert main([*argv, "--guidance", scale, "--out", str(out)]) == 0
        assert ("fitted, NFE 8" in capsys.readouterr().out) is used


def test_sample_says_it_used_the_fitted_schedule(digits, stub_fit, tmp_path, capsys):
    assert main(["fit-schedule", str(digits), "--nfe", "8", "--seconds", "5"]) == 0
    out = tmp_path / "s.png"
    assert (
        main(["sample", str(digits), "--nfe", "8", "--n", "2", "--class", "3", "--out", str(out)])
        == 0
    )
    assert "fitted, NFE 8" in capsys.readouterr().out
    from PIL import Image

    assert Image.open(out).info["schedule"] == "fitted"


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["digits", "--nfe", "8"], "bundled with the package; give --out"),
        (["DIR", "--nfe", "0"], "--nfe"),
        (["DIR", "--nfe", "8", "--seconds", "0"], "--seconds"),
        (["DIR", "--nfe", "8", "--calls", "0"], "--calls: expected a positive number"),
        (["DIR", "--nfe", "8", "--class", "x"], "--class"),
        (["DIR", "--nfe", "8", "--sampler", "rk45"], "--sampler: unknown sampler 'rk45'"),
    ],
)
def test_bad_input_is_one_line(argv, msg, digits, stub_fit, capsys):
    argv = [str(digits) if a == "DIR" else a for a in argv]
    assert main(["fit-schedule", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and msg in err and "\n" not in err
    assert not stub_fit


def test_a_malformed_schedules_file_is_a_checkpoint_error(digits):
    ckpt = load_checkpoint(digits)
    bad = {"format": 1, "entries": [{"nfe": 8, "sampler": "unipc", "sigmas": [1.0, 2.0, 0.0]}]}
    from diffusionforge.errors import CheckpointError
    from diffusionforge.train.checkpoint import write_folder

    write_folder(digits, {**ckpt.files, "schedules.json": json.dumps(bad).encode()}, step=1)
    with pytest.raises(CheckpointError, match="schedules.json"):
        fitted_schedules.read_entries(load_checkpoint(digits))


def test_a_fit_the_held_out_check_rejects_is_recorded_but_not_used(digits, monkeypatch, capsys):
    """core.fit_schedule returns the default when its fit loses on held-out draws; the entry
    keeps the rejected sigmas for the record with kept false, and sampling does not use it."""

    def fake(denoise, shape, nfe, **kw):
        kw["callback"]({"phase": "search", "trajectories": 64, "rms": 0.01, "sigmas": FAKE})
        kw["callback"](
            {"phase": "check", "trajectories": 64, "rms_fitted": 0.05, "rms_default": 0.03,
             "kept": False}
        )  # fmt: skip
        return torch.tensor([80.0, 5.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.01, 0.0], dtype=torch.float64)

    monkeypatch.setattr(fitted_schedules, "fit_schedule", fake)
    assert main(["fit-schedule", str(digits), "--nfe", "8", "--seconds", "5"]) == 0
    out = capsys.readouterr().out
    assert "NFE 8: fitted 0.0500 vs default 0.0300 on 64 held-out draws, not kept" in out
    (entry,) = json.loads(load_checkpoint(digits).files["schedules.json"])["entries"]
    assert entry["kept"] is False and entry["sigmas"] == FAKE
    assert entry["heldout"] == {"rms_fitted": 0.05, "rms_default": 0.03, "trajectories": 64}
    assert load_pipeline(digits).plan(8).schedule != "fitted"


def test_a_kept_entry_says_so(digits, monkeypatch, capsys):
    def fake(denoise, shape, nfe, **kw):
        kw["callback"]({"phase": "search", "trajectories": 64, "rms": 0.01, "sigmas": FAKE})
        kw["callback"](
            {"phase": "check", "trajectories": 64, "rms_fitted": 0.0171, "rms_default": 0.0498,
             "kept": True}
        )  # fmt: skip
        return torch.tensor(FAKE, dtype=torch.float64)

    monkeypatch.setattr(fitted_schedules, "fit_schedule", fake)
    assert main(["fit-schedule", str(digits), "--nfe", "8", "--seconds", "5"]) == 0
    assert "fitted 0.0171 vs default 0.0498 on 64 held-out draws, kept" in capsys.readouterr().out
    assert load_pipeline(digits).plan(8).schedule == "fitted"


def test_the_checks_significance_and_a_clock_ended_search_are_reported(digits, monkeypatch, capsys):
    def fake(denoise, shape, nfe, **kw):
        kw["callback"]({"phase": "search", "trajectories": 64, "rms": 0.01, "sigmas": FAKE})
        kw["callback"](
            {"phase": "check", "trajectories": 64, "rms_fitted": 0.0171, "rms_default": 0.0498,
             "kept": True, "z": float("inf"), "ended_by": "clock"}
        )  # fmt: skip
        return torch.tensor(FAKE, dtype=torch.float64)

    monkeypatch.setattr(fitted_schedules, "fit_schedule", fake)
    assert main(["fit-schedule", str(digits), "--nfe", "8", "--seconds", "5"]) == 0
    out = capsys.readouterr().out
    assert "held-out draws (gain 1000000.0 standard errors), kept; calls ran slower" in out
    text = load_checkpoint(digits).files["schedules.json"].decode()
    assert "Infinity" not in text  # strict JSON
    h = json.loads(text)["entries"][0]["heldout"]
    assert h["z"] == 1e6 and h["ended_by"] == "clock"


def test_kept_must_be_a_bool(digits):
    ckpt = load_checkpoint(digits)
    entry = {"nfe": 8, "sampler": "unipc", "sigmas": FAKE, "kept": "yes"}
    from diffusionforge.errors import CheckpointError
    from diffusionforge.train.checkpoint import write_folder

    raw = json.dumps({"format": 1, "entries": [entry]}).encode()
    write_folder(digits, {**ckpt.files, "schedules.json": raw}, step=1)
    with pytest.raises(CheckpointError, match="kept true/false"):
        fitted_schedules.read_entries(load_checkpoint(digits))


def test_the_server_image_job_plans_with_the_fit(digits, stub_fit):
    """serve's image handler echoes (and draws with) the checkpoint's fitted schedule."""
    from diffusionforge.server.base import ModelEntry
    from diffusionforge.server.image_handler import ImageHandler, ImageParams
    from diffusionforge.server.settings import Limits

    assert main(["fit-schedule", str(digits), "--nfe", "8", "--seconds", "5"]) == 0
    handler = ImageHandler()
    config = json.loads((digits / "config.json").read_text())
    entry = ModelEntry("digits", "digits", handler, digits, config)
    for nfe, schedule, fitted in ((8, None, True), (8, "karras", False), (10, None, False)):
        params = ImageParams(model="digits", nfe=nfe, schedule=schedule, n=1)
        echo, _run = handler.prepare(params, entry, Limits())
        assert (echo["schedule"] == "fitted") == fitted


def test_a_fit_made_for_the_earlier_recommended_sampler_stays_in_use(digits):
    """Before 2026-12-06 fit-schedule fitted `unipc` at NFE 8+ (then the recommended sampler):
    with no sampler named, such an entry is still used, with its own sampler."""
    entry = {"nfe": 8, "sampler": "unipc", "sigmas": FAKE, "kept": True}
    fitted_schedules.write_entries(load_checkpoint(digits), [entry])
    pipe = load_pipeline(digits)
    plan = pipe.plan(8)
    assert (plan.sampler, plan.schedule) == ("unipc", "fitted")
    assert plan.sigmas(0.002, 80.0).tolist() == FAKE
    assert pipe.plan(8, sampler="unipc_gaussian").schedule == "leading"  # named: its own
    assert pipe.plan(8, schedule="karras").sampler == "unipc_gaussian"  # named schedule
    assert pipe.plan(10).schedule == "leading"  # no entry for that NFE
