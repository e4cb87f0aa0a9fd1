"""What a server may do: bind address, token, caps and queue sizes, fixed at start-up."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from diffusionforge.limits import SERVER_MAX_N, SERVER_MAX_NFE, SERVER_MAX_UPLOAD


@dataclass(frozen=True)
class Limits:
    """Caps on one request and on the work the server holds at once.

    Requests beyond a cap get a 4xx naming the field and the cap; jobs beyond the queue get
    429 with Retry-After. Defaults suit a CPU box; raise them on a GPU server.
    """

    max_nfe: int = SERVER_MAX_NFE  # network evaluations per sample (diffusionforge/limits.py)
    max_n: int = SERVER_MAX_N  # samples per request (images, audio clips, texts)
    max_image_side: int = 512  # an image request's `size` (models draw at their trained size)
    max_prompt_chars: int = 1000
    max_text_length: int = 1024  # tokens of one generated text
    max_body_bytes: int = 64 * 1024  # request bodies; larger ones get 413 before being read
    # one uploaded image file (init_image, mask; base64 in the JSON): image routes' bodies may
    # be larger by two such files; pixels are bounded by limits.limit("image_pixels")
    max_upload_bytes: int = SERVER_MAX_UPLOAD
    workers: int = 1  # jobs running at once (each one torch call stack; re-entrant samplers)
    queue_size: int = 8  # jobs waiting beyond the running ones; more get 429
    job_timeout_s: float = 300.0  # running time of one job; then it is stopped
    keep_jobs: int = 64  # finished jobs (and their files) kept for status and download


@dataclass(frozen=True)
class ServerSettings:
    models_dir: Path | None = None  # None: the bundled models
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None  # required (Authorization: Bearer) when set
    outputs_dir: Path | None = None  # None: a temporary folder removed at shutdown
    threads: int = 1  # torch CPU threads (CPU results depend on it; recorded in metadata)
    limits: Limits = field(default_factory=Limits)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and 'localhost' are reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
