"""About 70 malformed requests against a real server: every one is answered 4xx with a
one-line JSON error (no traceback, no server path), none 5xx, and /health is 200 afterwards."""

from __future__ import annotations

import json
import select
import socket
import time
import uuid

import httpx
import pytest
from serverkit import models_folder, running_server, settings

GEN = "/api/generate/image"
OK = {"model": "tiny", "n": 1, "nfe": 1}


def _j(**fields) -> bytes:
    return json.dumps({**OK, **fields}).encode()


def _raw_field(name: str, literal: str) -> bytes:
    """A JSON body whose field `name` holds a literal JSON cannot spell (NaN, Infinity)."""
    return b'{"model": "tiny", "n": 1, "' + name.encode() + b'": ' + literal.encode() + b"}"


JSON = {"Content-Type": "application/json"}
CASES: list[tuple[str, str, str, bytes, dict]] = [
    # (name, method, path, body, headers)
    ("empty object", "POST", GEN, b"{}", JSON),
    ("no body", "POST", GEN, b"", JSON),
    ("extra field", "POST", GEN, _j(foo=1), JSON),
    ("prompt to a class model", "POST", GEN, _j(prompt="a cat"), JSON),
    ("nfe 0", "POST", GEN, _j(nfe=0), JSON),
    ("nfe -1", "POST", GEN, _j(nfe=-1), JSON),
    ("nfe 1e9 float", "POST", GEN, _j(nfe=1e9), JSON),
    ("nfe 1e9 int", "POST", GEN, _j(nfe=10**9), JSON),
    ("nfe string", "POST", GEN, _j(nfe="10"), JSON),
    ("nfe NaN", "POST", GEN, _raw_field("nfe", "NaN"), JSON),
    ("nfe Infinity", "POST", GEN, _raw_field("nfe", "Infinity"), JSON),
    ("nfe 1e400", "POST", GEN, _raw_field("nfe", "1e400"), JSON),
    ("nfe true", "POST", GEN, _j(nfe=True), JSON),
    ("nfe list", "POST", GEN, _j(nfe=[4]), JSON),
    ("nfe 4.5", "POST", GEN, _j(nfe=4.5), JSON),
    ("nfe 2**70", "POST", GEN, _j(nfe=2**70), JSON),
    ("guidance NaN", "POST", GEN, _raw_field("guidance", "NaN"), JSON),
    ("guidance -Infinity", "POST", GEN, _raw_field("guidance", "-Infinity"), JSON),
    ("guidance -1", "POST", GEN, _j(guidance=-1), JSON),
    ("guidance 1e308", "POST", GEN, _j(guidance=1e308), JSON),
    ("guidance string", "POST", GEN, _j(guidance="2"), JSON),
    ("n 0", "POST", GEN, _j(n=0), JSON),
    ("n -3", "POST", GEN, _j(n=-3), JSON),
    ("n 1e6 float", "POST", GEN, _j(n=1e6), JSON),
    ("n 1e6 int", "POST", GEN, _j(n=10**6), JSON),
    ("n string", "POST", GEN, _j(n="4"), JSON),
    ("seed -1", "POST", GEN, _j(seed=-1), JSON),
    ("seed 2**64", "POST", GEN, _j(seed=2**64), JSON),
    ("seed 1.5", "POST", GEN, _j(seed=1.5), JSON),
    ("seed string", "POST", GEN, _j(seed="0"), JSON),
    ("size 1e9 float", "POST", GEN, _j(size=1e9), JSON),
    ("size 100000", "POST", GEN, _j(size=100_000), JSON),
    ("size 0", "POST", GEN, _j(size=0), JSON),
    ("size not the model's", "POST", GEN, _j(size=16), JSON),
    ("class 10 of 10", "POST", GEN, _j(**{"class": 10}), JSON),
    ("class -1", "POST", GEN, _j(**{"class": -1}), JSON),
    ("class unknown name", "POST", GEN, _j(**{"class": "zebra"}), JSON),
    ("class list", "POST", GEN, _j(**{"class": [1, 2]}), JSON),
    ("class 1e6", "POST", GEN, _j(**{"class": 1e6}), JSON),
    ("sampler unknown", "POST", GEN, _j(sampler="nope"), JSON),
    ("sampler traversal", "POST", GEN, _j(sampler="../../etc/passwd"), JSON),
    ("sampler number", "POST", GEN, _j(sampler=3), JSON),
    ("schedule unknown", "POST", GEN, _j(schedule="nope"), JSON),
    ("model ../tiny", "POST", GEN, _j(model="../tiny"), JSON),
    ("model ../../etc/passwd", "POST", GEN, _j(model="../../etc/passwd"), JSON),
    ("model /etc/passwd", "POST", GEN, _j(model="/etc/passwd"), JSON),
    ("model tiny/../tiny", "POST", GEN, _j(model="tiny/../tiny"), JSON),
    ("model ..", "POST", GEN, _j(model=".."), JSON),
    ("model unknown", "POST", GEN, _j(model="nonexistent"), JSON),
    ("model empty", "POST", GEN, _j(model=""), JSON),
    ("model 1000 chars", "POST", GEN, _j(model="a" * 1000), JSON),
    ("model number", "POST", GEN, _j(model=123), JSON),
    ("model null", "POST", GEN, _j(model=None), JSON),
    ("model NUL byte", "POST", GEN, _j(model="tiny\x00"), JSON),
    # above the image routes' cap (the body cap plus two uploads in base64, about 11 MB)
    ("16 MB prompt", "POST", GEN, _j(prompt="x" * 16_000_000), JSON),
    ("invalid UTF-8", "POST", GEN, b'{"model": "tiny\xff\xfe"}', JSON),
    ("invalid JSON", "POST", GEN, b'{"model": ', JSON),
    ("JSON array", "POST", GEN, b"[1, 2]", JSON),
    ("JSON string", "POST", GEN, b'"hello"', JSON),
    ("JSON null", "POST", GEN, b"null", JSON),
    ("deeply nested JSON", "POST", GEN, b"[" * 30_000 + b"]" * 30_000, JSON),
    ("text/plain", "POST", GEN, _j(), {"Content-Type": "text/plain"}),
    (
        "form data",
        "POST",
        GEN,
        b"model=tiny",
        {"Content-Type": "application/x-www-form-urlencoded"},
    ),
    (
        "multipart",
        "POST",
        GEN,
        b"--x\r\n\r\n--x--",
        {"Content-Type": "multipart/form-data; boundary=x"},
    ),
    ("no content type", "POST", GEN, _j(), {}),
    ("bad Content-Length", "POST", GEN, _j(), {**JSON, "Content-Length": "abc"}),
    ("wait=maybe", "POST", GEN + "?wait=maybe", _j(), JSON),
    ("PUT generate", "PUT", GEN, _j(), JSON),
    ("unknown modality", "POST", "/api/generate/nope", _j(), JSON),
    ("unknown job", "GET", "/api/jobs/" + uuid.uuid4().hex, b"", {}),
    ("job id traversal", "GET", "/api/jobs/..%2f..%2fetc%2fpasswd", b"", {}),
    ("cancel unknown job", "POST", "/api/jobs/xyz/cancel", b"", {}),
    ("file traversal", "GET", "/api/files/..%2f..%2fetc%2fpasswd", b"", {}),
    ("file dot-dot", "GET", "/api/files/../../etc/passwd", b"", {}),
    ("file unknown uuid", "GET", f"/api/files/{uuid.uuid4().hex}.png", b"", {}),
    ("file bad extension", "GET", f"/api/files/{uuid.uuid4().hex}.py", b"", {}),
    ("static traversal", "GET", "/static/..%2fapp.py", b"", {}),
    ("static dot-dot", "GET", "/static/%2e%2e/%2e%2e/server/app.py", b"", {}),
]


