"""The modalities a server can serve: one handler per kind of checkpoint.

Keyed by the checkpoint's `data.kind` (the config says what the model was trained on, which
says what it makes). A new modality is one handler class in its own module and one line per
data kind here; the server's routes, the OpenAPI schema and the web page follow from this dict.
"""

from __future__ import annotations

from diffusionforge.server.audio_handler import AudioHandler
from diffusionforge.server.base import Handler
from diffusionforge.server.diffusers_handler import DiffusersHandler
from diffusionforge.server.image_handler import ImageHandler
from diffusionforge.server.t2i_handler import Text2ImageHandler
from diffusionforge.server.text_handler import TextHandler
from diffusionforge.train.builders_audio import AUDIO_KINDS
from diffusionforge.train.builders_t2i import CAPTIONED_KINDS
from diffusionforge.train.builders_text import TEXT_KINDS

_IMAGES, _T2I, _TEXT, _AUDIO = ImageHandler(), Text2ImageHandler(), TextHandler(), AudioHandler()

HANDLERS: dict[str, Handler] = {
    "digits": _IMAGES,
    "glyphs": _IMAGES,
    "images": _IMAGES,
    **dict.fromkeys(CAPTIONED_KINDS, _T2I),  # procedural scenes, captioned image lists
    **dict.fromkeys(TEXT_KINDS, _TEXT),  # text files/folders, fortunes, grammar
    **dict.fromkeys(AUDIO_KINDS, _AUDIO),  # spoken digits, audio folders
    "diffusers": DiffusersHandler(),  # folders made with diffusers (registry.scan marks them)
}


def kind_of(config: dict) -> str | None:
    """The handler key of a checkpoint config: its data.kind."""
    data = config.get("data")
    return data.get("kind") if isinstance(data, dict) else None
