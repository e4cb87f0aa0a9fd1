"""Reliability of checkpoint reading (issue 14): forged or damaged checkpoint folders whose
manifest was rewritten to match still end in one line `error: ...` (exit 2) for `info`,
`sample` and an explicit `--resume`, and `--resume auto` falls back to the previous good
checkpoint for every kind of bad content, saying one line about the skipped one. Nothing
outside a checkpoint folder is ever opened, nothing is read before its size is checked, and no
config makes a loader allocate more than the weights hold.

Add a forgery by appending a function to FORGERIES."""

from __future__ import annotations

import hashlib
import io as bytes_io
import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save

from diffusionforge.cli import main
from diffusionforge.train import checkpoint as io

from trainkit import assert_one_line_error, cli, tiny_args


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished tiny run with checkpoints at steps 10 and 20."""
    run = tmp_path_factory.mktemp("run")
    assert main(["train", *tiny_args(), "--run-dir", str(run)]) == 0
    return run


@pytest.fixture
def run(trained, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(trained, dst, symlinks=True)
    return dst


def newest(run: Path) -> Path:
    return io.list_checkpoints(run)[-1]


def rewrite_manifest(folder: Path, extra: dict | None = None) -> None:
    """Make the manifest match the folder's files again, as a forger would."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    for rel, info in manifest["files"].items():
        p = folder / rel
        if p.is_file() and not p.is_symlink():
            data = p.read_bytes()
            info.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    manifest["files"].update(extra or {})
    path.write_text(json.dumps(manifest))


def _tensors(folder: Path, rel: str) -> dict[str, torch.Tensor]:
    return io.bytes_to_tensors((folder / rel).read_bytes(), rel)


def _edit_json(folder: Path, rel: str, change) -> None:
    data = json.loads((folder / rel).read_text())
    (folder / rel).write_text(json.dumps(change(data)))


def pickle_weights(c: Path) -> None:
    buf = bytes_io.BytesIO()
    torch.save(_tensors(c, "model.safetensors"), buf)
    (c / "model.safetensors").write_bytes(buf.getvalue())


def zip_weights(c: Path) -> None:
    buf = bytes_io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("data.pkl", pickle.dumps({"a": 1}))
    (c / "model.safetensors").write_bytes(buf.getvalue())


def bad_header(c: Path) -> None:
    (c / "model.safetensors").write_bytes((10**6).to_bytes(8, "little") + b"{not json")


def header_lies(c: Path) -> None:  # header claims more data than the file has
    head = json.dumps({"w": {"dtype": "F32", "shape": [10**6], "data_offsets": [0, 4 * 10**6]}})
    (c / "model.safetensors").write_bytes(len(head).to_bytes(8, "little") + head.encode())


def wrong_shapes(c: Path) -> None:
    t = _tensors(c, "model.safetensors")
    (c / "model.safetensors").write_bytes(save({k: torch.zeros(3, 3) for k in t}))


def wrong_names(c: Path) -> None:
    (c / "model.safetensors").write_bytes(save({"something.else": torch.zeros(4)}))


def nan_weights(c: Path) -> None:
    t = _tensors(c, "model.safetensors")
    (c / "model.safetensors").write_bytes(save({k: v * float("nan") for k, v in t.items()}))


def ema_wrong_shapes(c: Path) -> None:
    t = _tensors(c, "training_state/ema_all.safetensors")
    rel = "training_state/ema_all.safetensors"
    (c / rel).write_bytes(save({k: torch.zeros(2) for k in t}))


def optimizer_wrong_shapes(c: Path) -> None:
    rel = "training_state/optimizer.safetensors"
    t = _tensors(c, rel)
    (c / rel).write_bytes(save({k: torch.zeros(7, 7) for k in t}))


def optimizer_json_garbage(c: Path) -> None:
    (c / "training_state/optimizer.json").write_text('{"scalars": 3, "param_groups": "x"}')


def optimizer_json_bad_lr(c: Path) -> None:
    def change(d):
        d["param_groups"][0]["betas"] = "fast"
        return d

    _edit_json(c, "training_state/optimizer.json", change)


