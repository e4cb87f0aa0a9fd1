"""What the server adds to a generation: HTTP, queue, PNG writing, vs the pipeline call alone.

Serves the bundled digits model in this process (uvicorn in a thread, 1 worker), then times, side
by side and interleaved so that machine load hits both alike: (a) `POST /api/generate/image
?wait=true` for one image, (b) the same image drawn directly with pipelines.images.draw. Also the
process's RSS over many sequential jobs. Prints a markdown table.

    python benchmarks/server_overhead.py --jobs 50 --nfe 16
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import torch
import uvicorn

from diffusionforge.core.plan import Plan
from diffusionforge.pipelines.images import ImageRequest, draw
from diffusionforge.pipelines.pipeline import load_pipeline
from diffusionforge.server.app import create_app
from diffusionforge.server.protocol import uvicorn_config
from diffusionforge.server.settings import ServerSettings


def serve(settings: ServerSettings):
    app = create_app(settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn_config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=50)
    p.add_argument("--nfe", type=int, default=16)
    p.add_argument("--memory-jobs", type=int, default=300)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    server, thread, url = serve(ServerSettings())
    client = httpx.Client(base_url=url, timeout=120)
    from diffusionforge.assets import bundled_path

    pipe = load_pipeline(bundled_path("digits"))
    plan = Plan.resolve(args.nfe)
    sampler = plan.sampler
    body = {"model": "digits", "class": 3, "n": 1, "nfe": args.nfe, "guidance": 2.0}
    via_http, direct = [], []
    for k in range(args.jobs + 3):  # 3 warm-up rounds (model load, first calls)
        t = time.perf_counter()
        r = client.post("/api/generate/image?wait=true", json={**body, "seed": k})
        assert r.json()["status"] == "done", r.text
        a = time.perf_counter() - t
        t = time.perf_counter()
        draw(pipe, ImageRequest(k, [3], 2.0, plan), 1)
        b = time.perf_counter() - t
        if k >= 3:
            via_http.append(a)
            direct.append(b)
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    small = {"model": "digits", "n": 1, "nfe": 2}
    for k in range(args.memory_jobs):
        client.post("/api/generate/image?wait=true", json={**small, "seed": k})
    growth = (proc.memory_info().rss - rss0) / 2**20
    server.should_exit = True
    thread.join(10)
    med_h, med_d = statistics.median(via_http), statistics.median(direct)
    print(f"digits (bundled), 1 image, NFE {args.nfe} ({sampler}), {args.jobs} jobs, 1 thread\n")
    print("| path | median s/job | p90 s/job |")
    print("|---|---|---|")
    for name, xs in (("HTTP ?wait=true (queue, PNGs)", via_http), ("pipeline call alone", direct)):
        p90 = statistics.quantiles(xs, n=10)[-1]
        print(f"| {name} | {statistics.median(xs):.4f} | {p90:.4f} |")
    print(f"\nserver overhead per job: {med_h - med_d:+.4f} s (median difference)")
    print(f"RSS growth over {args.memory_jobs} sequential jobs: {growth:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
