"""The models a server offers: found once at start-up, named by allow-listed ids.

`--models DIR`: every sub-folder of DIR whose name is a valid id (letters, digits, '-', '_')
and that holds a checkpoint (or a run folder with checkpoints) of a kind in HANDLERS. Requests
name models by these ids only; an id is a key of a dict built here, never joined to a path.
Without a folder, the models bundled with the package are served.
"""

from __future__ import annotations

import logging
from pathlib import Path

from diffusionforge.assets import BUNDLED
from diffusionforge.errors import UserError
from diffusionforge.pipelines.diffusers_import import is_diffusers_folder, require_extra
from diffusionforge.server.base import ID_RE, ModelEntry
from diffusionforge.server.diffusers_handler import entry_config
from diffusionforge.server.handlers import HANDLERS, kind_of
from diffusionforge.train.checkpoint import resolve_checkpoint
from diffusionforge.train.loading import split_config

log = logging.getLogger("diffusionforge.server")


class ModelRegistry:
    def __init__(self, entries: list[ModelEntry]):
        self._entries = {e.id: e for e in entries}

    def get(self, model_id: object) -> ModelEntry | None:
        return self._entries.get(model_id) if isinstance(model_id, str) else None

    def __len__(self) -> int:
        return len(self._entries)

    def public(self) -> list[dict]:
        return [e.public() for e in self._entries.values()]

    def handlers(self) -> set[str]:
        return {e.handler.name for e in self._entries.values()}


def scan(folder: Path | None) -> tuple[ModelRegistry, list[str]]:
    """(registry, one line per skipped folder). A missing folder is a UserError."""
    if folder is None:  # every bundled checkpoint a handler can run (not autoencoders, judges)
        from importlib import resources

        assets = Path(str(resources.files("diffusionforge.assets")))
        order = {name: k for k, name in enumerate(BUNDLED)}  # the listed ones first
        folders = sorted(assets.iterdir(), key=lambda p: (order.get(p.name, len(order)), p.name))
        bundled = [p for p in folders if (p / "manifest.json").is_file()]
        entries = [e for p in bundled if (e := _quiet_entry(p.name, p)) is not None]
        return ModelRegistry(entries), []
    else:
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise UserError(f"--models {folder}: no such folder")
        candidates = [(p.name, p) for p in sorted(folder.iterdir()) if p.is_dir()]
    entries, skipped = [], []
    for name, path in candidates:
        if name.startswith("."):
            continue
        if not ID_RE.match(name):
            skipped.append(f"{name}: not a valid model id (letters, digits, '-', '_'; <= 64)")
            continue
        try:
            entry = _entry(name, path)
        except Exception as e:  # one bad folder is skipped with one line, never stops the rest
            skipped.append(f"{name}: {_one_line(e)}")
            continue
        if entry is None:
            skipped.append(f"{name}: no handler for this kind of model")
            continue
        entries.append(entry)
    return ModelRegistry(entries), skipped


def _entry(model_id: str, path: Path) -> ModelEntry | None:

    if is_diffusers_folder(path):  # made with diffusers: listed from its JSON, built on demand
        require_extra()
        return ModelEntry(model_id, "diffusers", HANDLERS["diffusers"], path, entry_config(path))

    ckpt = resolve_checkpoint(path)  # verifies every file against the manifest
    config = ckpt.config
    if not isinstance(config.get("diffusionforge"), dict):
        raise UserError("config.json lacks the diffusionforge header")
    try:  # the config a worker will build the network from: checked now, not at the first job
        split_config(config, "")
    except UserError as e:
        raise UserError(str(e).removeprefix("/")) from None
    except (TypeError, ValueError) as e:
        raise UserError(f"config.json: not a servable header ({type(e).__name__}: {e})") from None
    kind = kind_of(config)
    if not isinstance(kind, str) or kind not in HANDLERS or not HANDLERS[kind].accepts(config):
        return None
    entry = ModelEntry(model_id, kind, HANDLERS[kind], ckpt.path, config)
    try:  # what GET /api/models shows, from the config alone: a forged header fails here, once
        entry.describe_once()
    except Exception as e:
        raise UserError(f"config.json: not a servable header ({type(e).__name__}: {e})") from None
    return entry


def _one_line(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
    return text if isinstance(e, UserError) else f"{type(e).__name__}: {text}"


def _quiet_entry(model_id: str, path: Path) -> ModelEntry | None:
    try:
        return _entry(model_id, path) if ID_RE.match(model_id) else None
    except Exception:
        return None
