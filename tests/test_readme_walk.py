"""The README's "Command line" block, walked in order in a temp folder (#18): every line exits 0
and writes what it says. Training lines get the tiny settings appended (the same flags a user
has: --set), `demo` runs --quick, `eval-prompts` fewer prompts; `serve` (it does not return) is
left out. The bundled-name shadowing case follows: `sample digits --out digits` writes a local
digits/ folder of PNGs (and `--out digits.png` one grid), and `info digits` / `eval digits`
still find the bundled model."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from diffusionforge.cli import main

from trainkit import REPO, TINY, TINY_IMAGES

pytestmark = pytest.mark.slow


def readme_commands() -> list[list[str]]:
    text = (REPO / "README.md").read_text()
    block = text.split("## Command line", 1)[1].split("```", 2)[1]
    out = []
    for line in block.splitlines():
        line = line.split("  #", 1)[0].strip()
        if line.startswith("diffusionforge "):
            out.append(shlex.split(line)[1:])
        elif line.startswith("python -m diffusionforge"):
            out.append(shlex.split(line)[3:])
    return out


def tiny(argv: list[str]) -> list[str]:
    """The same command with settings small enough for a test."""
    if argv[0] == "train":
        images = "digits" in argv
        extra = [*(TINY_IMAGES if images else TINY), "train.steps=30"]
        if "--resume" in argv:
            extra = ["train.steps=40"]  # the run's own config, a few steps more
        if "ema.kind=power" in argv:
            extra += ["ema.snapshot_every=10"]
        return [*argv, *[a for item in extra for a in ("--set", item)]]
    if argv[0] == "demo":
        return [*argv, "--quick", "--section", "toy2d"]
    if argv[0] == "eval-prompts":
        return [*argv, "--n", "2"]
    return argv


def expected(argv: list[str], here: Path) -> list[Path]:
    """What the line says it writes."""
    if argv[0] == "train":
        i = argv.index("--run-dir") + 1 if "--run-dir" in argv else None
        if i:
            run = argv[i]
        elif "--config" in argv:
            run = "runs/my-points"
        else:
            run = f"runs/{argv[argv.index('--preset') + 1]}"
        return [here / run / "checkpoints", here / run / "config.json"]
    if "--out" in argv:
        return [here / argv[argv.index("--out") + 1]]
    return []


def run(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out + err


def test_readme_command_line_block_in_order(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # what the README's lines presuppose: a config file and a numeric .npy
    (tmp_path / "my.toml").write_text(
        (REPO / "diffusionforge/train/presets/moons.toml").read_text()
    )
    pts = np.random.default_rng(0).normal(size=(512, 2)).astype(np.float32)
    np.save(tmp_path / "points.npy", pts)
    cmds = readme_commands()
    assert any(c[0] == "sample" for c in cmds) and ["--help"] in cmds
    for argv in cmds:
        if argv[0] == "serve":
            continue
        code, text = run(tiny(argv), capsys)
        assert code == 0, f"{shlex.join(argv)}: exit {code}\n{text[-2000:]}"
        for path in expected(argv, tmp_path):
            assert path.exists(), f"{shlex.join(argv)}: did not write {path}"

    # the bundled-name shadowing case of the issue
    code, text = run(["sample", "digits", "--class", "3,7", "--nfe", "4", "--out", "digits.png"],
                     capsys)  # fmt: skip
    assert code == 0, text
    assert (tmp_path / "digits.png").is_file()  # one grid; no ./digits/ folder beside it
    assert not (tmp_path / "digits").exists()
    code, text = run(["sample", "digits", "--class", "3", "--nfe", "4", "--out", "digits"], capsys)
    assert code == 0 and (tmp_path / "digits" / "samples.json").is_file(), text
    code, text = run(["info", "digits"], capsys)
    assert code == 0 and re.search(r"assets[/\\]digits", text), text
    code, text = run(["eval", "digits", "--n", "20", "--sweep-samplers", ""], capsys)
    assert code == 0, text
    assert "drawing 20 samples" in text  # long work is never silent
    assert "FID[classifier features, not Inception]" in text
