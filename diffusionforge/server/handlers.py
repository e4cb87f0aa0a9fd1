"""The modalities a server can serve: one handler per kind of checkpoint.

Keyed by the checkpoint's `data.kind` (the config says what the model was trained on, which
says what it makes), from the modality table (diffusionforge/modalities.py): a new modality is
a row there and a handler class in its own module; the server's routes, the OpenAPI schema and
the web page follow from this dict.
"""

from __future__ import annotations

from diffusionforge.modalities import MODALITIES
from diffusionforge.server.base import Handler
from diffusionforge.server.diffusers_handler import DiffusersHandler

# data.kind -> handler, from the modality table; folders made with diffusers are marked
# "diffusers" by registry.scan.
HANDLERS: dict[str, Handler] = {
    **{k: m.handler for m in MODALITIES.values() if m.handler for k in m.data_kinds},
    "diffusers": DiffusersHandler(),
}


def kind_of(config: dict) -> str | None:
    """The handler key of a checkpoint config: its data.kind."""
    data = config.get("data")
    return data.get("kind") if isinstance(data, dict) else None
