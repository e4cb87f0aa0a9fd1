"""Text-to-image and audio through the API: each output equals what the modality's pipeline
gives for the same settings, the metadata names them, and requests a model cannot take are
one-line 422s."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from serverkit import running_server, settings, write_tiny_audio_model, write_tiny_t2i_model

from diffusionforge.pipelines.audio import load_audio_pipeline
from diffusionforge.pipelines.text2image import load_text2image
from diffusionforge.plot import to_pil


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("modalities")
    models = root / "models"
    models.mkdir()
    t2i = write_tiny_t2i_model(root / "t2i")
    audio = write_tiny_audio_model(root / "audio")
    (models / "scenes-tiny").symlink_to(t2i, target_is_directory=True)
    (models / "tones").symlink_to(audio, target_is_directory=True)
    with running_server(settings(models)) as (url, _):
        yield httpx.Client(base_url=url, timeout=60), t2i, audio


def test_model_list_names_each_kind_and_its_fields(served):
    client, _, _ = served
    models = {m["id"]: m for m in client.get("/api/models").json()["models"]}
    assert models["scenes-tiny"]["kind"] == "text2image"
    assert {"prompt", "negative_prompt", "guidance"} <= set(models["scenes-tiny"]["fields"])
    assert models["tones"]["kind"] == "audio" and models["tones"]["classes"] == ["0-tone", "1-tone"]
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/generate/text2image", "/api/generate/audio", "/api/generate/text"} <= set(paths)


@pytest.mark.filterwarnings("ignore:prompt 0. unknown word")  # the pipeline's own warning
def test_text_to_image_equals_the_pipeline(served):
    client, ckpt, _ = served
    req = {"model": "scenes-tiny", "prompt": "a red circle", "n": 2, "nfe": 3, "seed": 9}
    req |= {"sampler": "euler", "negative_prompt": "blue", "guidance": 3.0}
    job = client.post("/api/generate/text2image?wait=true", json=req).json()
    assert job["status"] == "done", job
    assert job["progress"] == {"done": 3, "total": 3} and job["params"]["warnings"] == []
    torch.set_num_threads(1)
    pipe = load_text2image(ckpt)
    expected = pipe.generate(
        ["a red circle"] * 2, nfe=3, guidance=3.0, seeds=[9, 10], sampler="euler",
        schedule=job["params"]["schedule"], negative_prompt="blue",
    )  # fmt: skip
    singles = [o for o in job["outputs"] if o["role"] == "image"]
    for i, out in enumerate(singles):
        png = Image.open(io.BytesIO(client.get(out["url"]).content))
        assert np.array_equal(np.asarray(png), np.asarray(to_pil(expected[i])))
        rec = json.loads(png.text["diffusionforge"])
        assert rec["prompt"] == "a red circle" and rec["seed"] == 9 + i and rec["nfe"] == 3
    r = client.post(
        "/api/generate/text2image?wait=true",
        json={"model": "scenes-tiny", "prompt": "a zorblax circle", "n": 1, "nfe": 1},
    )
    assert "zorblax" in r.json()["params"]["warnings"][0]
    for body, error in (
        ({"prompt": "   "}, "prompt: empty"),
        ({"prompt": "x" * 1001}, "prompt: at most 1000"),
        ({}, "prompt: Field required"),
        ({"prompt": "a", "class": 1}, "class: Extra inputs"),
    ):
        r = client.post("/api/generate/text2image", json={"model": "scenes-tiny", **body})
        assert r.status_code == 422 and r.json()["error"].startswith(error), (body, r.text)


def test_audio_equals_the_pipeline(served, tmp_path):
    from diffusionforge.data.audio import save_wav

    client, _, ckpt = served
    req = {"model": "tones", "class": "1-tone", "n": 2, "nfe": 2, "seed": 3, "sampler": "euler"}
    job = client.post("/api/generate/audio?wait=true", json=req).json()
    assert job["status"] == "done", job
    roles = [o["role"] for o in job["outputs"]]
    assert roles == ["grid", "audio", "record", "audio", "record"]
    torch.set_num_threads(1)
    pipe = load_audio_pipeline(ckpt)
    expected = pipe.generate(
        [3, 4], labels=torch.tensor([1, 1]), guidance=2.0, nfe=2, sampler="euler",
        schedule=job["params"]["schedule"],
    )  # fmt: skip
    clips = [o for o in job["outputs"] if o["role"] == "audio"]
    for i, out in enumerate(clips):
        r = client.get(out["url"])
        assert r.headers["content-type"] == "audio/wav"
        data, rate = sf.read(io.BytesIO(r.content), dtype="int16")
        assert rate == 8000 and data.shape == (2000,)
        want, _ = sf.read(save_wav(tmp_path / f"{i}.wav", expected[i], 8000), dtype="int16")
        assert np.array_equal(data, want)  # the same floats, written the same way
        assert out["metadata"]["class_name"] == "1-tone" and out["metadata"]["seed"] == 3 + i
    r = client.post("/api/generate/audio", json={"model": "tones", "class": "2-tone"})
    assert r.status_code == 422 and r.json()["error"].startswith("class: unknown class name")
