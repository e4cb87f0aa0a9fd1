"""The FastAPI app: routes, error shapes and the life cycle of the job queue.

Routes (OpenAPI schema at /openapi.json):
  GET  /                          the web page (static/index.html; plain HTML/CSS/JS)
  GET  /health                    liveness and queue counts
  GET  /api/models                the models (by id), their classes/defaults, and the limits
  POST /api/generate/{kind}       one route per handler; 202 + job, or ?wait=true: 200 + job
  GET  /api/jobs/{id}             status, progress (sampler steps done / planned), outputs
  GET  /api/jobs/{id}/events      the same as server-sent events until the job ends
  POST /api/jobs/{id}/cancel      (or DELETE /api/jobs/{id})
  GET  /api/files/{uuid}.{ext}    an output (PNG/WAV/text, with regenerating metadata)

A client that waits (?wait=true or the event stream) and disconnects cancels its job. Every
error is {"error": "<one line>"}: no traceback, no server path (a bug is logged, answered 500).
"""

# no `from __future__ import annotations`: FastAPI reads the body type of the per-handler
# routes from the annotations of functions made in a loop.

import asyncio
import json
import logging
import re
import shutil
import tempfile
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from diffusionforge import __version__
from diffusionforge.server.base import Handler, RequestError
from diffusionforge.server.guard import Guard, error
from diffusionforge.server.handlers import HANDLERS
from diffusionforge.server.jobs import FINAL, Job, JobError, JobQueue, QueueFull, safe_reason
from diffusionforge.server.registry import ModelRegistry, scan
from diffusionforge.server.settings import ServerSettings, is_loopback
from diffusionforge.server.uploads import base64_length

log = logging.getLogger("diffusionforge.server")
STATIC = Path(__file__).parent / "static"
JOB_ID = re.compile(r"[0-9a-f]{32}")
FILE_NAME = re.compile(r"[0-9a-f]{32}\.(png|wav|txt|json)")


