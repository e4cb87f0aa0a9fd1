"""The text handler: generation and infilling through the API give what `generate-text` gives,
with progress in network calls, and one-line 422s for prompts the model cannot take."""

from __future__ import annotations

import json

import httpx
import pytest
import torch
from serverkit import running_server, settings, write_tiny_text_model

from diffusionforge.pipelines.text import load_text_pipeline


@pytest.fixture(scope="module")
def text_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    ckpt = write_tiny_text_model(root / "run")
    models = root / "models"
    models.mkdir()
    (models / "grammar-tiny").symlink_to(ckpt, target_is_directory=True)
    return models, ckpt


def test_infilling_through_the_api_equals_the_pipeline(text_models):
    models, ckpt = text_models
    with running_server(settings(models)) as (url, _):
        client = httpx.Client(base_url=url, timeout=60)
        (model,) = client.get("/api/models").json()["models"]
        assert model["kind"] == "text" and model["context"] == 32 and "prompt" in model["fields"]
        req = {"model": "grammar-tiny", "prompt": "the cat [____:6] mat.", "nfe": 6, "seed": 4}
        job = client.post("/api/generate/text?wait=true", json={**req, "n": 2}).json()
        assert job["status"] == "done", job
        assert job["progress"]["done"] == job["progress"]["total"] == 6
        texts = [o for o in job["outputs"] if o["role"] == "text"]
        records = [o for o in job["outputs"] if o["role"] == "record"]
        assert len(texts) == len(records) == 2
        torch.set_num_threads(1)
        pipe = load_text_pipeline(ckpt)
        template = pipe.template(req["prompt"], 8)
        expected = pipe.generate(2, len(template), template=template, nfe=6, seed=4)
        for i, out in enumerate(texts):
            text = client.get(out["url"]).text
            assert text == pipe.decode(expected[i])
            assert text.startswith("the cat ") and text.endswith(" mat.")
            assert out["metadata"]["seed"] == 4 + i and "[" in out["metadata"]["marked"]
        record = json.loads(client.get(records[1]["url"]).text)
        assert record["metadata"]["prompt"] == req["prompt"] and record["metadata"]["nfe"] == 6
        # plain generation to a length, and the errors a prompt can cause
        job = client.post(
            "/api/generate/text?wait=true", json={"model": "grammar-tiny", "length": 20, "nfe": 4}
        ).json()
        assert job["status"] == "done" and len(client.get(job["outputs"][0]["url"]).text) > 0
        for body, field in (
            ({"prompt": "x" * 2000}, "prompt: at most"),
            ({"prompt": "[____:40]"}, "prompt: 40 tokens"),
            ({"prompt": "the \u2603 [____]"}, "prompt:"),
            ({"prompt": "the [____]", "length": 2}, "length: shorter"),
            ({"length": 5000}, "length: at most"),
            ({"sampler": "heun"}, "sampler:"),
            ({"temperature": -1}, "temperature:"),
            ({"draws": 3}, "draws: only prompt/response models"),
            ({"draws": 0}, "draws:"),
            ({"accept": 1.5}, "accept:"),
        ):
            r = client.post("/api/generate/text", json={"model": "grammar-tiny", **body})
            assert r.status_code == 422 and r.json()["error"].startswith(field), (body, r.text)
        # a text model is not an image model
        r = client.post("/api/generate/image", json={"model": "grammar-tiny"})
        assert r.status_code == 422 and "/api/generate/text" in r.json()["error"]
