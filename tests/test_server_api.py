"""The HTTP API over a real uvicorn server: images end to end with regenerating metadata,
progress and cancel, timeout, client disconnect, token / host / origin rules, re-entrancy."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from serverkit import models_folder, running_server, settings

from diffusionforge.core.plan import Plan
from diffusionforge.pipelines.images import ImageRequest, draw, read_metadata
from diffusionforge.pipelines.pipeline import load_pipeline
from diffusionforge.plot import to_pil
from diffusionforge.server.settings import Limits, ServerSettings


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return models_folder(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def server(models):
    with running_server(settings(models, workers=1, queue_size=8)) as (url, app):
        yield httpx.Client(base_url=url, timeout=30), app


def _wait(client, job_id, until=("done", "failed", "cancelled", "timeout"), timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in until:
            return job
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} still {job['status']}")


def test_models_and_health(server):
    client, _ = server
    assert client.get("/health").json()["status"] == "ok"
    listing = client.get("/api/models").json()
    (model,) = listing["models"]
    assert model["id"] == "tiny" and model["kind"] == "image" and len(model["classes"]) == 10
    assert "euler" in model["samplers"] and listing["limits"]["queue_size"] == 8
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/api/generate/image"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]


def test_images_regenerate_bit_for_bit_and_name_no_server_path(server, models):
    client, app = server
    req = {"model": "tiny", "class": 3, "n": 3, "nfe": 4, "seed": 5, "sampler": "heun"}
    r = client.post("/api/generate/image", params={"wait": "true"}, json=req)
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["status"] == "done" and job["progress"] == {
        "done": 9,
        "total": 9,
    }  # heun at NFE 4: 3 steps/img (Euler, Heun, Euler)
    grid, *singles = job["outputs"]
    assert grid["role"] == "grid" and len(singles) == 3
    pipe = load_pipeline(models / "tiny")
    torch.set_num_threads(1)
    schedule = job["params"]["schedule"]  # the recommended one for 4 NFE, resolved and echoed
    expected = draw(pipe, ImageRequest(5, [3, 3, 3], 2.0, Plan.resolve(4, "heun", schedule)), 3)
    for i, out in enumerate(singles):
        assert len(out["name"]) == 36 and out["url"] == f"/api/files/{out['name']}"
        f = client.get(out["url"])
        assert f.status_code == 200 and f.headers["content-type"] == "image/png"
        png = Image.open(io.BytesIO(f.content))
        assert np.array_equal(np.asarray(png), np.asarray(to_pil(expected[i])))
        rec = json.loads(png.text["diffusionforge"])
        assert rec["seed"] == 5 + i and rec["class"] == 3 and rec["model"] == "tiny"
        sha = hashlib.sha256((models / "tiny" / "model.safetensors").read_bytes()).hexdigest()
        assert rec["checkpoint_sha256"] == sha and rec["sampler"] == "heun"
        assert str(models) not in f.content.decode("latin-1")  # no server path in the file
    assert str(models) not in r.text and str(app.state.queue.outputs_dir) not in r.text
    # a PNG from the server feeds `sample --like`'s reader as one from the CLI would
    tmp = app.state.queue.outputs_dir / singles[0]["name"]
    assert read_metadata(tmp)["nfe"] == 4


def test_progress_then_cancel_stops_the_job_and_keeps_no_files(server):
    client, app = server
    r = client.post("/api/generate/image", json={"model": "tiny", "n": 16, "nfe": 200})
    assert r.status_code == 202 and r.headers["location"] == f"/api/jobs/{r.json()['id']}"
    job_id = r.json()["id"]
    deadline = time.monotonic() + 20
    while (job := client.get(f"/api/jobs/{job_id}").json())["progress"]["done"] < 3:
        assert time.monotonic() < deadline and job["status"] in ("queued", "running")
        time.sleep(0.01)
    assert job["progress"]["total"] == 16 * 200 and job["status"] == "running"
    assert client.post(f"/api/jobs/{job_id}/cancel").status_code == 200
    job = _wait(client, job_id)
    assert job["status"] == "cancelled" and job["outputs"] == []
    assert job["progress"]["done"] < job["progress"]["total"]
    assert not list(app.state.queue.outputs_dir.glob(f"*{job_id}*"))


def test_event_stream_reports_progress_and_ends(server):
    client, _ = server
    job = client.post("/api/generate/image", json={"model": "tiny", "n": 2, "nfe": 8}).json()
    states = []
    with client.stream("GET", f"/api/jobs/{job['id']}/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                states.append(json.loads(line[6:]))
    assert states[-1]["status"] == "done" and states[-1]["progress"]["done"] == 16
    done = [s["progress"]["done"] for s in states]
    assert done == sorted(done)


def _raw_request(url: str, method: str, path: str, body: bytes = b"") -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body)
    return sock


def _latest_job(app):
    return next(reversed(app.state.queue._jobs.values()))


@pytest.mark.parametrize("mode", ["wait", "events"])
def test_client_disconnect_cancels_its_job(server, mode):
    client, app = server
    url = str(client.base_url)
    long = json.dumps({"model": "tiny", "n": 16, "nfe": 200}).encode()
    if mode == "wait":
        sock = _raw_request(url, "POST", "/api/generate/image?wait=true", long)
        time.sleep(0.3)
        job = _latest_job(app)
    else:
        job_id = client.post(
            "/api/generate/image", content=long, headers={"content-type": "application/json"}
        ).json()["id"]
        sock = _raw_request(url, "GET", f"/api/jobs/{job_id}/events")
        assert sock.recv(200).startswith(b"HTTP/1.1 200")
        job = app.state.queue.get(job_id)
    _wait(client, job.id, until=("running",))
    sock.close()
    assert _wait(client, job.id)["status"] == "cancelled"


def test_job_timeout(models):
    with running_server(settings(models, job_timeout_s=0.3)) as (url, _):
        client = httpx.Client(base_url=url, timeout=30)
        r = client.post(
            "/api/generate/image?wait=true", json={"model": "tiny", "n": 16, "nfe": 200}
        )
        job = r.json()
        assert job["status"] == "timeout" and "0.3 s" in job["error"] and job["outputs"] == []


def test_token_host_and_origin_rules(models):
    token = "t" * 32
    s = ServerSettings(models_dir=models, host="0.0.0.0", token=token, limits=Limits())
    with running_server(s) as (url, _):
        client = httpx.Client(base_url=url, timeout=30)
        r = client.get("/api/models")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert (
            client.get("/api/models", headers={"Authorization": "Bearer nope"}).status_code == 401
        )
        ok = client.get("/api/models", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
        assert client.get("/health").json()["auth"] is True  # the page asks for the token
    with running_server(settings(models)) as (url, _):
        client = httpx.Client(base_url=url, timeout=30)
        # DNS rebinding: a foreign name that resolves to 127.0.0.1 is refused on loopback
        assert client.get("/api/models", headers={"Host": "evil.example:80"}).status_code == 421
        for method in ("GET", "POST", "OPTIONS"):
            r = client.request(
                method,
                "/api/generate/image",
                headers={
                    "Origin": "http://evil.example",
                    "Content-Type": "application/json",
                    "Access-Control-Request-Method": "POST",
                },
                content=b"{}",
            )
            assert r.status_code == 403, (method, r.text)
            assert not any(h.startswith("access-control-") for h in r.headers)
        same = client.get("/api/models", headers={"Origin": url})
        assert same.status_code == 200 and "access-control-allow-origin" not in same.headers
        page = client.get("/")
        assert page.status_code == 200 and "<progress" in page.text
        assert page.headers["x-frame-options"] == "DENY"
        assert "default-src 'self'" in page.headers["content-security-policy"]


def test_concurrent_jobs_equal_sequential_bit_for_bit(models):
    """Samplers are pure: jobs running at once on 3 workers (sharing the network) give the
    bytes each gives alone."""
    jobs = [
        {"model": "tiny", "class": k % 10, "n": 2, "nfe": 6, "seed": 100 + k, "sampler": s}
        for k, s in enumerate(["heun", "dpmpp_2m", "unipc", "euler_ancestral", "ddpm", "ipndm"])
    ]

    def pixels(client, req):
        job = client.post("/api/generate/image?wait=true", json=req).json()
        assert job["status"] == "done", job
        return [client.get(o["url"]).content for o in job["outputs"]]

    with running_server(settings(models, workers=1)) as (url, _):
        client = httpx.Client(base_url=url, timeout=60)
        sequential = [pixels(client, req) for req in jobs]
    with running_server(settings(models, workers=3)) as (url, app):
        client = httpx.Client(base_url=url, timeout=60)
        with ThreadPoolExecutor(len(jobs)) as pool:
            concurrent = list(pool.map(lambda req: pixels(client, req), jobs))
        assert app.state.queue.peak_running > 1  # they did overlap
    for seq, con in zip(sequential, concurrent, strict=True):
        seq_px = [np.asarray(Image.open(io.BytesIO(b))) for b in seq]
        con_px = [np.asarray(Image.open(io.BytesIO(b))) for b in con]
        assert all(np.array_equal(a, b) for a, b in zip(seq_px, con_px, strict=True))


def test_concurrent_sampling_threads_match_sequential_floats(models):
    """The same at the float level, below the PNG's 8-bit rounding: threads sharing one
    network, each drawing with a different sampler, equal the sequential tensors exactly."""
    import threading

    pipe = load_pipeline(models / "tiny")
    reqs = [
        ImageRequest(7 + k, [k, k + 1], 2.0, Plan.resolve(8, s, "karras"))
        for k, s in enumerate(["heun", "dpmpp_2m_sde", "unipc", "ddim"])
    ]
    sequential = [draw(pipe, r, 2) for r in reqs]
    out = [None] * len(reqs)
    start = threading.Barrier(len(reqs))

    def work(i):
        start.wait()
        out[i] = draw(pipe, reqs[i], 2)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(reqs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(sequential, out, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--host", "0.0.0.0"], "needs --token"),
        (["--host", "0.0.0.0", "--token", "short"], "at least 16 characters"),
        (["--models", "/nonexistent/models"], "no such folder"),
        (["--queue-size", "0"], "--queue-size: expected a positive number"),
        (["--job-timeout", "nan"], "--job-timeout"),
        (["--port", "70000"], "--port"),
    ],
)
def test_serve_flags_fail_in_one_line(args, expected, capsys, monkeypatch):
    from diffusionforge.cli import main

    monkeypatch.delenv("DIFFUSIONFORGE_TOKEN", raising=False)
    assert main(["serve", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and err.count("\n") == 1


def test_serve_refuses_a_busy_port_and_an_empty_models_folder(tmp_path, capsys):
    from diffusionforge.cli import main

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    assert main(["serve", "--port", str(busy.getsockname()[1])]) == 2
    assert "cannot listen" in capsys.readouterr().err
    busy.close()
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "not a model").mkdir()
    assert main(["serve", "--models", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "skipped not a model: not a valid model id" in err
    assert err.strip().splitlines()[-1].startswith("error: ") and "no servable model" in err


def test_a_model_that_fails_to_load_fails_its_job_without_a_path(tmp_path):
    from serverkit import write_tiny_image_model

    from diffusionforge.train.checkpoint import load_checkpoint, write_folder

    models = tmp_path / "models"
    good = write_tiny_image_model(models / "broken")
    files = load_checkpoint(good).files
    config = json.loads(files["config.json"])
    config["model"]["unet"]["channels"] = 12  # the weights were made for 8
    files["config.json"] = json.dumps(config).encode()
    write_folder(good, {k: v for k, v in files.items() if k != "manifest.json"}, step=0)
    with running_server(settings(models)) as (url, _):
        client = httpx.Client(base_url=url, timeout=30)
        job = client.post("/api/generate/image?wait=true", json={"model": "broken"}).json()
        assert job["status"] == "failed" and "could not be loaded" in job["error"]
        assert str(tmp_path) not in json.dumps(job)
        assert client.get("/health").status_code == 200


def test_a_stopping_queue_refuses_with_unavailable_and_retry_after(tmp_path):
    from diffusionforge.server.jobs import Job, JobQueue, QueueFull

    queue = JobQueue(Limits(), tmp_path)
    queue.start()
    queue.stop()
    with pytest.raises(QueueFull) as refused:
        queue.submit(Job("image", "tiny", {}, lambda ctx: None))
    assert refused.value.unavailable and refused.value.retry_after >= 1  # answered 503


def test_bundled_models_are_served_and_autoencoders_are_not(tmp_path):
    from diffusionforge.assets import bundled_path
    from diffusionforge.server.registry import scan

    registry, skipped = scan(None)
    ids = [m["id"] for m in registry.public()]
    assert ids[0] == "digits" and "vae-scenes" not in ids and "judge" not in ids
    # an autoencoder trained on the scenes shares data.kind with text-to-image models
    models = tmp_path / "models"
    models.mkdir()
    (models / "vae").symlink_to(bundled_path("vae-scenes"), target_is_directory=True)
    registry, skipped = scan(models)
    assert len(registry) == 0 and skipped == ["vae: no handler for this kind of model"]
