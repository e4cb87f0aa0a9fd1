"""Load: 20 simultaneous requests against a queue of 4 (never more than the caps at once, the
rest refused with Retry-After, every accepted job completes), and memory over 200 jobs."""

from __future__ import annotations

import gc
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest
from serverkit import models_folder, running_server, settings

JOB = {"model": "tiny", "n": 2, "nfe": 40, "sampler": "euler"}


def test_twenty_simultaneous_requests_against_a_queue_of_four(tmp_path):
    with running_server(settings(models_folder(tmp_path), workers=1, queue_size=4)) as (url, app):
        client = httpx.Client(base_url=url, timeout=60)
        seen, stop = [], threading.Event()

        def watch():  # the caps as a client sees them, all through the burst
            while not stop.is_set():
                h = client.get("/health").json()
                seen.append((h["waiting"], h["running"]))

        watcher = threading.Thread(target=watch)
        watcher.start()
        start = threading.Barrier(20)

        def post(_):
            with httpx.Client(base_url=url, timeout=60) as c:
                start.wait()
                return c.post("/api/generate/image", json=JOB)

        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(post, range(20)))
        accepted = [r.json()["id"] for r in answers if r.status_code == 202]
        refused = [r for r in answers if r.status_code != 202]
        for r in refused:
            assert r.status_code == 429, r.text
            assert int(r.headers["retry-after"]) >= 1
            assert r.json()["error"].startswith("the queue is full")
        assert 4 <= len(accepted) <= 5 and len(accepted) + len(refused) == 20
        deadline = time.monotonic() + 60
        for job_id in accepted:
            while (job := client.get(f"/api/jobs/{job_id}").json())["status"] != "done":
                assert job["status"] in ("queued", "running") and time.monotonic() < deadline
                time.sleep(0.02)
            assert len(job["outputs"]) == 3
        stop.set()
        watcher.join()
        queue = app.state.queue
        assert queue.peak_waiting <= 4 and queue.peak_running <= 1
        assert max(w for w, _ in seen) <= 4 and max(r for _, r in seen) <= 1
        # drained: a new request is accepted again
        assert client.post("/api/generate/image", json=JOB).status_code == 202


@pytest.mark.slow
def test_memory_stays_flat_over_200_sequential_jobs(tmp_path):
    proc = psutil.Process()
    small = {"model": "tiny", "n": 1, "nfe": 2}
    with running_server(settings(models_folder(tmp_path), keep_jobs=16)) as (url, app):
        client = httpx.Client(base_url=url, timeout=60)

        def run(k):
            r = client.post("/api/generate/image?wait=true", json={**small, "seed": k})
            assert r.status_code == 200 and r.json()["status"] == "done"
            for out in r.json()["outputs"] if k % 10 == 0 else ():  # downloads, now and then
                assert client.get(out["url"]).status_code == 200

        for k in range(20):  # warm-up: model load, allocator pools, first-call caches
            run(k)
        gc.collect()
        before = proc.memory_info().rss
        for k in range(200):
            run(1000 + k)
        gc.collect()
        growth = (proc.memory_info().rss - before) / 2**20
        files = list(app.state.queue.outputs_dir.iterdir())
        print(f"RSS growth over 200 jobs: {growth:.1f} MB; {len(files)} output files kept")
        assert growth < 50
        assert len(files) <= 16 * 2  # old jobs' files are deleted with them (grid + 1 image)
