import errno
import json

import pytest
import torch

from diffusionforge.errors import CheckpointError
from diffusionforge.train import checkpoint as io


def _files(step: int) -> dict[str, bytes]:
    g = torch.Generator().manual_seed(step)
    return {
        "model.safetensors": io.tensors_to_bytes({"w": torch.randn(64, 64, generator=g)}),
        "config.json": json.dumps({"step": step}).encode(),
        "training_state/state.json": json.dumps({"step": step}).encode(),
        "training_state/optimizer.safetensors": io.tensors_to_bytes({"0/exp_avg": torch.ones(3)}),
    }


def test_save_load_round_trip_and_keep_last(tmp_path):
    for step in (10, 20, 30, 40):
        io.save_checkpoint(tmp_path, step, _files(step), keep_last=2)
    names = [p.name for p in io.list_checkpoints(tmp_path)]
    assert names == ["step-000000030", "step-000000040"]
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]
    ck = io.load_checkpoint(tmp_path / "checkpoints" / "step-000000040", need_training_state=True)
    assert ck.step == 40
    assert torch.equal(
        ck.tensors("model.safetensors")["w"],
        io.bytes_to_tensors(_files(40)["model.safetensors"], "x")["w"],
    )


@pytest.mark.parametrize("damage", ["zero_bytes", "cut_header", "flip_bit", "missing", "manifest"])
def test_damaged_checkpoint_is_refused_and_auto_falls_back(tmp_path, damage):
    io.save_checkpoint(tmp_path, 1, _files(1), keep_last=5)
    newest = io.save_checkpoint(tmp_path, 2, _files(2), keep_last=5)
    target = newest / "model.safetensors"
    data = target.read_bytes()
    if damage == "zero_bytes":
        target.write_bytes(b"")
    elif damage == "cut_header":
        target.write_bytes(data[:5])
    elif damage == "flip_bit":
        flipped = bytearray(data)
        flipped[len(data) - 100] ^= 0x04  # inside the tensor data: safetensors alone can't tell
        target.write_bytes(bytes(flipped))
    elif damage == "missing":
        target.unlink()
    else:
        (newest / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError) as e:
        io.load_checkpoint(newest)
    assert str(newest) in str(e.value) and "\n" not in str(e.value)
    ck, skipped = io.latest_checkpoint(tmp_path)
    assert ck is not None and ck.step == 1 and len(skipped) == 1


def test_disk_full_keeps_previous_checkpoint(tmp_path, monkeypatch):
    first = io.save_checkpoint(tmp_path, 1, _files(1), keep_last=1)
    before = {p.name: p.read_bytes() for p in first.rglob("*") if p.is_file()}
    real = io.write_file
    calls = []

    def full_disk(path, data):
        calls.append(path)
        if len(calls) == 3:  # fail in the middle of the second checkpoint
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(io, "write_file", full_disk)
    with pytest.raises(CheckpointError, match="disk full"):
        io.save_checkpoint(tmp_path, 2, _files(2), keep_last=1)
    # nothing half-written is left, and the old checkpoint is whole and still loads
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-000000001"]
    assert {p.name: p.read_bytes() for p in first.rglob("*") if p.is_file()} == before
    assert io.latest_checkpoint(tmp_path)[0].step == 1


def test_unwritable_folder_is_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where the run folder should be
    with pytest.raises(CheckpointError) as e:
        io.save_checkpoint(blocker / "run", 1, _files(1), keep_last=1)
    assert "could not save" in str(e.value) and "\n" not in str(e.value)


def test_stale_temp_folder_of_dead_writer_is_ignored_then_cleaned(tmp_path):
    io.save_checkpoint(tmp_path, 1, _files(1), keep_last=3)
    stale = tmp_path / "checkpoints" / ".tmp-step-000000002-999999999"  # no such pid
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    assert [p.name for p in io.list_checkpoints(tmp_path)] == ["step-000000001"]
    io.save_checkpoint(tmp_path, 3, _files(3), keep_last=3)
    assert not stale.exists()


def test_optimizer_state_round_trips_bitwise():
    net = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, betas=(0.9, 0.95))
    for _ in range(3):
        net(torch.randn(8, 4)).square().mean().backward()
        opt.step()
    tensors, meta = io.optimizer_to_files(opt.state_dict())
    blob = io.tensors_to_bytes(tensors)
    restored = io.optimizer_from_files(io.bytes_to_tensors(blob, "x"), json.loads(json.dumps(meta)))
    opt2 = torch.optim.AdamW(net.parameters(), lr=1.0)
    opt2.load_state_dict(restored)
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for k in a["state"]:
        for name, value in a["state"][k].items():
            assert torch.equal(value, b["state"][k][name]), name


def test_a_bundled_name_resolves_unless_a_local_path_has_it(tmp_path, monkeypatch):
    ckpt = io.resolve_checkpoint("digits")
    assert ckpt.path.name == "digits" and ckpt.path.parent.name == "assets"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits").mkdir()  # a local folder that is no checkpoint or run: not a shadow
    assert io.resolve_checkpoint("digits").path.parent.name == "assets"
    (tmp_path / "digits" / "checkpoints").mkdir()  # a local run of that name wins
    with pytest.raises(CheckpointError, match="run folder has no complete checkpoint"):
        io.resolve_checkpoint("digits")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        io.resolve_checkpoint("no-such-model")
