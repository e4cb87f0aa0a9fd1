"""uvicorn, configured so that even broken HTTP framing is answered in the app's error shape.

uvicorn answers a request it cannot parse (a Content-Length of "abc", a bad request line)
itself, before the app sees it, with a plain-text 400. The subclass below sends the same 400
as one-line JSON, so every 4xx a client can get from this server is {"error": "..."}.
"""

from __future__ import annotations

import json

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol


class JsonErrorH11Protocol(H11Protocol):
    def send_400_response(self, msg: str) -> None:
        body = json.dumps({"error": f"HTTP: {msg}"}, separators=(",", ":")).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        self.transport.write(self.conn.send(h11.Response(status_code=400, headers=headers)))
        self.transport.write(self.conn.send(h11.Data(data=body)))
        self.transport.write(self.conn.send(h11.EndOfMessage()))
        self.transport.close()


def uvicorn_config(app, **kwargs) -> uvicorn.Config:
    return uvicorn.Config(app, http=JsonErrorH11Protocol, **kwargs)
