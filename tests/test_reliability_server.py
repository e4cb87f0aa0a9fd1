"""Reliability of `serve` against hostile requests and damaged models (issue 14).

The bar: every bad request is a 4xx one-line JSON error (never 5xx, never a stuck job), one bad
model folder is skipped with one line while the others are served, a model that cannot be
loaded or run fails its jobs with one line (no traceback in the log), and a server bound to any
loopback address answers to that address.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from serverkit import models_folder, running_server, settings, write_tiny_image_model

from diffusionforge.server.guard import error
from diffusionforge.server.registry import scan
from diffusionforge.train.checkpoint import load_checkpoint, write_folder

JSON = {"Content-Type": "application/json"}
OK = {"model": "tiny", "n": 1, "nfe": 1}


def _one_line_4xx(r: httpx.Response, name: str = "") -> str:
    assert 400 <= r.status_code < 500, f"{name}: {r.status_code} {r.text[:200]}"
    text = r.content.decode("utf-8")
    assert "\n" not in text.strip() and "Traceback" not in text, name
    return json.loads(text)["error"]


def _forge(folder, edit) -> None:
    """Rewrite a model's config.json through `edit(config)` and recompute its manifest, as a
    forger would (the checksums then pass)."""
    files = load_checkpoint(folder).files
    config = json.loads(files["config.json"])
    edit(config)
    files["config.json"] = json.dumps(config).encode()
    write_folder(folder, {k: v for k, v in files.items() if k != "manifest.json"}, step=0)


def _set(path: str, value):
    def edit(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for p in parents:
            node = node[p]
        node[last] = value

    return edit


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    models = models_folder(tmp_path_factory.mktemp("reliable"))
    with running_server(settings(models, workers=1, queue_size=4)) as (url, app):
        yield httpx.Client(base_url=url, timeout=60), app


def _settled(app) -> None:
    """No job left queued or running (a refused request must never leave one behind)."""
    deadline = time.monotonic() + 30
    while app.state.queue.counts() != {"waiting": 0, "running": 0}:
        assert time.monotonic() < deadline, app.state.queue.counts()
        time.sleep(0.02)


# --- lone surrogates --------------------------------------------------------------------------

SURROGATES = [
    ("image", {**OK, "class": "\ud800 circle"}, "class"),
    ("text2image", {"model": "tiny", "prompt": "\ud800 circle"}, "prompt"),
    (
        "text2image",
        {"model": "tiny", "prompt": "a circle", "negative_prompt": "x\udfff"},
        "negative_prompt",
    ),  # fmt: skip
    ("text", {"model": "tiny", "prompt": "\ud800 [____]"}, "prompt"),
]


@pytest.mark.parametrize("route, body, field", SURROGATES)
def test_a_lone_surrogate_is_422_naming_the_field_and_queues_nothing(server, route, body, field):
    client, app = server
    raw = json.dumps(body).encode()  # json.dumps spells "\ud800" as the escape JSON allows
    assert b"\\ud800" in raw or b"\\udfff" in raw
    r = client.post(f"/api/generate/{route}?wait=true", content=raw, headers=JSON)
    message = _one_line_4xx(r, field)
    assert r.status_code == 422 and message.startswith(f"{field}: not valid Unicode"), message
    _settled(app)
    assert client.get("/health").status_code == 200


def test_an_error_line_holding_a_surrogate_still_renders():
    r = error(422, "key \ud800 refused")
    assert json.loads(r.body)["error"] == "key \\ud800 refused"


# --- hostile bodies ---------------------------------------------------------------------------

HOSTILE = [
    ("deep array", b"[" * 30000 + b"]" * 30000),
    ("deep object", b'{"a":' * 10000 + b"1" + b"}" * 10000),
    ("deep class", b'{"model":"tiny","class":' + b"[" * 20000 + b"]" * 20000 + b"}"),
    ("5000-digit seed", b'{"model":"tiny","seed":' + b"9" * 5000 + b"}"),
    ("1e999999 guidance", b'{"model":"tiny","guidance":1e999999}'),
    ("surrogate key", b'{"model":"tiny","\\ud800":1}'),
    ("surrogate model", b'{"model":"tiny\\ud800"}'),
    ("surrogate sampler", b'{"model":"tiny","sampler":"\\udc00"}'),
    ("latin-1 byte", b'{"model":"tiny","class":"\xff"}'),
    ("NUL after JSON", b'{"model":"tiny"}\x00'),
    ("60 KB class name", json.dumps({**OK, "class": "x" * 60000}).encode()),
    ("1 MB body", json.dumps({**OK, "class": "x" * (1 << 20)}).encode()),
    ("a string", b'"tiny"'),
    ("null", b"null"),
    ("model list", b'{"model":["tiny"]}'),
    ("model object", b'{"model":{"id":"tiny"}}'),
    ("class float", b'{"model":"tiny","class":1.0}'),
    ("class bool", b'{"model":"tiny","class":true}'),
    ("n string", b'{"model":"tiny","n":"1"}'),
    ("unknown field", b'{"model":"tiny","stepz":4}'),
    ("many unknown fields", json.dumps({f"f{k}": k for k in range(3000)}).encode()),
]


@pytest.mark.parametrize("name, body", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_bodies_get_one_line_4xx(server, name, body):
    client, app = server
    r = client.post("/api/generate/image?wait=true", content=body, headers=JSON)
    _one_line_4xx(r, name)
    _settled(app)


def test_long_prompts_are_refused_by_the_cap(server):
    client, _ = server
    for route in ("text", "text2image"):
        body = {"model": "tiny", "prompt": "a red circle " * 2000}  # 26,000 characters
        r = client.post(f"/api/generate/{route}", json=body)
        assert r.status_code in (404, 413, 422), r.text  # 404: no such model of that kind
        _one_line_4xx(r, route)


def test_concurrent_requests_are_202_or_429_never_5xx(server):
    client, app = server
    bodies = [json.dumps({**OK, "seed": k}).encode() for k in range(24)]
    bodies += [b'{"model":"tiny","class":"\\ud800"}', b"[" * 20000] * 4

    def post(body: bytes) -> int:
        with httpx.Client(base_url=str(client.base_url), timeout=60) as c:
            return c.post("/api/generate/image", content=body, headers=JSON).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(post, bodies))
    assert all(s in (202, 400, 422, 429) for s in statuses), statuses
    assert statuses.count(202) >= 1
    _settled(app)
    assert client.get("/health").json()["status"] == "ok"


# --- loopback hosts ---------------------------------------------------------------------------


@pytest.mark.parametrize("bound", ["127.0.0.2", "::1"])
def test_a_server_bound_to_any_loopback_address_answers_to_it(tmp_path, bound):
    from diffusionforge.server.settings import Limits, ServerSettings

    s = ServerSettings(models_dir=models_folder(tmp_path), host=bound, limits=Limits())
    with running_server(s) as (url, _):
        port = url.rsplit(":", 1)[1]
        client = httpx.Client(base_url=url, timeout=30)
        shown = f"[{bound}]" if ":" in bound else bound
        for host in (shown, f"{shown}:{port}", "localhost", f"127.0.0.1:{port}"):
            r = client.get("/api/models", headers={"Host": host})
            assert r.status_code == 200, (host, r.text)
        for host in ("127.0.0.3", "evil.example", f"evil.example:{port}", ""):
            r = client.get("/api/models", headers={"Host": host})
            assert r.status_code == 421 and shown in _one_line_4xx(r, host)


# --- damaged and forged models ----------------------------------------------------------------

FORGED_HEADERS = [
    ("classes 5", _set("diffusionforge.classes", 5)),
    ("example_shape x", _set("diffusionforge.example_shape", "x")),
    ("header a list", _set("diffusionforge", [1])),
    ("data.kind a list", _set("data.kind", ["digits"])),
    ("data a string", _set("data", "digits")),
    ("model a string", _set("model", "unet")),
    ("sample.nfe text", _set("sample.nfe", "many")),
    ("surrogate class", _set("diffusionforge.classes", ["\ud800"] * 10)),
]


def test_one_bad_model_folder_is_skipped_with_one_line_and_the_others_served(tmp_path):
    models = models_folder(tmp_path)  # "tiny" is good
    for k, (_, edit) in enumerate(FORGED_HEADERS):
        _forge(write_tiny_image_model(models / f"bad{k}"), edit)
    (models / "empty").mkdir()
    registry, skipped = scan(models)
    assert [m["id"] for m in registry.public()] == ["tiny"]
    assert len(skipped) == len(FORGED_HEADERS) + 1, skipped
    assert all("\n" not in line and "Traceback" not in line for line in skipped)
    with running_server(settings(models)) as (url, _):
        client = httpx.Client(base_url=url, timeout=60)
        assert [m["id"] for m in client.get("/api/models").json()["models"]] == ["tiny"]
        r = client.post("/api/generate/image?wait=true", json=OK)
        assert r.status_code == 200 and r.json()["status"] == "done"
        r = client.post("/api/generate/image", json={**OK, "model": "bad0"})
        assert r.status_code == 404


def test_forged_models_fail_their_jobs_with_one_line_and_no_traceback(tmp_path, caplog):
    models = tmp_path / "models"
    # a 9x9 example does not fit the network's two resolutions
    shape = _set("diffusionforge.example_shape", [1, 9, 9])
    _forge(write_tiny_image_model(models / "shape"), shape)
    # cannot load: the weights were made for 8 channels
    _forge(write_tiny_image_model(models / "width"), _set("model.unet.channels", 12))
    caplog.set_level(logging.DEBUG, logger="diffusionforge.server")
    caplog.set_level(logging.INFO)
    with running_server(settings(models)) as (url, _):
        client = httpx.Client(base_url=url, timeout=60)
        for model in ("shape", "width", "width"):  # twice: a failed load is remembered
            r = client.post("/api/generate/image?wait=true", json={**OK, "model": model})
            assert r.status_code == 200, r.text
            job = r.json()
            assert job["status"] == "failed" and "\n" not in job["error"], job
            assert str(tmp_path) not in r.text
        assert client.get("/health").status_code == 200
    records = [r for r in caplog.records if r.name.startswith("diffusionforge")]
    loud = [r for r in records if r.exc_info and r.levelno >= logging.INFO]
    assert not loud, [r.getMessage() for r in loud]
    assert sum("model width" in r.getMessage() for r in records) == 1


def test_a_job_that_breaks_while_running_fails_with_one_line(tmp_path, monkeypatch, caplog):
    from diffusionforge.server import image_handler

    def broken(*args, **kwargs):
        raise RuntimeError("shape mismatch reading /srv/secret/models/x/model.safetensors")

    monkeypatch.setattr(image_handler, "_draw", broken)
    caplog.set_level(logging.INFO)
    with running_server(settings(models_folder(tmp_path))) as (url, _):
        r = httpx.post(url + "/api/generate/image?wait=true", json=OK, timeout=60)
    job = r.json()
    assert r.status_code == 200 and job["status"] == "failed"
    expected = "generation failed (RuntimeError: shape mismatch reading model.safetensors)"
    assert job["error"] == expected
    assert not [r for r in caplog.records if r.exc_info and r.levelno >= logging.INFO]


@pytest.mark.parametrize("classes", [10**12, "abc", 2.5, -3])
def test_a_diffusers_folder_with_a_forged_class_count_is_skipped(tmp_path, classes):
    """num_class_embeds would list one name per class: a huge or non-integer count is refused
    at the scan (one line), never listed."""
    models = models_folder(tmp_path)
    bad = models / "dif"
    bad.mkdir()
    (bad / "config.json").write_text(
        json.dumps({"_class_name": "UNet2DModel", "num_class_embeds": classes})
    )
    registry, skipped = scan(models)
    assert [m["id"] for m in registry.public()] == ["tiny"]
    assert len(skipped) == 1 and "num_class_embeds" in skipped[0], skipped
    assert "\n" not in skipped[0]
