"""The ASGI layer in front of every route: who may ask, and how much they may send.

- Host: on a loopback bind only loopback host names (and the bound address, with or without
  its port) are accepted, so a foreign web page cannot reach this server through DNS rebinding.
- Origin: a request that a browser marks as coming from another origin is refused (403) and no
  CORS header is ever sent, so foreign pages can neither read nor trigger anything.
- Token: with one set, every /api/ request needs `Authorization: Bearer <token>`.
- Body: more than `max_body` bytes is 413 before the body is read (by Content-Length) or as
  soon as the count passes it (chunked); POSTs to /api/ must be application/json (else 415).
  Routes that take images (`upload_paths`) allow `upload_body` bytes instead.
- Every response gets nosniff / frame / CSP headers; errors are one-line JSON.
"""

from __future__ import annotations

import hmac

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOOPBACK_NAMES = {"127.0.0.1", "localhost", "[::1]", "::1"}
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
        b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
]


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    """The one shape of every error response: {"error": "<one line>"}."""
    line = " ".join(str(message).split())[:500]
    # a lone surrogate from a client's JSON ("\ud800") must not make the error itself fail
    line = line.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse({"error": line}, status_code=status, headers=headers)


def _host_name(host: str) -> str:
    if host.startswith("["):  # [::1]:8000
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_names(bound: str) -> set[str]:
    """The Host names a loopback-bound server answers to: the usual loopback names and the
    address it is bound to (``--host 127.0.0.2`` is reached as ``http://127.0.0.2:PORT``)."""
    bound = bound.strip()
    if ":" in bound.strip("[]"):  # IPv6: Host headers carry it in brackets
        bound = f"[{bound.strip('[]')}]"
    return LOOPBACK_NAMES | {bound.lower()}


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        loopback: bool,
        max_body: int,
        bound_host: str = "127.0.0.1",
        upload_body: int = 0,
        upload_paths: frozenset[str] = frozenset(),
    ):
        self.app, self.token, self.loopback, self.max_body = app, token, loopback, max_body
        self.names = host_names(bound_host)
        self.upload_body, self.upload_paths = max(upload_body, max_body), upload_paths

    def _cap(self, scope: Scope) -> int:
        return self.upload_body if scope["path"] in self.upload_paths else self.max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _secure(send, scope["path"])
        headers = {}
        for k, v in scope["headers"]:
            headers.setdefault(k.decode("latin-1").lower(), v.decode("latin-1"))
        refusal = self._refusal(scope, headers)
        if refusal is None:
            receive, refusal = await self._read_body(scope, headers, receive)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope, headers: dict) -> JSONResponse | None:
        host = headers.get("host", "")
        if self.loopback and _host_name(host).lower() not in self.names:
            shown = " / ".join(sorted(self.names - {"::1"}))
            return error(421, f"Host: this server answers to {shown} only")
        origin = headers.get("origin")
        if origin is not None and origin not in (f"http://{host}", f"https://{host}"):
            return error(403, "Origin: cross-origin requests are not allowed")
        path, method = scope["path"], scope["method"]
        if self.token is not None and path.startswith("/api/"):
            given = headers.get("authorization", "")
            expected = f"Bearer {self.token}"
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return error(
                    401,
                    "Authorization: a valid 'Bearer <token>' header is required",
                    {"WWW-Authenticate": "Bearer"},
                )
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return error(400, "Content-Length: expected a whole number of bytes")
            if int(length) > self._cap(scope):
                return error(413, f"body: at most {self._cap(scope)} bytes")
        if method == "POST" and path.startswith("/api/generate/"):
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                return error(415, "Content-Type: expected application/json")
        return None

    async def _read_body(
        self, scope: Scope, headers: dict, receive: Receive
    ) -> tuple[Receive, JSONResponse | None]:
        """Read the whole body (at most max_body bytes), then replay it to the app; later
        receive() calls go to the server, so the app still sees a client's disconnect."""
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return receive, None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return receive, error(400, "body: the client went away")
            body = message.get("body", b"")
            size += len(body)
            if size > self._cap(scope):
                return receive, error(413, f"body: at most {self._cap(scope)} bytes")
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        return replay, None


def _secure(send: Send, path: str) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", [])) + SECURITY_HEADERS
            if path.startswith("/api/") or path == "/":
                headers.append((b"cache-control", b"no-store"))
            message = {**message, "headers": headers}
        await send(message)

    return wrapped
