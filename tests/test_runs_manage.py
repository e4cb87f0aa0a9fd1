"""A run folder holds one run (#18 point 3): training again in it needs --resume or
--overwrite; `train --resume auto --run-dir DIR` needs nothing else; a run's config.json loads
as --config; a resume with other settings names the keys; --data gets its own default folder."""

from __future__ import annotations

import json

from trainkit import cli, tiny_args


def _steps(run) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir())


def test_second_train_in_a_run_folder_is_refused_then_resumes_or_overwrites(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(capsys, "train", *tiny_args(), "--run-dir", str(run))[0] == 0
    before = _steps(run)
    code, _, err = cli(capsys, "train", *tiny_args(), "--run-dir", str(run))
    assert code == 2 and err.count("\n") == 1 and "--resume auto" in err and "--overwrite" in err
    assert _steps(run) == before  # nothing touched

    # resuming needs only the run folder: its config.json holds the settings
    code, out, err = cli(
        capsys, "train", "--run-dir", str(run), "--resume", "auto", "--steps", "30"
    )
    assert code == 0, err
    assert _steps(run)[-1] == "step-000000030" and "from step 20 to 30" in err + out

    (run / "notes.txt").write_text("mine")  # not the run's: --overwrite keeps it
    code, _, err = cli(capsys, "train", *tiny_args("train.steps=10"), "--run-dir", str(run),
                       "--overwrite")  # fmt: skip
    assert code == 0, err
    assert _steps(run) == ["step-000000010"] and (run / "notes.txt").read_text() == "mine"


def test_run_config_json_loads_as_config(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(capsys, "train", *tiny_args(), "--run-dir", str(run))[0] == 0
    assert "diffusionforge" in json.loads((run / "config.json").read_text())  # the header
    code, _, err = cli(capsys, "train", "--config", str(run / "config.json"),
                       "--run-dir", str(tmp_path / "again"), "--no-progress")  # fmt: skip
    assert code == 0, err
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert again["model"] == json.loads((run / "config.json").read_text())["model"]


def test_resume_with_other_data_names_the_key(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(capsys, "train", *tiny_args(), "--run-dir", str(run))[0] == 0
    code, _, err = cli(capsys, "train", *tiny_args("train.steps=30"), "--data", "ring",
                       "--run-dir", str(run), "--resume", "auto")  # fmt: skip
    last = err.strip().splitlines()[-1]  # after one "skipping" line per checkpoint
    assert code == 2 and last.startswith("error: ") and "data.name: 'moons' -> 'ring'" in last


def test_resume_auto_without_a_run_folder_says_what_to_give(capsys):
    code, _, err = cli(capsys, "train", "--resume", "auto")
    assert code == 2 and "--run-dir" in err


def test_default_run_folder_names_the_data(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli(capsys, "train", *tiny_args(), "--data", "ring")[0] == 0
    assert (tmp_path / "runs" / "moons-ring" / "checkpoints").is_dir()
    assert not (tmp_path / "runs" / "moons").exists()


def test_no_progress_still_logs_loss_lines(tmp_path, capsys):
    # a log file of a run without a progress bar has loss lines, not only start and end
    code, out, err = cli(capsys, "train", *tiny_args(), "--run-dir", str(tmp_path / "r"))
    assert code == 0, err
    assert "step 5/20  loss " in err and "steps/s" in err
