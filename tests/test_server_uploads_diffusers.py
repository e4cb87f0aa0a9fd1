"""img2img and inpainting over HTTP for diffusers folders (issue 18 point 11): the served image
equals `sample FOLDER --init-image --mask` on the same files, and bad uploads are one line."""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path

import numpy as np
import pytest

MISSING = "optional extra: pip install 'diffusionforge[diffusers]'"
pytest.importorskip("diffusers", reason=MISSING)
httpx = pytest.importorskip("httpx")

sys.path.insert(0, str(Path(__file__).parent))
from diffusers_kit import save_ddpm, scheduler  # noqa: E402
from serverkit import running_server, settings  # noqa: E402


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("uploads-diffusers")
    save_ddpm(root / "models" / "pixels", scheduler("DDIMScheduler", clip_sample=False))
    with running_server(settings(root / "models")) as (url, _app):
        yield httpx.Client(base_url=url, timeout=60), root


@pytest.mark.parametrize("masked", [True, False], ids=["inpainting", "img2img"])
def test_diffusers_edits_over_http_equal_sample(served, masked):
    import torch
    from PIL import Image

    from diffusionforge.cli.main import main
    from diffusionforge.plot import to_pil

    client, root = served
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 2:6] = 255
    (root / "init.png").write_bytes(_png(image))
    (root / "mask.png").write_bytes(_png(mask))
    edits = ["--init-image", str(root / "init.png")]
    edits += ["--mask", str(root / "mask.png")] if masked else ["--strength", "0.5"]
    out = root / f"cli-{masked}.npy"
    assert main(["sample", str(root / "models" / "pixels"), "--n", "1", "--seed", "4",
                 "--nfe", "3", "--sampler", "euler", "--threads", "1", *edits,
                 "--out", str(out)]) == 0  # fmt: skip
    cli = np.asarray(to_pil(torch.from_numpy(np.load(out)[0])))
    req = {"model": "pixels", "n": 1, "seed": 4, "nfe": 3, "sampler": "euler"}
    req["init_image"] = base64.b64encode(_png(image)).decode()
    if masked:
        req["mask"] = base64.b64encode(_png(mask)).decode()
    else:
        req["strength"] = 0.5
    job = client.post("/api/generate/diffusers?wait=true", json=req).json()
    assert job["status"] == "done", job
    (single,) = [o for o in job["outputs"] if o["role"] == "image"]
    got = np.asarray(Image.open(io.BytesIO(client.get(single["url"]).content)))
    assert got.tobytes() == cli.tobytes()
    assert job["params"]["strength"] == (1.0 if masked else 0.5)
    if masked:  # outside the white square the init image is kept
        assert np.abs(got[0].astype(int) - image[0]).max() <= 1


def test_diffusers_bad_uploads_are_one_line_4xx(served):
    client, _ = served
    base = {"model": "pixels", "n": 1, "nfe": 1}
    for body, status, line in (
        ({"init_image": "%%%"}, 422, "init_image: not valid base64"),
        ({"init_image": base64.b64encode(_png(np.zeros((4, 4, 3), np.uint8))).decode()}, 422,
         "init_image: the image is 4x4 pixels; this model makes 8x8"),
        ({"mask": base64.b64encode(_png(np.zeros((8, 8), np.uint8))).decode()}, 422,
         "mask: send the image to edit as init_image too"),
        ({"strength": 0}, 422, "strength: Input should be greater than 0"),
    ):  # fmt: skip
        r = client.post("/api/generate/diffusers", json=base | body)
        assert r.status_code == status and r.json()["error"].startswith(line), (line, r.text)