def create_app(settings: ServerSettings, registry: ModelRegistry | None = None) -> FastAPI:
    """A server for `settings`; `registry` defaults to scanning settings.models_dir."""
    if registry is None:
        registry, skipped = scan(settings.models_dir)
        for line in skipped:
            log.warning("skipped model %s", line)
    temp_outputs = settings.outputs_dir is None
    outputs = settings.outputs_dir or Path(tempfile.mkdtemp(prefix="diffusionforge-serve-"))
    queue = JobQueue(settings.limits, Path(outputs))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        import torch

        torch.set_num_threads(settings.threads)  # CPU results depend on it (in the metadata)
        queue.start()
        try:
            yield
        finally:
            await asyncio.to_thread(queue.stop)
            if temp_outputs:
                shutil.rmtree(outputs, ignore_errors=True)

    app = FastAPI(
        title="diffusionforge",
        version=__version__,
        summary="Generate images, text and audio from diffusionforge checkpoints.",
        docs_url=None,  # the interactive docs load scripts from a CDN; the schema is enough
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.queue, app.state.registry, app.state.settings = queue, registry, settings
    _error_handlers(app)
    _routes(app, queue, registry, settings)
    for handler in dict.fromkeys(HANDLERS.values()):  # each handler once, in dict order
        _generate_route(app, handler, queue, registry, settings)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(
        Guard,
        token=settings.token,
        loopback=is_loopback(settings.host),
        max_body=settings.limits.max_body_bytes,
        bound_host=settings.host,
        # routes that take an init image and a mask may carry two image files in base64
        upload_body=settings.limits.max_body_bytes
        + 2 * base64_length(settings.limits.max_upload_bytes),
        upload_paths=frozenset(
            f"/api/generate/{h.name}"
            for h in HANDLERS.values()
            if "init_image" in h.Params.model_fields
        ),
    )
    return app


# --- errors: always {"error": "<one line>"} -------------------------------------------------


def _validation_line(exc: RequestValidationError) -> tuple[int, str]:
    errors = exc.errors()
    if not errors:
        return 422, "invalid request"
    first = errors[0]
    # a union field's errors carry the member type as the last part: "class.int"
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if len(loc) > 1 and loc[-1] in ("int", "str", "float", "bool"):
        loc, errors = loc[:-1], errors[:1]
    where = ".".join(loc) or "body"
    kind = first.get("type", "")
    if kind == "string_pattern_mismatch":
        return 422, f"{where}: expected an id of letters, digits, '-' and '_' (see /api/models)"
    if kind == "json_invalid":
        return 400, "body: not valid JSON"
    if kind == "missing" and where == "body":
        return 422, "body: a JSON object is required"
    if kind in ("model_attributes_type", "dict_type") and where == "body":
        return 422, "body: expected a JSON object"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return 422, f"{where}: {first.get('msg', 'invalid')}{more}"


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(*_validation_line(exc))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 400 and "parsing the body" in detail:
            detail = "body: not valid JSON (or not UTF-8)"
        return error(exc.status_code, detail, getattr(exc, "headers", None))

    @app.exception_handler(RequestError)
    async def on_request_error(request: Request, exc: RequestError) -> JSONResponse:
        return error(exc.status, str(exc))

    @app.exception_handler(JobError)
    async def on_job_error(request: Request, exc: JobError) -> JSONResponse:
        return error(503, str(exc), {"Retry-After": "60"})  # e.g. a model that failed to load

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error(500, "internal error (see the server log)")


# --- routes ---------------------------------------------------------------------------------


def _routes(app: FastAPI, queue: JobQueue, registry: ModelRegistry, settings: ServerSettings):
    def job_or_404(job_id: str) -> Job:
        job = queue.get(job_id) if JOB_ID.fullmatch(job_id) else None
        if job is None:
            raise RequestError("job", "no such job (finished jobs are kept for a while)", 404)
        return job

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/health", summary="liveness and queue counts")
    async def health() -> dict:
        counts = queue.counts()
        auth = settings.token is not None
        return {"status": "ok", "models": len(registry), "auth": auth} | counts

    @app.get("/api/models", summary="the models this server offers, and its limits")
    async def models() -> dict:
        return {"models": registry.public(), "limits": asdict(settings.limits)}

    @app.get("/api/jobs/{job_id}", summary="job status, progress and outputs")
    async def job_status(job_id: str) -> dict:
        job = job_or_404(job_id)
        return job.public(queue.position(job))

    @app.post("/api/jobs/{job_id}/cancel", summary="cancel a queued or running job")
    async def cancel(job_id: str) -> dict:
        job = job_or_404(job_id)
        queue.cancel(job)
        return job.public()

    @app.delete("/api/jobs/{job_id}", summary="cancel a queued or running job")
    async def delete(job_id: str) -> dict:
        return await cancel(job_id)

    @app.get(
        "/api/jobs/{job_id}/events",
        summary="status as server-sent events until the job ends; disconnecting cancels it",
        response_class=Response,
    )
    async def events(job_id: str) -> Response:
        return JobEvents(job_or_404(job_id), queue)

    @app.get("/api/files/{name}", summary="an output file, by its server-made name")
    async def files(name: str) -> FileResponse:
        found = queue.file(name) if FILE_NAME.fullmatch(name) else None
        if found is None or not found[0].is_file():
            raise RequestError("file", "no such file", 404)
        path, out = found
        return FileResponse(path, media_type=out.media_type, filename=name)


def _generate_route(
    app: FastAPI, handler: Handler, queue: JobQueue, registry: ModelRegistry, settings
) -> None:
    Params = handler.Params

    async def generate(request: Request, params: Params, wait: bool = False) -> JSONResponse:
        bad = _not_unicode(params.model_dump(by_alias=True))
        if bad is not None:  # JSON's "\ud800" escape: a str that no UTF-8 response can hold
            raise RequestError(bad, "not valid Unicode text (a lone surrogate such as \\ud800)")
        entry = registry.get(params.model)
        if entry is None:
            raise RequestError("model", f"no model {params.model!r} (see GET /api/models)", 404)
        if entry.handler is not handler:
            raise RequestError(
                "model",
                f"{params.model!r} is a {entry.handler.name} model; "
                f"use /api/generate/{entry.handler.name}",
            )
        # in a thread: preparing may load the model (a text prompt needs its tokenizer)
        try:
            echo, run = await run_in_threadpool(handler.prepare, params, entry, settings.limits)
        except RequestError:
            raise
        except Exception as e:  # a model that cannot be loaded or run: the job fails, one line
            echo, run = _failing(e, entry.id)
        job = Job(handler.name, entry.id, echo, run)
        try:
            position = queue.submit(job)
        except QueueFull as e:
            status, why = (503, "shutting down") if e.unavailable else (429, "the queue is full")
            return error(status, f"{why}; retry later", {"Retry-After": str(e.retry_after)})
        if not wait:
            return JSONResponse(
                job.public(position), status_code=202, headers={"Location": f"/api/jobs/{job.id}"}
            )
        while not job.finished_flag.is_set():
            if await request.is_disconnected():
                queue.cancel(job)
                break
            await asyncio.sleep(0.02)
        return JSONResponse(job.public(), status_code=200)

    generate.__name__ = f"generate_{handler.name}"
    app.post(
        f"/api/generate/{handler.name}",
        summary=f"generate from a {handler.summary}",
        description=(Params.__doc__ or "")
        + " 202 with the job (poll /api/jobs/{id}); ?wait=true answers when it ends.",
        status_code=202,
        responses={429: {"description": "queue full (Retry-After)"}, 422: {"description": "bad"}},
    )(generate)


def _failing(e: Exception, model_id: str) -> tuple[dict, Callable]:
    """(echo, run) of a job that fails at once with why `prepare` could not build it: a broken
    model is the server's data, not the client's request, and is answered the way a job that
    meets it later is (status "failed", one line), never 5xx."""
    if isinstance(e, JobError):  # a model that failed to load: logged once, where it failed
        why = str(e)
    else:
        why = f"cannot prepare this request ({safe_reason(e)})"
        log.warning("model %s: %s", model_id, why)
        log.debug("model %s: traceback", model_id, exc_info=e)

    def run(ctx) -> None:
        raise JobError(why)

    return {}, run


def _not_unicode(value: object, where: str = "") -> str | None:
    """The field path of the first string (or key) that is not encodable as UTF-8, else None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where or "body"
    elif isinstance(value, dict):
        for k, v in value.items():
            path = f"{where}.{k}" if where else str(k)
            found = _not_unicode(k, where or "body") or _not_unicode(v, path)
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for k, v in enumerate(value):
            found = _not_unicode(v, f"{where}[{k}]")
            if found is not None:
                return found
    return None


class JobEvents(Response):
    """Server-sent events with the job's status whenever it changes; the stream ends with the
    job. If the client goes away first, the job is cancelled."""

    media_type = "text/event-stream"

    def __init__(self, job: Job, queue: JobQueue):
        super().__init__(headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        # a stream has no length: drop the Content-Length: 0 that Response sets for no body
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.job, self.queue = job, queue

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        watcher = asyncio.ensure_future(disconnected())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            last = None
            while True:
                state = self.job.public(self.queue.position(self.job))
                key = (state["status"], state["progress"]["done"], state.get("queue_position"))
                if key != last:
                    chunk = f"data: {json.dumps(state, separators=(',', ':'))}\n\n".encode()
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    last = key
                if state["status"] in FINAL:  # the state just sent, so the last event is final
                    break
                done, _ = await asyncio.wait({watcher}, timeout=0.1)
                if done:
                    self.queue.cancel(self.job)
                    return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client went away mid-write
            self.queue.cancel(self.job)
        finally:
            watcher.cancel()
