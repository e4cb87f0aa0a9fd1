"""fit-schedule on imported diffusers folders: written to FOLDER.schedules.json beside the
folder, never into it (or --out FILE); `sample`, `generate` and the server use the folder's
schedules file (FOLDER/schedules.json if the user put one there, else the sidecar). The fit
itself is a stub, as in test_fit_schedule_cli.py."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
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


# --- imported diffusers folders ----------------------------------------------------------------

diffusers = pytest.importorskip("diffusers", reason="optional extra: diffusers")


@pytest.fixture
def ddpm(tmp_path) -> Path:
    sys.path.insert(0, str(Path(__file__).parent))
    from diffusers_kit import save_ddpm, scheduler, tiny_unet

    folder = tmp_path / "pixels"
    save_ddpm(folder, scheduler("DDIMScheduler", clip_sample=False), tiny_unet(num_class_embeds=3))
    return folder


def tree_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        h.update(str(p.relative_to(folder)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def test_diffusers_fit_writes_a_sidecar_and_never_touches_the_folder(ddpm, stub_fit, capsys):
    from diffusionforge.pipelines.diffusers_model import load

    before = tree_hash(ddpm)
    argv = ["fit-schedule", str(ddpm), "--nfe", "8", "--seconds", "5", "--batch", "4"]
    assert main(argv) == 0
    assert tree_hash(ddpm) == before  # the user's folder is unchanged
    sidecar = ddpm.parent / "pixels.schedules.json"
    assert f"to {sidecar}" in capsys.readouterr().out
    (entry,) = json.loads(sidecar.read_text())["entries"]
    model = load(ddpm)
    assert entry["sigmas"] == fake_sigmas(8, model.process.sigma_max).tolist()
    assert entry["classes"] == [0, 1, 2] and entry["kept"] is True
    (shape, nfe, kw) = stub_fit[0]
    assert shape == (4, *model.shape) and kw["cond"].tolist() == [0, 1, 2, 0]
    assert kw["sigma_max"] == model.process.sigma_max
    # sampling uses it with no schedule named, says so, and a named schedule overrides
    assert model.names(8, None, None) == ("unipc_gaussian", "fitted")
    labels = torch.tensor([1])
    auto = model.generate([0], nfe=8, labels=labels)
    sig = torch.tensor(entry["sigmas"], dtype=torch.float64)
    explicit = model.generate([0], nfe=8, labels=labels, sigmas=sig)
    assert torch.equal(auto, explicit)
    assert model.names(8, None, "karras") == ("unipc_gaussian", "karras")
    assert model.names(10, None, None)[1] != "fitted"  # no entry for 10 steps
    assert model.names(8, "heun", None)[1] != "fitted"  # fitted for another sampler
    out = ddpm.parent / "s.png"
    argv = ["sample", str(ddpm), "--nfe", "8", "--n", "1", "--class", "1", "--out", str(out)]
    assert main(argv) == 0
    assert "(unipc_gaussian, fitted, NFE 8)" in capsys.readouterr().out
    assert json.loads(Image.open(out).info["diffusionforge"])["schedule"] == "fitted"


def test_diffusers_fit_out_file_and_a_schedules_file_inside_the_folder(ddpm, stub_fit, tmp_path):
    from diffusionforge.pipelines.diffusers_model import load

    target = tmp_path / "elsewhere.json"
    assert main(["fit-schedule", str(ddpm), "--nfe", "8", "--out", str(target)]) == 0
    assert target.is_file() and not (ddpm.parent / "pixels.schedules.json").exists()
    assert load(ddpm).names(8, None, None)[1] != "fitted"  # not where the model looks
    shutil.copy(target, ddpm / "schedules.json")  # the user puts it into the folder
    assert load(ddpm).names(8, None, None)[1] == "fitted"
    assert main(["fit-schedule", str(ddpm), "--nfe", "8", "--out", str(tmp_path / "x.txt")]) == 2


def test_a_bad_sidecar_is_one_line(ddpm, capsys):
    (ddpm.parent / "pixels.schedules.json").write_text('{"format": 1, "entries": [{"nfe": 8}]}')
    out = ddpm.parent / "s.png"
    assert main(["sample", str(ddpm), "--nfe", "8", "--n", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "pixels.schedules.json" in err and "\n" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")
def test_diffusers_fit_loads_on_the_device_asked_for(ddpm, stub_fit, capsys):
    """--device is honoured (it was ignored: the folder always loaded on the cpu): asking for
    CUDA where there is none is the same one-line error as sample's, before any fit."""
    argv = ["fit-schedule", str(ddpm), "--nfe", "8", "--seconds", "5", "--device", "cuda"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "--device cuda: no CUDA device is available here" in err and "\n" not in err
    assert not stub_fit
