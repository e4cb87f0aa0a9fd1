"""Prompt-faithfulness scoring: closed-form verdicts, fake pipelines, the eval-prompts CLI."""

import json

import numpy as np
import pytest
import torch

from diffusionforge.cli import main
from diffusionforge.data.scene_captions import parse_prompt
from diffusionforge.data.scene_drawing import render
from diffusionforge.data.scene_specs import COLOURS, Group, SceneSpec
from diffusionforge.eval.judge import load_judge
from diffusionforge.eval.prompts import (
    RenderPipeline,
    cases_from_prompts,
    prompt_cases,
    run_prompts,
    score,
    summarize,
    sweep,
    verdict_picture,
)

R2 = Group(2, "circle", "red", "small")
B1 = Group(1, "square", "blue")


def test_score_closed_form_cases():
    asked = SceneSpec((R2, B1), "left of")
    full = Group(1, "square", "blue", "large")
    # the same scene said the other way round is a perfect match
    assert score(asked, SceneSpec((full, R2), "right of"))["overall"]
    # groups swapped: everything but the relation right
    v = score(asked, SceneSpec((full, R2), "left of"))
    assert v["relation"] is False and v["kind"] and v["colour"] and v["count"]
    assert not v["overall"]
    # stacked instead of side by side
    v = score(asked, SceneSpec((R2, full), "above"))
    assert v["relation"] is False and v["count"] and not v["overall"]
    # one red circle too few, blue square's size unasked so never judged
    v = score(asked, SceneSpec((Group(1, "circle", "red", "small"), full), "left of"))
    assert v["count"] is False and v["kind"] and v["size"] is True and v["relation"]
    # wrong size of the red circles
    v = score(asked, SceneSpec((Group(2, "circle", "red", "large"), full), "left of"))
    assert v["size"] is False and not v["overall"]
    # only the blue square drawn: the red group has no partner
    v = score(asked, SceneSpec((full,)))
    assert v["kind"] is False and v["relation"] is False
    # a single-group prompt: no relation verdict, an extra group spoils overall only
    single = SceneSpec((B1,))
    v = score(single, SceneSpec((R2, full), "left of"))
    assert v["relation"] is None and v["kind"] and v["colour"] and not v["overall"]
    assert score(single, SceneSpec((full,))) == {
        "kind": True,
        "colour": True,
        "count": True,
        "size": None,
        "relation": None,
        "overall": True,
    }


def test_prompt_cases_are_fixed_and_split():
    cases = prompt_cases(20, 20, seed=1)
    assert cases == prompt_cases(20, 20, seed=1)
    assert [c.split for c in cases] == ["seen"] * 20 + ["heldout"] * 20
    assert all(parse_prompt(c.prompt) == c.spec for c in cases)
    user, outside = cases_from_prompts(["three red triangles", "two red circles", "a dog"])
    assert [c.split for c in user] == ["heldout", "seen"] and outside == ["a dog"]


class WrongColours(RenderPipeline):
    """Draws each prompt's scene with every colour replaced by the next one."""

    def generate(self, prompts, *, seeds, **_):
        names = list(COLOURS)
        shift = {c: names[(i + 1) % len(names)] for i, c in enumerate(names)}
        out = []
        for p, s in zip(prompts, seeds, strict=True):
            spec = parse_prompt(p)
            groups = tuple(Group(g.count, g.shape, shift[g.colour], g.size) for g in spec.groups)
            out.append(render(SceneSpec(groups, spec.relation), self.resolution, s))
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 127.5 - 1


@pytest.mark.parametrize("resolution", [32, 64])
def test_true_renders_score_near_100_and_wrong_colours_fail_colour(resolution):
    judge = load_judge()
    cases = prompt_cases(40, 40, seed=5)
    rows, images = run_prompts(RenderPipeline(resolution), judge, cases, nfe=1, guidance=1.0)
    assert images.shape == (80, 3, resolution, resolution)
    s = summarize(rows)
    assert set(s) == {"seen", "heldout", "heldout-relation"}
    for split in s.values():
        assert split["overall"] >= 0.85 and split["colour"] >= 0.97, s
    rows, _ = run_prompts(WrongColours(resolution), judge, cases, nfe=1, guidance=1.0)
    s = summarize(rows)
    for split in s.values():
        assert split["colour"] <= 0.05 and split["overall"] <= 0.05 and split["kind"] >= 0.9, s
    picture = verdict_picture(images[:8], rows[:8])
    assert picture.width > 6 * 160


def test_eval_prompts_cli_writes_reports(tmp_path, capsys):
    # in-process: the command's own work is small, a fresh interpreter would dominate the time
    out = tmp_path / "ev"
    code = main(
        [
            "eval-prompts",
            "oracle",
            "--n",
            "6",
            "--guidance",
            "1,2",
            "--nfe",
            "5",
            "--out",
            str(out),
            "--show",
            "4",
        ]
    )
    std = capsys.readouterr()
    assert code == 0, std.err
    assert "| guidance | nfe | split |" in std.out and "heldout" in std.out
    summary = json.loads((out / "summary.json").read_text())
    assert [(s["guidance"], s["nfe"]) for s in summary] == [(1.0, 5), (2.0, 5)]
    assert (out / "samples-g1-nfe5.png").exists() and (out / "samples-g2-nfe5.png").exists()
    lines = (out / "results.csv").read_text().splitlines()
    assert len(lines) == 1 + 2 * 12  # header + (6 seen + 6 held-out) per setting
    prompts = tmp_path / "p.txt"
    prompts.write_text("two red circles left of a blue square\nhello world\n")
    code = main(["eval-prompts", "oracle", "--prompts", str(prompts), "--out", str(out)])
    assert code == 0 and "outside the scene grammar: 'hello world'" in capsys.readouterr().err
    (setting,) = json.loads((out / "summary.json").read_text())
    assert setting["summary"]["seen"]["n"] == 1 and setting["summary"]["seen"]["size"] is None


@pytest.mark.parametrize(
    "args, match",
    [
        (["oracle", "--guidance", "x"], "--guidance: expected comma-separated numbers"),
        (["oracle", "--nfe", "0"], "--nfe: expected positive"),
        (["oracle", "--sampler", "nope"], "--sampler nope"),
        (["/no/such/ckpt"], "/no/such/ckpt"),
    ],
)
def test_eval_prompts_cli_errors(tmp_path, capsys, args, match):
    assert main(["eval-prompts", *args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1, err


def test_sweep_runs_every_setting_and_reports_each():
    seen = []
    settings = sweep(
        RenderPipeline(32),
        load_judge(),
        prompt_cases(3, 3, seed=2),
        guidances=[1.0, 3.0],
        nfes=[4, 8],
        on_setting=lambda s, images: seen.append((s["guidance"], s["nfe"], images.shape[0])),
    )
    assert seen == [(1.0, 4, 6), (1.0, 8, 6), (3.0, 4, 6), (3.0, 8, 6)]
    assert [len(s["rows"]) for s in settings] == [6] * 4
    assert all(s["summary"]["seen"]["n"] == 3 and s["seconds"] >= 0 for s in settings)
