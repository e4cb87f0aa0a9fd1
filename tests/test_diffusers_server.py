"""`serve` lists diffusers folders beside our checkpoints and draws from them like ours."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest

MISSING = "optional extra: pip install 'diffusionforge[diffusers]'"
pytest.importorskip("diffusers", reason=MISSING)
pytest.importorskip("transformers", reason=MISSING)
httpx = pytest.importorskip("httpx")

sys.path.insert(0, str(Path(__file__).parent))
from diffusers_kit import save_ddpm, scheduler, tiny_sd  # noqa: E402
from serverkit import running_server, settings  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    models = tmp_path_factory.mktemp("serve") / "models"
    save_ddpm(models / "pixels", scheduler("DDIMScheduler", clip_sample=False))
    tiny_sd(models / "sd", scheduler("DDIMScheduler"))
    with running_server(settings(models, workers=1, queue_size=4)) as (url, _app):
        yield httpx.Client(base_url=url, timeout=60), models


def test_listed_and_drawn_like_the_api(served):
    import torch
    from PIL import Image

    from diffusionforge.pipelines.diffusers_model import load
    from diffusionforge.plot import to_pil

    client, models = served
    listing = {m["id"]: m for m in client.get("/api/models").json()["models"]}
    assert listing["pixels"]["kind"] == "diffusers" and not listing["pixels"]["prompt"]
    assert listing["sd"]["prompt"] and "scheduler" in listing["sd"]["schedules"]
    req = {"model": "pixels", "n": 2, "nfe": 3, "seed": 4, "sampler": "euler"}
    r = client.post("/api/generate/diffusers", params={"wait": "true"}, json=req)
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["status"] == "done", job
    grid, *singles = job["outputs"]
    assert grid["role"] == "grid" and len(singles) == 2
    torch.set_num_threads(1)
    model = load(models / "pixels")
    for i, out in enumerate(singles):
        png = Image.open(io.BytesIO(client.get(out["url"]).content))
        expected = to_pil(model.generate([4 + i], nfe=3, sampler="euler")[0].clamp(-1, 1))
        assert np.array_equal(np.asarray(png), np.asarray(expected))
    req = {"model": "sd", "prompt": "a red circle", "negative_prompt": "blurry", "nfe": 2}
    r = client.post("/api/generate/diffusers", params={"wait": "true"}, json=req)
    assert r.status_code == 200 and r.json()["status"] == "done", r.text


@pytest.mark.parametrize(
    "body, field",
    [
        ({"model": "sd", "nfe": 2}, "prompt"),  # a text-to-image folder needs a prompt
        ({"model": "pixels", "prompt": "x"}, "prompt"),  # an unconditional one takes none
        ({"model": "pixels", "class": 3}, "class"),
        ({"model": "pixels", "schedule": "nope"}, "schedule"),
    ],
)
def test_bad_requests_get_one_line_4xx(served, body, field):
    client, _ = served
    r = client.post("/api/generate/diffusers", json=body)
    assert 400 <= r.status_code < 500, r.text
    assert field in r.text and "\n" not in r.json()["error"]
