"""The bundled digits model (issue 4, item 5): it loads, stays small, and the demo samples it."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from diffusionforge.assets import BUNDLED, BUNDLED_FILES, bundled_path
from diffusionforge.pipelines.pipeline import load_pipeline

from trainkit import run_cli


def test_bundled_weights_load_and_stay_under_20_mb():
    total = 0
    for name in BUNDLED:
        folder = bundled_path(name)
        for rel in (*BUNDLED_FILES, "manifest.json"):
            total += (folder / rel).stat().st_size
        pipe = load_pipeline(folder)  # verifies every file against its manifest
        assert pipe.weights == "ema"
    assert total < 20 * 2**20, total
    pipe = load_pipeline(bundled_path("digits"))
    assert pipe.shape == (1, 8, 8) and pipe.num_classes == 10
    assert pipe.classes == [str(d) for d in range(10)]
    assert not (bundled_path("digits") / "training_state").exists()


def test_bundled_glyphs32_samples_the_requested_characters(tmp_path):
    """glyphs32 is bundled as float16 EMA weights (assets/half.py) and goes by its name."""
    pipe = load_pipeline("glyphs32")
    assert pipe.shape == (1, 32, 32) and pipe.num_classes == 62
    assert pipe.classes[:3] == ["0", "1", "2"] and "A" in pipe.classes and "z" in pipe.classes
    args = "sample glyphs32 --class A,b --n 2 --nfe 4 --out".split()
    p = run_cli([*args, str(tmp_path / "g")])
    assert p.returncode == 0, p.stderr
    assert len(list((tmp_path / "g").glob("sample-*.png"))) == 4  # --n per class


def test_pyproject_ships_the_bundled_files():
    text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert '"diffusionforge.assets"' in text and "*.safetensors" in text


def test_demo_digits_section_writes_one_row_per_class(tmp_path):
    p = run_cli(["demo", "--section", "digits", "--quick", "--out", str(tmp_path)])
    assert p.returncode == 0, p.stderr
    assert "class-conditional digits" in p.stdout
    im = Image.open(tmp_path / "digits.png")
    assert im.height > 10 * 32  # ten rows of 8x8 digits enlarged to 32 px