def optimizer_json_not_json(c: Path) -> None:
    (c / "training_state/optimizer.json").write_bytes(b"\xff{")


def rng_garbage(c: Path) -> None:
    (c / "training_state/rng.safetensors").write_bytes(save({"torch": torch.zeros(3)}))


def state_step_abc(c: Path) -> None:
    (c / "training_state/state.json").write_text('{"step": "abc"}')


def state_not_object(c: Path) -> None:
    (c / "training_state/state.json").write_text("[1, 2]")


def state_negative(c: Path) -> None:
    (c / "training_state/state.json").write_text('{"step": -4, "skipped_steps": 0}')


def config_not_json(c: Path) -> None:
    (c / "config.json").write_text("{")


def config_shape_x(c: Path) -> None:
    def change(d):
        d["diffusionforge"]["example_shape"] = "x"
        return d

    _edit_json(c, "config.json", change)


def config_huge_model(c: Path) -> None:
    def change(d):
        d["model"]["mlp"]["hidden"] = 40000
        return d

    _edit_json(c, "config.json", change)


def config_bogus_sampler(c: Path) -> None:  # written before names were checked at load
    def change(d):
        d["sample"]["sampler"] = "bogus"
        return d

    _edit_json(c, "config.json", change)


def config_is_a_list(c: Path) -> None:
    (c / "config.json").write_text("[]")


def config_classes_int(c: Path) -> None:
    def change(d):
        d["diffusionforge"]["classes"] = 5
        return d

    _edit_json(c, "config.json", change)


def config_classes_surrogate(c: Path) -> None:
    def change(d):
        d["diffusionforge"]["classes"] = ["\ud800"] * 3
        return d

    _edit_json(c, "config.json", change)


FORGERIES = [
    pickle_weights,
    zip_weights,
    bad_header,
    header_lies,
    wrong_shapes,
    wrong_names,
    nan_weights,
    ema_wrong_shapes,
    optimizer_wrong_shapes,
    optimizer_json_garbage,
    optimizer_json_bad_lr,
    optimizer_json_not_json,
    rng_garbage,
    state_step_abc,
    state_not_object,
    state_negative,
    config_not_json,
    config_shape_x,
    config_huge_model,
    config_is_a_list,
    config_classes_int,
    config_classes_surrogate,
    config_bogus_sampler,
]


@pytest.mark.parametrize("forge", FORGERIES, ids=lambda f: f.__name__)
def test_resume_auto_falls_back_past_any_bad_content(capsys, run, forge):
    bad = newest(run)
    forge(bad)
    rewrite_manifest(bad)
    code, out, err = cli(capsys, "train", *tiny_args(), "--run-dir", run, "--resume", "auto")
    assert code == 0, err
    assert "Traceback" not in err
    skipped = [line for line in err.splitlines() if line.startswith("warning: skipping")]
    assert len(skipped) == 1 and bad.name in skipped[0], err
    assert f"resumed from {run / 'checkpoints' / 'step-000000010'} at step 10" in err


@pytest.mark.parametrize("forge", FORGERIES, ids=lambda f: f.__name__)
def test_explicit_resume_of_a_bad_checkpoint_is_one_line(capsys, run, forge):
    bad = newest(run)
    forge(bad)
    rewrite_manifest(bad)
    code, _, err = cli(capsys, "train", *tiny_args(), "--run-dir", run, "--resume", bad)
    assert code == 2, err
    assert_one_line_error(err)


WEIGHT_FORGERIES = [
    pickle_weights,
    zip_weights,
    bad_header,
    header_lies,
    wrong_shapes,
    wrong_names,
    nan_weights,
    config_not_json,
    config_shape_x,
    config_huge_model,
    config_is_a_list,
    config_classes_int,
    config_classes_surrogate,
    config_bogus_sampler,
]


