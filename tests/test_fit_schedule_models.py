"""fit-schedule on our text-to-image checkpoints: fitted on --prompt captions; `generate` and the
t2i server job use the result (diffusers folders: test_fit_schedule_diffusers.py). The fit
itself is a stub (fitkit.py), as in test_fit_schedule_cli.py."""

from __future__ import annotations

import json
import shutil
import sys
from importlib import resources
from pathlib import Path

import pytest
import torch
from PIL import Image

from diffusionforge.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from fitkit import fake_sigmas, install_stub  # noqa: E402


@pytest.fixture
def stub_fit(monkeypatch):
    return install_stub(monkeypatch)


# --- our text-to-image checkpoints -------------------------------------------------------------


@pytest.fixture
def scenes(tmp_path) -> Path:
    dst = tmp_path / "scenes"
    shutil.copytree(Path(str(resources.files("diffusionforge.assets") / "t2i-scenes")), dst)
    return dst


def test_text_to_image_fit_uses_the_prompts_and_generate_uses_the_fit(scenes, stub_fit, capsys):
    from diffusionforge.pipelines.text2image import load_text2image

    argv = ["fit-schedule", str(scenes), "--nfe", "8", "--seconds", "5", "--batch", "3"]
    assert main([*argv, "--prompt", "a red circle", "--prompt", "a blue square"]) == 0
    (shape, nfe, kw) = stub_fit[0]
    pipe = load_text2image(scenes)
    assert shape == (3, *pipe.shape) and nfe == 8
    assert torch.equal(kw["cond"], pipe.encode(["a red circle", "a blue square", "a red circle"]))
    assert "on 3 held-out draws, kept" in capsys.readouterr().out
    plan = pipe.plan(8)
    assert plan.schedule == "fitted"
    assert plan.sigmas(0.002, 80.0).tolist() == fake_sigmas(8, pipe.formulation.sigma_max).tolist()
    assert pipe.plan(8, schedule="karras").schedule == "karras"  # a named schedule overrides
    assert pipe.plan(10).schedule != "fitted"
    out = scenes.parent / "gen"
    argv = ["generate", "a red circle", "--checkpoint", str(scenes), "--nfe", "8"]
    assert main([*argv, "--out", str(out)]) == 0
    assert "fitted, NFE 8" in capsys.readouterr().out
    (png,) = out.glob("*.png")
    assert json.loads(Image.open(png).info["diffusionforge"])["schedule"] == "fitted"
    # and the images are the ones the fitted sigmas give
    fitted = pipe.generate(["a red circle"], nfe=8, guidance=1.0, seeds=[0])
    named = pipe.generate(["a red circle"], nfe=8, guidance=1.0, seeds=[0], schedule="optimized")
    assert not torch.equal(fitted, named)


def test_text_to_image_fit_needs_prompts(scenes, stub_fit, capsys):
    assert main(["fit-schedule", str(scenes), "--nfe", "8", "--seconds", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "--prompt" in err and "\n" not in err
    assert not stub_fit


def test_the_t2i_server_job_plans_with_the_fit(scenes, stub_fit):
    """The server's text-to-image job echoes (and records) the fitted schedule."""
    from diffusionforge.server.base import ModelEntry
    from diffusionforge.server.settings import Limits
    from diffusionforge.server.t2i_handler import Text2ImageHandler, Text2ImageParams

    assert main(["fit-schedule", str(scenes), "--nfe", "8", "--prompt", "a red circle"]) == 0
    handler = Text2ImageHandler()
    config = json.loads((scenes / "config.json").read_text())
    entry = ModelEntry("scenes", "t2i", handler, scenes, config)
    for nfe, schedule, want in ((8, None, "fitted"), (8, "karras", "karras"), (10, None, None)):
        params = Text2ImageParams(model="scenes", prompt="a red circle", nfe=nfe, schedule=schedule)
        echo, _run = handler.prepare(params, entry, Limits())
        assert (echo["schedule"] == "fitted") == (want == "fitted")
        assert want is None or echo["schedule"] == want
