"""The job queue: a bounded queue in front of a fixed number of worker threads.

A request becomes a `Job`; `JobQueue.submit` refuses it (QueueFull, answered 429 with
Retry-After) when `queue_size` jobs already wait. Workers run jobs one at a time each; the
samplers are pure functions (DESIGN rule 1), so jobs on several workers share the network
weights and nothing else. Progress and cancellation ride on the sampler `callback`: each step
counts one, and a cancel flag or the job's deadline turns the next callback into an exception
that unwinds the sampler (nothing half-written survives: outputs are kept only on success).
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from diffusionforge.errors import UserError
from diffusionforge.server.settings import Limits

log = logging.getLogger("diffusionforge.server")

STATUSES = ("queued", "running", "done", "failed", "cancelled", "timeout")
FINAL = ("done", "failed", "cancelled", "timeout")


class JobError(Exception):
    """A failure whose one-line message is safe to show a client (no paths, no traceback)."""


def safe_reason(e: BaseException, replace: dict[str, str] | None = None) -> str:
    """One line about `e` fit for a client: no traceback, and no server path (each key of
    `replace` becomes its value, other absolute paths their base name)."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    for old, new in (replace or {}).items():
        text = text.replace(old, new)
    text = re.sub(r"(/[^\s'\":,()]+)+/", "", text).removeprefix("error: ")
    if not isinstance(e, UserError | ValueError) or not text:
        text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return text[:300]


class Stopped(Exception):
    """Raised inside a running job by its callback: cancelled, timed out or shutting down."""

    def __init__(self, status: str):
        super().__init__(status)
        self.status = status


class QueueFull(Exception):
    def __init__(self, retry_after: int, unavailable: bool = False):
        super().__init__("queue full")
        self.retry_after = retry_after
        self.unavailable = unavailable  # shutting down: 503 rather than 429


@dataclass
class Output:
    name: str  # server-made: a UUID and an extension, never a client's string
    media_type: str
    role: str  # "grid", "image", "audio" or "text"
    metadata: dict


@dataclass(eq=False)
class Job:
    handler: str
    model: str
    params: dict  # the validated request, echoed in the status
    run: Callable[[JobContext], None]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: str = "queued"
    done: int = 0  # sampler steps finished
    total: int = 0  # sampler steps planned (0 until the job starts)
    error: str | None = None
    outputs: list[Output] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    cancel_flag: threading.Event = field(default_factory=threading.Event)
    finished_flag: threading.Event = field(default_factory=threading.Event)

    def public(self, position: int | None = None) -> dict:
        out = {
            "id": self.id,
            "status": self.status,
            "model": self.model,
            "kind": self.handler,
            "progress": {"done": self.done, "total": self.total},
            "params": self.params,
            "error": self.error,
            "outputs": [
                {"url": f"/api/files/{o.name}", "name": o.name, "media_type": o.media_type}
                | {"role": o.role, "metadata": o.metadata}
                for o in (self.outputs if self.status == "done" else ())  # all or none
            ],
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
        }
        if position is not None:
            out["queue_position"] = position
        return out


class JobContext:
    """What a handler sees of its job: progress, the stop check and a place for outputs."""

    def __init__(self, job: Job, outputs_dir: Path, deadline: float, stopping: threading.Event):
        self._job, self._dir, self._deadline, self._stopping = job, outputs_dir, deadline, stopping

    def plan(self, total_steps: int) -> None:
        self._job.total = int(total_steps)

    def check(self) -> None:
        if self._job.cancel_flag.is_set() or self._stopping.is_set():
            raise Stopped("cancelled")
        if time.monotonic() > self._deadline:
            raise Stopped("timeout")

    def step(self, _info: object = None) -> None:
        """The sampler callback: one step done; stop here if asked to."""
        if self._job.total == 0 or self._job.done < self._job.total:
            self._job.done += 1
        self.check()

    def save(
        self, write: Callable[[Path], object], ext: str, media_type: str, role: str, meta: dict
    ) -> Output:
        """Store one output under a fresh UUID name; `write(path)` writes the file."""
        name = f"{uuid.uuid4().hex}.{ext}"
        tmp = self._dir / f".tmp-{name}"
        write(tmp)
        os.replace(tmp, self._dir / name)
        out = Output(name, media_type, role, meta)
        self._job.outputs.append(out)
        return out


