"""Reading a checkpoint's config.json: the Config, and the header that holds what the Config
does not (the example shape, class names); and the checks weights pass before they are used."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from diffusionforge.errors import CheckpointError, ConfigError
from diffusionforge.limits import limit
from diffusionforge.train.config import Config, from_dict


def split_config(raw: dict, where: str) -> tuple[Config, tuple[int, ...]]:
    """config.json -> (Config, example shape); the header holds what the Config does not."""
    if not isinstance(raw, dict):
        raise CheckpointError(f"{where}/config.json: expected a JSON object")
    raw = dict(raw)
    header = raw.pop("diffusionforge", None)
    if not isinstance(header, dict) or "example_shape" not in header:
        raise CheckpointError(f"{where}: config.json lacks the diffusionforge header")
    try:
        cfg = from_dict(raw, source=f"{where}/config.json")
    except ConfigError as e:
        # value checks (config_checks) name the key but not the file; say which file it is
        raise CheckpointError(str(e) if where in str(e) else f"{where}/config.json: {e}") from None
    classes = header.get("classes", [])
    if not isinstance(classes, list) or not all(_name(c) for c in classes):
        raise CheckpointError(
            f"{where}/config.json: classes: expected a list of class names, got {classes!r:.60}"
        )
    return cfg, example_shape(header["example_shape"], where)


def _name(c) -> bool:
    """A class name: an int or text that is valid Unicode (no lone surrogate)."""
    if isinstance(c, int) and not isinstance(c, bool):
        return True
    try:
        return isinstance(c, str) and bool(c.encode("utf-8"))
    except UnicodeEncodeError:
        return False


def example_shape(value, where: str) -> tuple[int, ...]:
    """The header's example_shape: 1 to 4 positive whole numbers whose product fits
    limits.limit('values'); a one-line CheckpointError otherwise."""
    ok = (
        isinstance(value, list)
        and 1 <= len(value) <= 4
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    )
    if not ok or math.prod(value) > limit("values"):
        raise CheckpointError(
            f"{where}/config.json: example_shape: expected 1 to 4 positive whole numbers "
            f"(at most {limit('values'):,} values), got {value!r}"
        )
    return tuple(value)


def check_finite_weights(state: dict[str, Tensor], where: str) -> None:
    """Refuse weights holding NaN or infinite values: they can only draw NaN."""
    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{where}: weights are not finite (NaN or inf in {name})")
