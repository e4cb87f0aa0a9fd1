"""`diffusionforge serve`: the HTTP API and web page (diffusionforge/server/).

Checks every flag before anything starts, and binds the port itself so that "address in use"
is one line too. Binding anywhere but loopback needs a token (--token, or the
DIFFUSIONFORGE_TOKEN environment variable, which other users cannot read in `ps`).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from pathlib import Path

from diffusionforge.cli.common import add_device_flags
from diffusionforge.errors import UserError


def add_commands(sub) -> None:
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.server.settings import Limits

    d = Limits()
    s = sub.add_parser("serve", help="HTTP API and web page for trained models")
    s.add_argument(
        "--models",
        help="folder of models: each sub-folder (a checkpoint or run folder) is served under "
        "its name (default: the bundled models)",
    )
    s.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument(
        "--token",
        help="require 'Authorization: Bearer TOKEN' on the API (needed off loopback; or set "
        "DIFFUSIONFORGE_TOKEN)",
    )
    s.add_argument("--workers", type=int, default=d.workers, help="jobs running at once")
    s.add_argument("--queue-size", type=int, default=d.queue_size, help="jobs waiting at most")
    s.add_argument(
        "--job-timeout", type=float, default=d.job_timeout_s, help="seconds one job may run"
    )
    s.add_argument("--max-nfe", type=int, default=d.max_nfe, help="network evaluations cap")
    s.add_argument("--max-n", type=int, default=d.max_n, help="samples per request cap")
    s.add_argument(
        "--max-body", type=int, default=d.max_body_bytes, help="request body cap in bytes"
    )
    s.add_argument(
        "--max-upload",
        type=int,
        default=d.max_upload_bytes,
        help="bytes of one image file a request may carry (init_image, mask)",
    )
    s.add_argument("--outputs", help="keep outputs in this folder (default: a temporary one)")
    s.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (results depend on it)"
    )
    add_device_flags(s, "float32 (the server computes in float32 so far)")
    s.set_defaults(func=_cmd_serve)


def _settings(args: argparse.Namespace):
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.server.settings import Limits, ServerSettings, is_loopback

    for flag, value in (
        ("--workers", args.workers),
        ("--queue-size", args.queue_size),
        ("--max-nfe", args.max_nfe),
        ("--max-n", args.max_n),
        ("--max-body", args.max_body),
        ("--max-upload", args.max_upload),
        ("--threads", args.threads),
    ):
        if value <= 0:
            raise UserError(f"{flag}: expected a positive number, got {value}")
    if not 0 < args.port < 65536:
        raise UserError(f"--port: expected 1-65535, got {args.port}")
    if not args.job_timeout > 0:
        raise UserError(
            f"--job-timeout: expected a positive number of seconds, got {args.job_timeout}"
        )
    token = args.token or os.environ.get("DIFFUSIONFORGE_TOKEN") or None
    if token is not None and len(token) < 16:
        raise UserError("--token: use at least 16 characters (e.g. `openssl rand -hex 16`)")
    if not is_loopback(args.host) and token is None:
        raise UserError(
            f"--host {args.host}: binding beyond this machine needs --token "
            "(or DIFFUSIONFORGE_TOKEN); without one, bind 127.0.0.1"
        )
    outputs = Path(args.outputs) if args.outputs else None
    if outputs is not None:
        try:
            outputs.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"--outputs {outputs}: cannot create ({e.strerror})") from None
        if not os.access(outputs, os.W_OK):
            raise UserError(f"--outputs {outputs}: not writable")
    limits = Limits(
        max_nfe=args.max_nfe,
        max_n=args.max_n,
        max_body_bytes=args.max_body,
        max_upload_bytes=args.max_upload,
        workers=args.workers,
        queue_size=args.queue_size,
        job_timeout_s=args.job_timeout,
    )
    return ServerSettings(
        models_dir=Path(args.models) if args.models else None,
        host=args.host,
        port=args.port,
        token=token,
        outputs_dir=outputs,
        threads=args.threads,
        limits=limits,
    )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise UserError(f"--host {host} --port {port}: cannot listen ({e.strerror})") from None
    return sock


def _cmd_serve(args: argparse.Namespace) -> int:
    # deferred: loaded only when this command runs, so `--help` stays fast
    import uvicorn

    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.cli.common import resolve_device

    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.server.app import create_app
    from diffusionforge.server.protocol import uvicorn_config
    from diffusionforge.server.registry import scan

    resolve_device(args, cpu_only="the server")  # its workers draw on the cpu (auto: cpu)
    settings = _settings(args)
    registry, skipped = scan(settings.models_dir)
    for line in skipped:
        print(f"note: skipped {line}", file=sys.stderr)
    if len(registry) == 0:
        where = args.models or "the bundled models"
        raise UserError(f"--models {where}: no servable model found")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = create_app(settings, registry)
    sock = _bind(settings.host, settings.port)
    ids = ", ".join(m["id"] for m in registry.public())
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    print(f"serving {ids} on http://{shown}:{settings.port}/ (Ctrl-C stops)", file=sys.stderr)
    config = uvicorn_config(app, log_level="info", timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
    return 0