class JobQueue:
    def __init__(self, limits: Limits, outputs_dir: Path):
        self.limits = limits
        self.outputs_dir = outputs_dir
        self._cond = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._jobs: OrderedDict[str, Job] = OrderedDict()  # every known job, oldest first
        self._files: dict[str, Output] = {}
        self._running = 0
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._avg_s = 2.0  # running mean of job durations, for Retry-After
        self.peak_waiting = 0  # the most jobs ever waiting / running at once (tests read them)
        self.peak_running = 0

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        self.outputs_dir.mkdir(parents=True, exist_ok=True)
        for k in range(self.limits.workers):
            t = threading.Thread(target=self._work, name=f"diffusionforge-worker-{k}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        """Refuse new jobs, stop running ones at their next step, cancel the waiting ones."""
        with self._cond:
            self._stopping.set()
            while self._waiting:
                self._finish(self._waiting.popleft(), "cancelled", "the server is shutting down")
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)

    # --- clients ------------------------------------------------------------------------

    def submit(self, job: Job) -> int:
        """Queue a job; its position among the waiting (0: next). QueueFull when full."""
        with self._cond:
            if self._stopping.is_set():
                raise QueueFull(self._retry_after(), unavailable=True)
            if len(self._waiting) >= self.limits.queue_size:
                raise QueueFull(self._retry_after())
            self._waiting.append(job)
            self._jobs[job.id] = job
            self.peak_waiting = max(self.peak_waiting, len(self._waiting))
            self._cond.notify()
            return len(self._waiting) - 1

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def position(self, job: Job) -> int | None:
        with self._cond:
            return self._waiting.index(job) if job in self._waiting else None

    def cancel(self, job: Job) -> None:
        with self._cond:
            job.cancel_flag.set()
            if job in self._waiting:
                self._waiting.remove(job)
                self._finish(job, "cancelled", None)

    def file(self, name: str) -> tuple[Path, Output] | None:
        out = self._files.get(name)
        return (self.outputs_dir / name, out) if out else None

    def counts(self) -> dict:
        with self._cond:
            return {"waiting": len(self._waiting), "running": self._running}

    def retry_after(self) -> int:
        with self._cond:
            return self._retry_after()

    def _retry_after(self) -> int:
        # the time for the jobs ahead to drain, at the recent mean job duration
        ahead = len(self._waiting) + self._running
        return int(min(3600, max(1, math.ceil(ahead * self._avg_s / self.limits.workers))))

    # --- workers ------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._stopping.is_set():
                    self._cond.wait()
                if self._stopping.is_set():
                    return
                job = self._waiting.popleft()
                self._running += 1
                self.peak_running = max(self.peak_running, self._running)
                job.status, job.started = "running", time.time()
            t0 = time.monotonic()
            ctx = JobContext(job, self.outputs_dir, t0 + self.limits.job_timeout_s, self._stopping)
            status, error = "done", None
            try:
                ctx.check()
                job.run(ctx)
            except Stopped as e:
                status = e.status
                error = (
                    f"stopped after {self.limits.job_timeout_s:g} s"
                    if status == "timeout"
                    else None
                )
            except JobError as e:
                status, error = "failed", str(e).splitlines()[0]
            except Exception as e:  # e.g. a forged model that loads but cannot run: one line
                # in the log and in the job (the traceback only at DEBUG level)
                status, error = "failed", f"generation failed ({safe_reason(e)})"
                log.error("job %s (model %s) failed: %s", job.id, job.model, error)
                log.debug("job %s traceback", job.id, exc_info=e)
            with self._cond:
                self._running -= 1
                self._avg_s = 0.8 * self._avg_s + 0.2 * (time.monotonic() - t0)
                self._finish(job, status, error)

    def _finish(self, job: Job, status: str, error: str | None) -> None:
        """Record a final state (lock held); outputs of a job that did not finish are deleted."""
        if status == "done":
            job.done = job.total = max(job.total, job.done)
            for out in job.outputs:
                self._files[out.name] = out
        else:
            self._delete(job)
        job.status, job.error, job.finished = status, error, time.time()
        job.finished_flag.set()
        finished = [j for j in self._jobs.values() if j.status in FINAL]
        for old in finished[: max(0, len(finished) - self.limits.keep_jobs)]:
            self._delete(old)
            del self._jobs[old.id]

    def _delete(self, job: Job) -> None:
        for out in job.outputs:
            self._files.pop(out.name, None)
            (self.outputs_dir / out.name).unlink(missing_ok=True)
        if job.status != "done":
            job.outputs = []
