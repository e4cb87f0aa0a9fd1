"""What every modality handler provides, and the models a server offers.

A handler turns one validated request into a job for one kind of checkpoint: `Params` is its
request body (a pydantic model: the OpenAPI schema and the first validation), `prepare` checks
what depends on the model and the limits, and returns the function a worker runs. Handlers
never see a file path from a client: models are named by ids the server made at start-up.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import AliasChoices, BaseModel

from diffusionforge.server.jobs import JobContext, JobError, safe_reason
from diffusionforge.server.settings import Limits

log = logging.getLogger("diffusionforge.server")

# `nfe` (network evaluations), also accepted as `steps` (what diffusers/A1111 clients send);
# responses and docs say `nfe`.
NFE_ALIAS = AliasChoices("nfe", "steps")

# Model ids: a folder name of the models folder, letters, digits, '-' and '_' only: no dots,
# no slashes, so an id can never name anything outside that folder.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
ID_RE = re.compile(ID_PATTERN)

Run = Callable[[JobContext], None]


class RequestError(Exception):
    """A request that is well-formed but not possible for this model or these limits (422)."""

    def __init__(self, field_name: str, message: str, status: int = 422):
        super().__init__(f"{field_name}: {message}")
        self.status = status


@dataclass(eq=False)
class ModelEntry:
    id: str
    data_kind: str  # the checkpoint's data.kind, the key of handlers.HANDLERS
    handler: Handler
    path: Path  # server-side only; never in a response
    config: dict  # the checkpoint's config.json
    _loaded: object = None
    _failed: str | None = None  # why loading failed: said once in the log, then per job
    _public: dict | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def load(self) -> object:
        """The handler's loaded model, built once (in a worker thread) and shared after. A
        model that cannot be built (forged or damaged files) fails every job that needs it
        with one line; the log gets one line too (no traceback: it is bad input, not a bug)."""
        with self._lock:
            if self._failed is None and self._loaded is None:
                try:
                    self._loaded = self.handler.load(self.path)
                except Exception as e:
                    self._failed = self._safe_reason(e)
                    log.warning("model %s (%s) could not be loaded: %s", self.id, self.path,
                                self._failed)  # fmt: skip
            if self._failed is not None:
                raise JobError(f"model {self.id!r} could not be loaded ({self._failed})")
            return self._loaded

    def _safe_reason(self, e: Exception) -> str:
        """One line about `e` that names no server path (the model's folder becomes its id)."""
        return safe_reason(e, {str(self.path.resolve()): self.id, str(self.path): self.id})

    def describe_once(self) -> dict:
        """`public()` computed from the config at start-up; it must render as UTF-8 JSON."""
        if self._public is None:
            params = self.handler.Params.model_fields.items()
            fields = [f.alias or name for name, f in params]  # what the request body may hold
            head = {"id": self.id, "kind": self.handler.name, "data_kind": self.data_kind}
            public = head | {"fields": fields} | self.handler.describe(self)
            json.dumps(public, ensure_ascii=False, allow_nan=False).encode("utf-8")
            self._public = public
        return self._public

    def public(self) -> dict:
        return self.describe_once()


class Handler:
    """One modality. Subclasses set `name` (the route /api/generate/{name}) and `Params`."""

    name: str = ""
    summary: str = ""
    Params: type[BaseModel] = BaseModel

    def accepts(self, config: dict) -> bool:
        """Whether a checkpoint of a data kind this handler is keyed by is one it can run (an
        autoencoder trained on scenes shares `data.kind` with the text-to-image models)."""
        return True

    def describe(self, entry: ModelEntry) -> dict:
        """Public facts the web page needs (classes, defaults, shape), from the config alone."""
        return {}

    def load(self, path: Path) -> object:
        raise NotImplementedError

    def prepare(self, params: BaseModel, entry: ModelEntry, limits: Limits) -> tuple[dict, Run]:
        """Check what depends on the model and the limits (RequestError); return the request
        as echoed in the job status and the function a worker runs."""
        raise NotImplementedError


def model_kinds(config: dict) -> tuple[str, str]:
    """(model.kind, model.text_encoder.kind or "") of a checkpoint config."""
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    encoder = model.get("text_encoder") if isinstance(model.get("text_encoder"), dict) else {}
    return str(model.get("kind", "")), str(encoder.get("kind") or "")


class Counted:
    """A network seen through a counter: each call is one step of the job's progress, and the
    place where a cancelled or timed-out job stops (the step callback raises). For pipelines
    whose public generate() takes no callback; the weights stay shared, nothing is copied."""

    def __init__(self, net: object, step: Callable[[], None]):
        self._net, self._step = net, step

    def __call__(self, *args, **kwargs):
        self._step()
        return self._net(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._net, name)
