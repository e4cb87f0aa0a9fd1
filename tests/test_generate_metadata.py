"""`generate` records what it ran, as `sample` does (#18 point 5): the resolved sampler,
schedule and NFE (never "auto") and the weights' sha256."""

from __future__ import annotations

import json

from PIL import Image

from diffusionforge.cli import main
from diffusionforge.core.plan import Plan


def test_generate_records_resolved_names_and_weights_hash(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["generate", "a red circle", "--nfe", "2", "--seed", "1", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    (png,) = sorted(out.glob("generate-*.png"))
    rec = json.loads(Image.open(png).text["diffusionforge"])
    plan = Plan.resolve(2)
    assert (rec["sampler"], rec["schedule"], rec["nfe"]) == (plan.sampler, plan.schedule, 2)
    assert isinstance(rec["checkpoint_sha256"], str) and len(rec["checkpoint_sha256"]) == 64
