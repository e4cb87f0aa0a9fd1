"""The bundled text-to-image model (issue 5): `generate` works right after install."""

from __future__ import annotations

import pytest
from PIL import Image

from diffusionforge.assets import AUTOENCODERS, BUNDLED, bundled_path
from diffusionforge.pipelines.text2image import load_text2image

from trainkit import run_cli


def test_bundled_t2i_loads_and_generates():
    pipe = load_text2image("t2i-scenes")
    assert pipe.resolution == 32 and pipe.checkpoint.path.name == "t2i-scenes"
    x = pipe.generate(["two red circles left of a blue square"], nfe=3, guidance=4.0, seeds=[1])
    assert x.shape == (1, 3, 32, 32) and x.isfinite().all()


def test_bundled_t2i_draws_held_out_counts_and_relations():
    """The bundled model is layout-grounded: held-out combinations (red triangles, blue circles,
    three of a kind left of another, two above another) come out as asked, per the judge."""
    from diffusionforge.eval.judge import load_judge
    from diffusionforge.eval.prompts import cases_from_prompts, run_prompts

    prompts = [
        "three red triangles to the left of a white square",
        "two blue circles above a yellow cross",
        "a green square with three blue circles on its left",
        "a large red triangle below two small green circles",
    ]
    cases, _ = cases_from_prompts(prompts)
    rows, _ = run_prompts(
        load_text2image("t2i-scenes"),
        load_judge(log=lambda m: None),
        cases,
        nfe=10,
        guidance=1.0,
        seed=1,
    )
    assert sum(r["overall"] for r in rows) >= 3, [(r["prompt"], r["judged"]) for r in rows]


@pytest.mark.slow
def test_generate_cli_defaults_to_the_bundled_model(tmp_path):
    import json

    r = run_cli(["generate", "a red circle", "--nfe", "3", "--out", str(tmp_path)])
    assert r.returncode == 0, r.stderr
    assert "planned layout for 'a red circle'" in r.stdout
    (png,) = tmp_path.glob("*.png")
    im = Image.open(png)
    assert im.size == (32, 32) and "a red circle" in im.text["prompt"]
    layout = json.loads(im.text["diffusionforge"])["layout"]
    assert layout["scene"]["groups"][0]["shape"] == "circle"
    assert len(layout["boxes"]) == 1 and layout["boxes"][0][:2] == ["red", "circle"]


def test_all_bundled_weights_stay_under_20_mb():
    folder = bundled_path("digits").parent
    names = [*BUNDLED, *AUTOENCODERS, "judge", "t2i-scenes", "glyphs32", "sudoku"]
    total = sum(f.stat().st_size for n in names for f in (folder / n).rglob("*") if f.is_file())
    assert total < 20 * 2**20, total