def _check(status: int, body: bytes, name: str, secrets: list[str]) -> None:
    assert 400 <= status < 500, f"{name}: {status} {body[:200]!r}"
    text = body.decode("utf-8")
    assert "\n" not in text.strip(), f"{name}: not one line: {text[:200]!r}"
    error = json.loads(text)["error"]
    assert isinstance(error, str) and error and "\n" not in error, name
    assert "Traceback" not in text and 'File "' not in text, name
    for s in secrets:
        assert s not in text, f"{name}: leaks {s!r}: {text[:200]!r}"


def _raw(url: str, head: str, body_chunks=None) -> tuple[int, bytes]:
    """Send raw HTTP (for bodies httpx will not send); stop sending once the server answers."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(head.encode())
    for chunk in body_chunks or ():
        if select.select([sock], [], [], 0)[0]:
            break  # the server answered (and may close): stop sending
        try:
            sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            break
    data = b""
    deadline = time.monotonic() + 30
    while b"\r\n\r\n" not in data or len(data) < _length(data):
        assert time.monotonic() < deadline
        try:
            part = sock.recv(65536)
        except ConnectionResetError:
            break
        if not part:
            break
        data += part
    sock.close()
    head_part, _, body = data.partition(b"\r\n\r\n")
    return int(head_part.split(b" ")[1]), body


def _length(data: bytes) -> int:
    head, _, _ = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(head) + 4 + int(line.split(b":")[1])
    return len(data)


def test_malformed_requests_get_one_line_json_4xx_and_the_server_stays_up(tmp_path):
    models = models_folder(tmp_path)
    with running_server(settings(models)) as (url, app):
        secrets = [str(tmp_path), str(app.state.queue.outputs_dir), "/work/", "site-packages"]
        client = httpx.Client(base_url=url, timeout=30)
        answered = {}
        for name, method, path, body, headers in CASES:
            if "Content-Length" in headers:  # httpx would correct it: send it raw
                head = f"{method} {path} HTTP/1.1\r\nHost: {url[7:]}\r\nContent-Length: abc\r\n"
                status, text = _raw(url, head + "Content-Type: application/json\r\n\r\n")
            else:
                r = client.request(method, path, content=body, headers=headers)
                status, text = r.status_code, r.content
            _check(status, text, name, secrets)
            answered[name] = status
        host = f"Host: {url[7:]}\r\nContent-Type: application/json\r\n"
        # 100 MB declared: refused on the header, before any of the body is read
        status, text = _raw(
            url, f"POST {GEN} HTTP/1.1\r\n{host}Content-Length: {100 << 20}\r\n\r\n"
        )
        _check(status, text, "100 MB body", secrets)
        assert status == 413
        # 100 MB chunked (no length): refused as soon as the count passes the cap
        chunk = b"%x\r\n" % (1 << 20) + b"x" * (1 << 20) + b"\r\n"
        status, text = _raw(
            url,
            f"POST {GEN} HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n\r\n",
            (chunk for _ in range(100)),
        )
        _check(status, text, "100 MB chunked body", secrets)
        assert status == 413
        total = len(CASES) + 2
        assert answered["16 MB prompt"] == 413 and answered["text/plain"] == 415
        assert answered["model unknown"] == 404 and answered["model ../tiny"] == 422
        assert client.get("/health").status_code == 200
        # and it still works
        r = client.post(GEN + "?wait=true", json=OK)
        assert r.status_code == 200 and r.json()["status"] == "done"
        print(f"{total} malformed requests: all 4xx one-line JSON, none 5xx")
        assert total >= 60


@pytest.mark.parametrize("path", ["/api/models", "/api/jobs/" + "0" * 32])
def test_error_shape_for_auth_failures(tmp_path, path):
    from diffusionforge.server.settings import Limits, ServerSettings

    s = ServerSettings(models_dir=models_folder(tmp_path), token="x" * 20, limits=Limits())
    with running_server(s) as (url, _):
        r = httpx.get(url + path)
        _check(r.status_code, r.content, path, [str(tmp_path)])