@pytest.mark.parametrize("forge", WEIGHT_FORGERIES, ids=lambda f: f.__name__)
@pytest.mark.parametrize("command", ["info", "sample"])
def test_info_and_sample_refuse_bad_content_in_one_line(capsys, run, tmp_path, forge, command):
    bad = newest(run)
    forge(bad)
    (bad / "ema.safetensors").unlink()  # so that sample reads model.safetensors
    manifest = json.loads((bad / "manifest.json").read_text())
    del manifest["files"]["ema.safetensors"]
    (bad / "manifest.json").write_text(json.dumps(manifest))
    rewrite_manifest(bad)
    extra = ["--out", tmp_path / "s.npy", "--n", "5"] if command == "sample" else []
    code, _, err = cli(capsys, command, bad, *extra)
    if command == "info" and forge is nan_weights:  # info reads headers, not the values
        assert code == 0, err
        return
    assert code == 2, err
    assert_one_line_error(err)
    assert not (tmp_path / "s.npy").exists()


def test_a_bad_config_value_in_a_checkpoint_names_the_file(capsys, run):
    bad = newest(run)
    config_bogus_sampler(bad)
    rewrite_manifest(bad)
    code, _, err = cli(capsys, "sample", bad, "--n", "2")
    line = assert_one_line_error(err)
    assert code == 2 and f"{bad}/config.json: sample.sampler" in line, line


def test_a_config_bigger_than_its_weights_is_refused_before_allocating(capsys, run, monkeypatch):
    from diffusionforge.train import builders

    bad = newest(run)
    config_huge_model(bad)  # 40000 wide: about 25 GB would be allocated
    rewrite_manifest(bad)
    built = []
    real = dict(builders.MODELS)
    monkeypatch.setitem(
        builders.MODELS,
        "mlp",
        lambda cfg, shape: built.append(torch.empty(0).device) or real["mlp"](cfg, shape),
    )
    for command in ("info", "sample"):
        code, _, err = (
            cli(capsys, command, bad, "--n", "2")
            if command == "sample"
            else cli(capsys, command, bad)
        )
        assert code == 2
        assert "config.json describes a model of" in assert_one_line_error(err)
    assert all(d.type == "meta" for d in built)  # only ever counted on the meta device


@pytest.mark.parametrize("command", ["info", "sample", "resume"])
def test_weights_symlinked_to_dev_zero_are_never_read(capsys, run, command, tmp_path):
    bad = newest(run)
    (bad / "model.safetensors").unlink()
    os.symlink("/dev/zero", bad / "model.safetensors")
    args = {
        "info": ["info", bad],
        "sample": ["sample", bad, "--no-ema", "--out", tmp_path / "s.npy"],
        "resume": ["train", *tiny_args(), "--run-dir", run, "--resume", bad],
    }[command]
    code, _, err = cli(capsys, *args)
    assert code == 2
    assert "symlink" in assert_one_line_error(err)


def test_resume_auto_skips_a_symlinked_checkpoint_file(capsys, run):
    bad = newest(run)
    (bad / "training_state/state.json").unlink()
    os.symlink("/dev/zero", bad / "training_state/state.json")
    code, _, err = cli(capsys, "train", *tiny_args(), "--run-dir", run, "--resume", "auto")
    assert code == 0 and "warning: skipping" in err and "at step 10" in err


