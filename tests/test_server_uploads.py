"""img2img and inpainting over HTTP (issue 18 point 11): an init image and a mask sent as
base64 in the JSON give the same pixels as `sample` / `generate` given the same files, and
every bad upload is a one-line 4xx naming the field, found before anything is decoded or queued.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from serverkit import running_server, settings, write_tiny_image_model, write_tiny_t2i_model

from diffusionforge.cli.main import main
from diffusionforge.plot import to_pil

JSON = {"Content-Type": "application/json"}


def _png(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _pictures(side: int, mode: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded noise picture and a mask whose right half is white (generate)."""
    rng = np.random.default_rng(seed)
    shape = (side, side) if mode == "L" else (side, side, 3)
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    mask = np.zeros((side, side), np.uint8)
    mask[:, side // 2 :] = 255
    return image, mask


def _cli_images(folder) -> list[np.ndarray]:
    """The single PNGs a drawing command wrote to `folder`, in the order of their seeds."""
    found = []
    for p in folder.rglob("*.png"):
        with Image.open(p) as im:
            meta = im.text.get("diffusionforge")
            if p.name != "grid.png" and meta and "count" not in json.loads(meta):
                found.append((json.loads(meta)["seed"], np.asarray(im)))
    return [a for _, a in sorted(found, key=lambda t: t[0])]


def _singles(client: httpx.Client, job: dict) -> list[np.ndarray]:
    assert job["status"] == "done", job
    outs = [o for o in job["outputs"] if o["role"] == "image"]
    return [np.asarray(Image.open(io.BytesIO(client.get(o["url"]).content))) for o in outs]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("uploads")
    models = root / "models"
    tiny = write_tiny_image_model(models / "tiny")
    t2i = write_tiny_t2i_model(root / "t2i")
    (models / "scenes-tiny").symlink_to(t2i, target_is_directory=True)
    with running_server(settings(models, max_upload_bytes=20_000)) as (url, _):
        yield httpx.Client(base_url=url, timeout=60), root, tiny, t2i


@pytest.mark.parametrize("resample", [0, 1])
def test_inpainting_over_http_equals_sample_on_the_same_files(served, resample):
    client, root, tiny, _ = served
    image, mask = _pictures(8, "L")
    (root / "init.png").write_bytes(_png(image))
    (root / "mask.png").write_bytes(_png(mask))
    out = root / f"cli-{resample}.npy"  # the drawn array: [-1, 1] before any PNG
    flags = ["--n", "2", "--class", "3", "--seed", "7", "--nfe", "4", "--threads", "1"]
    edits = ["--init-image", str(root / "init.png"), "--mask", str(root / "mask.png")]
    assert main(["sample", str(tiny), *flags, *edits, "--resample", str(resample),
                 "--device", "cpu", "--out", str(out)]) == 0  # fmt: skip
    cli = [np.asarray(to_pil(torch.from_numpy(x))) for x in np.load(out)]
    # the page's FileReader sends a data: URL; a plain base64 string is the same
    req = {"model": "tiny", "class": 3, "n": 2, "seed": 7, "nfe": 4, "resample": resample}
    req |= {"init_image": "data:image/png;base64," + _b64(_png(image)), "mask": _b64(_png(mask))}
    job = client.post("/api/generate/image?wait=true", json=req).json()
    served_images = _singles(client, job)
    assert len(cli) == len(served_images) == 2
    for a, b in zip(cli, served_images, strict=True):
        assert a.tobytes() == b.tobytes()
    kept = served_images[0][:, :4]  # black half of the mask: the init image's pixels
    assert np.abs(kept.astype(int) - image[:, :4]).max() <= 1
    assert not np.array_equal(served_images[0][:, 4:], image[:, 4:])
    rec = json.loads(
        Image.open(io.BytesIO(client.get(job["outputs"][1]["url"]).content)).text["diffusionforge"]
    )
    assert rec["edited"] and rec["strength"] == 1.0 and rec["resample"] == resample
    assert len(rec["mask_sha256"]) == 64 and job["params"]["init_sha256"] == rec["init_sha256"]
    assert "init_image" not in job["params"]  # the hash, not the upload, is echoed


def test_img2img_over_http_equals_sample_with_jpeg_and_strength(served):
    client, root, tiny, _ = served
    image, _ = _pictures(8, "RGB", seed=1)  # RGB JPEG into a grey model: converted as the CLI
    (root / "init.jpg").write_bytes(_png(image, "JPEG"))
    out = root / "cli-img2img.npy"
    assert main(["sample", str(tiny), "--n", "1", "--class", "2", "--seed", "4", "--nfe", "4",
                 "--init-image", str(root / "init.jpg"), "--strength", "0.5", "--threads", "1",
                 "--device", "cpu", "--out", str(out)]) == 0  # fmt: skip
    (cli,) = [np.asarray(to_pil(torch.from_numpy(x))) for x in np.load(out)]
    req = {"model": "tiny", "class": 2, "n": 1, "seed": 4, "nfe": 4, "strength": 0.5}
    req["init_image"] = _b64(_png(image, "JPEG"))
    (got,) = _singles(client, client.post("/api/generate/image?wait=true", json=req).json())
    assert got.tobytes() == cli.tobytes()


@pytest.mark.filterwarnings("ignore:prompt 0. unknown word")
def test_text_to_image_inpainting_equals_generate(served):
    client, root, _, t2i = served
    side = 32
    image, mask = _pictures(side, "RGB", seed=2)
    (root / "t2i-init.png").write_bytes(_png(image))
    (root / "t2i-mask.png").write_bytes(_png(mask))
    out = root / "generated"
    assert main(["generate", "a red circle", "--checkpoint", str(t2i), "--n", "2", "--nfe", "3",
                 "--seed", "9", "--sampler", "euler", "--init-image", str(root / "t2i-init.png"),
                 "--mask", str(root / "t2i-mask.png"), "--threads", "1",
                 "--out", str(out)]) == 0  # fmt: skip
    cli = _cli_images(out)
    req = {"model": "scenes-tiny", "prompt": "a red circle", "n": 2, "nfe": 3, "seed": 9}
    req |= {"sampler": "euler", "init_image": _b64(_png(image)), "mask": _b64(_png(mask))}
    got = _singles(client, client.post("/api/generate/text2image?wait=true", json=req).json())
    assert len(cli) == len(got) == 2
    for a, b in zip(cli, got, strict=True):
        assert a.tobytes() == b.tobytes()


def _huge_png_header(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h pixels (the data is a few bytes): a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0"))


def test_bad_uploads_are_one_line_4xx_naming_the_field(served):
    client, _, _, _ = served
    image, mask = _pictures(8, "L")
    good = {"model": "tiny", "n": 1, "nfe": 1, "init_image": _b64(_png(image))}
    cases = [
        ({"init_image": "not base64!"}, 422, "init_image: not valid base64"),
        ({"init_image": ""}, 422, "init_image: empty"),
        ({"init_image": _b64(b"GIF89a" + b"\0" * 30)}, 422, "init_image: not a PNG, JPEG or WebP"),
        ({"init_image": _b64(b"hello, not an image")}, 422, "init_image: not a PNG, JPEG or WebP"),
        ({"init_image": _b64(_png(image, "BMP"))}, 422, "init_image: not a PNG, JPEG or WebP"),
        ({"init_image": _b64(_huge_png_header(100_000, 100_000))}, 413, "init_image: its header"),
        ({"init_image": _b64(_huge_png_header(10_000, 10_000))}, 413, "init_image: 10000x10000"),
        (
            {"init_image": _b64(_png(np.zeros((9, 8), np.uint8)))},
            422,
            "init_image: the image is 8x9",
        ),
        ({"init_image": _b64(_png(image)[:60])}, 422, "init_image: the image data is damaged"),
        ({"init_image": "A" * 40_000}, 413, "init_image: at most 20,000 bytes"),
        ({"mask": _b64(_png(np.zeros((4, 4), np.uint8)))}, 422, "mask: the image is 4x4"),
        ({"mask": _b64(_png(np.zeros((8, 8), np.uint8)))}, 422, "mask: all black"),
        ({"mask": "@@@"}, 422, "mask: not valid base64"),
        ({"strength": 1.5}, 422, "strength: Input should be less than or equal to 1"),
        ({"resample": 2}, 422, "resample: resampling harmonises inpainting"),
        ({"init_image": None, "mask": _b64(_png(mask))}, 422, "mask: send the image to edit"),
        ({"init_image": None, "strength": 0.3}, 422, "strength: send the image to edit"),
    ]
    before = client.get("/health").json()
    for change, status, line in cases:
        body = {k: v for k, v in (good | change).items() if v is not None}
        r = client.post("/api/generate/image", json=body)
        assert r.status_code == status, (line, r.status_code, r.text)
        text = r.content.decode()
        assert "\n" not in text.strip() and "Traceback" not in text
        assert r.json()["error"].startswith(line), (line, r.text)
    after = client.get("/health").json()
    assert after["waiting"] == before["waiting"] and after["running"] == 0  # nothing queued
    # the text-to-image route checks the same way
    t2i = {"model": "scenes-tiny", "prompt": "a red circle", "n": 1, "nfe": 1}
    r = client.post("/api/generate/text2image", json=t2i | {"init_image": _b64(_png(image))})
    assert r.status_code == 422 and r.json()["error"].startswith("init_image: the image is 8x8")
    r = client.post("/api/generate/text2image", json=t2i | {"resample": 1})
    assert r.status_code == 422 and r.json()["error"].startswith("resample: Extra inputs")


def test_a_model_without_editing_refuses_an_image_and_bodies_stay_capped(served, tmp_path):
    client, _, _, _ = served
    mask = _b64(_png(np.full((8, 8), 255, np.uint8)))
    # text and audio models take no images: the field is refused by name
    for route in ("text", "audio"):
        r = client.post(f"/api/generate/{route}", json={"model": "x", "mask": mask})
        assert r.status_code == 422 and r.json()["error"].startswith("mask: Extra inputs")
    # routes without images keep the plain body cap; image routes allow two uploads more
    big = {"model": "tiny", "init_image": "A" * 70_000}
    r = client.post("/api/generate/text", content=json.dumps(big), headers=JSON)
    assert r.status_code == 413
    r = client.post("/api/generate/image", content=json.dumps(big), headers=JSON)
    assert r.status_code == 413 and r.json()["error"].startswith("init_image: at most 20,000")