@pytest.mark.parametrize(
    "rel", ["../../../etc/hostname", "/etc/hostname", "training_state/../../x", "./model.x"]
)
def test_manifest_paths_outside_the_folder_are_never_opened(
    capsys, run, rel, monkeypatch, tmp_path
):
    bad = newest(run)
    (run / "x").write_bytes(b"secret")
    rewrite_manifest(bad, {rel: {"size": 6, "sha256": hashlib.sha256(b"secret").hexdigest()}})
    opened = []
    real_open = os.open

    def spy(path, *a, **k):
        opened.append(os.path.realpath(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(os, "open", spy)
    code, _, err = cli(capsys, "info", bad)
    assert code == 2 and "outside" in assert_one_line_error(err)
    inside = os.path.realpath(bad)
    assert all(p.startswith(inside + os.sep) for p in opened), opened


def test_a_file_whose_size_differs_from_the_manifest_is_not_read(capsys, run, monkeypatch):
    bad = newest(run)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["files"]["model.safetensors"]["size"] = 10**15  # a petabyte claimed
    (bad / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = cli(capsys, "info", bad)
    assert code == 2 and "fails its checksum" in assert_one_line_error(err)


@pytest.mark.parametrize(
    "manifest",
    [
        b"[]",
        b'{"files": {"model.safetensors": {"sha256": "x", "size": "big"}}, "step": 1}',
        b'{"files": {}, "step": -1}',
        b'{"files": {"model.safetensors": 3}, "step": 1}',
    ],
)
def test_malformed_manifests_are_one_line(capsys, run, manifest):
    bad = newest(run)
    (bad / "manifest.json").write_bytes(manifest)
    code, _, err = cli(capsys, "info", bad)
    assert code == 2
    assert_one_line_error(err)


def test_a_manifest_that_is_a_device_is_not_read(capsys, run):
    bad = newest(run)
    (bad / "manifest.json").unlink()
    os.symlink("/dev/zero", bad / "manifest.json")
    code, _, err = cli(capsys, "info", bad)
    assert code == 2 and "manifest.json" in assert_one_line_error(err)


# --- schedules.json (fit-schedule's per-checkpoint schedules) --------------------------------


def _with_schedules(good: Path, out: Path, text: str) -> Path:
    """A copy of `good` holding `text` as schedules.json, its manifest listing it."""
    files = dict(io.load_checkpoint(good).files, **{"schedules.json": text.encode()})
    return io.write_folder(out, files, step=1)


_ENTRY = '{"nfe": 5, "sampler": "unipc_gaussian", "steps": 5, "sigmas": %s}'


@pytest.mark.parametrize(
    "text",
    [
        _ENTRY % "[80, NaN, 1, 0.5, 0.1, 0]",
        _ENTRY % "[80, 10, 20, 0.5, 0.1, 0]",  # not decreasing
        _ENTRY % ("[1" + "0" * 400 + ", 10, 1, 0.5, 0.1, 0]"),  # an int beyond float
        _ENTRY % "[1e300, 10, 1, 0.5, 0.1, 0]",  # beyond float32
        _ENTRY % "[true, false]",
        _ENTRY.replace('"nfe": 5', '"nfe": true') % "[80, 1, 0]",
        _ENTRY % json.dumps([80 - i * 1e-6 for i in range(5000)] + [0]),  # more steps than NFE
        "[" * 100_000 + "]" * 100_000,
        "[]",
    ],
    ids=["nan", "increasing", "bigint", "huge", "bools", "bool-nfe", "long", "deep", "list"],
)
def test_a_forged_schedules_file_is_one_line(capsys, run, tmp_path, text):
    if text.startswith('{"nfe"'):
        text = '{"format": 1, "entries": [' + text + "]}"
    bad = _with_schedules(newest(run), tmp_path / "bad", text)
    code, _, err = cli(capsys, "sample", bad, "--n", 2, "--nfe", 5, "--out", tmp_path / "s.npy")
    assert code == 2 and "schedules.json" in assert_one_line_error(err)


def test_a_schedules_file_symlinked_to_dev_zero_is_never_read(capsys, run, tmp_path):
    bad = _with_schedules(newest(run), tmp_path / "bad", '{"format": 1, "entries": []}')
    (bad / "schedules.json").unlink()
    os.symlink("/dev/zero", bad / "schedules.json")
    code, _, err = cli(capsys, "sample", bad, "--n", 2, "--out", tmp_path / "s.npy")
    assert code == 2 and "schedules.json" in assert_one_line_error(err)


# --- diffusers folders: a forged scheduler_config.json ---------------------------------------


@pytest.fixture(scope="module")
def ddpm_folder(tmp_path_factory):
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from diffusers_kit import save_ddpm, scheduler

    folder = tmp_path_factory.mktemp("ddpm") / "pipe"
    save_ddpm(folder, scheduler("DDPMScheduler"))
    return folder


_FLOW = {"_class_name": "FlowMatchEulerDiscreteScheduler"}


@pytest.mark.parametrize(
    "change",
    [
        {"num_train_timesteps": 0},
        {"num_train_timesteps": -5},
        {"num_train_timesteps": 10**12},  # would allocate 8 TB of betas
        {"num_train_timesteps": "abc"},
        {"num_train_timesteps": 1.5},
        {"num_train_timesteps": True},
        {"beta_start": "x"},
        {"beta_end": 5.0},
        {"beta_start": -1.0},
        {"beta_end": float("nan")},
        {"beta_schedule": "zigzag"},
        {"prediction_type": ["x"]},
        {"prediction_type": "mystery"},
        {"trained_betas": "abc"},
        {"trained_betas": [0.5, 2.0, "x"]},
        {**_FLOW, "shift": "x"},
        {**_FLOW, "shift": -1.0},
        {**_FLOW, "num_train_timesteps": 0},
        None,  # nested deeper than the JSON parser recurses
    ],
    ids=lambda c: "deep" if c is None else ",".join(f"{k}={v}" for k, v in c.items())[:40],
)
def test_a_forged_diffusers_scheduler_config_is_one_line(capsys, ddpm_folder, tmp_path, change):
    folder = Path(shutil.copytree(ddpm_folder, tmp_path / "pipe"))
    path = folder / "scheduler" / "scheduler_config.json"
    if change is None:
        path.write_text("[" * 100_000 + "]" * 100_000)
    else:
        path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    code, _, err = cli(capsys, "info", folder)
    assert code == 2
    assert_one_line_error(err)


def test_a_diffusers_config_symlinked_to_dev_zero_is_never_read(capsys, ddpm_folder, tmp_path):
    folder = Path(shutil.copytree(ddpm_folder, tmp_path / "pipe"))
    (folder / "unet" / "config.json").unlink()
    os.symlink("/dev/zero", folder / "unet" / "config.json")
    code, _, err = cli(capsys, "info", folder)
    assert code == 2 and "config.json" in assert_one_line_error(err)


@pytest.mark.parametrize(
    "header",
    [[1, 2], {"a": "x"}, {"a": {"shape": "ab", "dtype": "F32"}}, {"a": {"shape": [1]}}],
    ids=["list", "info-str", "shape-str", "no-dtype"],
)
def test_a_forged_diffusers_safetensors_header_is_one_line(capsys, ddpm_folder, tmp_path, header):
    import struct

    folder = Path(shutil.copytree(ddpm_folder, tmp_path / "pipe"))
    raw = json.dumps(header).encode()
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(struct.pack("<Q", len(raw)) + raw)
    code, _, err = cli(capsys, "info", folder)
    assert code == 2 and "safetensors" in assert_one_line_error(err)


def test_a_diffusers_config_that_cannot_build_is_one_line(capsys, ddpm_folder, tmp_path):
    folder = Path(shutil.copytree(ddpm_folder, tmp_path / "pipe"))
    _edit_json(folder / "unet", "config.json", lambda c: {**c, "in_channels": -1})
    code, _, err = cli(capsys, "info", folder)
    assert code == 2
    assert_one_line_error(err)


@pytest.mark.parametrize("change", [{"sample_size": 10**9}, {"sample_size": [8, 0]}])
def test_a_diffusers_sample_size_beyond_the_image_side_is_one_line(
    capsys, ddpm_folder, tmp_path, change
):
    folder = Path(shutil.copytree(ddpm_folder, tmp_path / "pipe"))
    _edit_json(folder / "unet", "config.json", lambda c: {**c, **change})
    code, _, err = cli(capsys, "sample", folder, "--n", 1, "--nfe", 2, "--out", tmp_path / "s.npy")
    assert code == 2 and "sample_size" in assert_one_line_error(err)


def test_a_diffusers_layer_count_above_the_depth_limit_is_one_line(capsys, ddpm_folder, tmp_path):
    folder = Path(shutil.copytree(ddpm_folder, tmp_path / "pipe"))
    _edit_json(folder / "unet", "config.json", lambda c: {**c, "layers_per_block": 10**6})
    code, _, err = cli(capsys, "info", folder)  # building 10**6 layers even on meta: hours
    assert code == 2 and "layers_per_block" in assert_one_line_error(err)
