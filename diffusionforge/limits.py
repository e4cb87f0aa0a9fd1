"""Resource limits and the number checks every entry point shares, in one place.

The CLI (every command), config loading and the server read their bounds from here, so a number
that would exhaust memory or overflow a torch generator gets the same one-line `UserError`
whatever door it comes through. Each CLI limit can be raised for one process with an environment
variable, `DIFFUSIONFORGE_MAX_<NAME>` (e.g. `DIFFUSIONFORGE_MAX_NFE=5000`); the server's
per-request caps have their own flags (`serve --max-n`, `--max-nfe`), bounded by these.
"""

from __future__ import annotations

import math
import os
from typing import Any

from diffusionforge.errors import ConfigError, UserError

# name -> (default, what it bounds). Raised with DIFFUSIONFORGE_MAX_<NAME>.
LIMITS: dict[str, tuple[int, str]] = {
    "n": (100_000, "samples (images, clips, texts, prompts) drawn by one command"),
    "nfe": (1000, "network evaluations (denoising steps) per sample"),
    "values": (2**28, "numbers drawn at once: n x values per example (1 GiB of float32)"),
    "parameters": (1_000_000_000, "parameters of a network built from a config (4 GB float32)"),
    "threads": (256, "torch CPU threads"),
    "depth": (1000, "layers, blocks or heads of a network in a config"),
    "image_side": (4096, "the side images are resized to for training (data.image_size)"),
    "steps": (10**9, "training steps, and other step counts of a config"),
    "width": (1_000_000, "any other size of a config or flag (widths, lengths, batch sizes)"),
    # image files of a data folder, read from the header before decoding (others are skipped);
    # the pixel default is Pillow's own Image.MAX_IMAGE_PIXELS
    "image_pixels": (89_478_485, "pixels of one image file in a data folder"),
    "image_aspect": (16, "long side / short side of one image file in a data folder"),
    # an init image or mask sent to `serve`, counted before decoding (serve --max-upload)
    "upload_bytes": (64 << 20, "bytes of one image file a server request may carry"),
}
MAX_SEED = 2**32 - 1  # seeds are whole numbers in [0, MAX_SEED]; sample i uses seed + i

# The server's default caps on one request (serve --max-n / --max-nfe change them).
SERVER_MAX_N = 16
SERVER_MAX_NFE = 200
SERVER_MAX_UPLOAD = 4 << 20  # bytes of one uploaded image file (init image, mask)


def limit(name: str) -> int:
    """The bound `name` of LIMITS, or the DIFFUSIONFORGE_MAX_<NAME> environment override."""
    default, _ = LIMITS[name]
    env = f"DIFFUSIONFORGE_MAX_{name.upper()}"
    raw = os.environ.get(env)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UserError(f"{env}: expected a positive whole number, got {raw!r}") from None
    if value <= 0:
        raise UserError(f"{env}: expected a positive whole number, got {raw!r}")
    return value


def _raise_hint(name: str) -> str:
    return f"raise with DIFFUSIONFORGE_MAX_{name.upper()}"


def check_count(
    value: Any, what: str, *, bound: str = "width", minimum: int = 1, error=UserError
) -> int:
    """A whole number in [minimum, limit(bound)]; one-line `error` naming `what` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{what}: expected a whole number, got {value!r}")
    if value < minimum:
        lowest = "a positive number" if minimum == 1 else f"{minimum} or more"
        raise error(f"{what}: expected {lowest}, got {value}")
    cap = limit(bound)
    if value > cap:
        raise error(f"{what}: {value} is above the limit of {cap:,} ({_raise_hint(bound)})")
    return value


def check_seed(value: Any, what: str = "--seed", *, error=UserError) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise error(f"{what}: expected a whole number in [0, {MAX_SEED}], got {value!r}")
    return value


def check_finite(value: Any, what: str, *, minimum: float | None = None, error=UserError) -> float:
    """A finite float (not NaN or infinite), at least `minimum` when given."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise error(f"{what}: expected a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise error(f"{what}: expected {minimum:g} or more, got {value!r}")
    return float(value)


def check_list(values: list, what: str, *, bound: str) -> list:
    """Each whole number of a comma-separated flag (such as --sweep-nfe 4,8) under its limit."""
    for v in values:
        check_count(v, what, bound=bound)
    return values


def check_values(n: int, per_example: int, what: str = "--n") -> None:
    """n examples of `per_example` numbers each must fit limit('values') at once."""
    cap = limit("values")
    if n * per_example > cap:
        most = max(cap // max(per_example, 1), 1)
        raise UserError(
            f"{what} {n}: {n:,} x {per_example:,} values exceed the limit of {cap:,} at once; "
            f"draw at most {most:,} per call ({_raise_hint('values')})"
        )


def check_parameters(count: int, what: str, *, error=ConfigError) -> None:
    cap = limit("parameters")
    if count > cap:
        raise error(
            f"{what}: the model would have {count:,} parameters, above the limit of {cap:,} "
            f"({_raise_hint('parameters')})"
        )


# --- the CLI: one pass over every command's parsed flags ------------------------------------

# flag dest -> LIMITS name for the upper bound of an int flag. Lower bounds (0 allowed or not)
# stay with each command, which knows what its flag means.
_INT_FLAGS = {
    "n": "n",
    "sweep_n": "n",
    "nfe": "nfe",
    "threads": "threads",
    "steps": "steps",
    "until_step": "steps",
    "step": "steps",
    "elbo_steps": "nfe",
    "max_n": "n",
    "max_nfe": "nfe",
    "max_body": "values",
    "max_upload": "upload_bytes",
}
_SEED_FLAGS = ("seed",)
# Text flags: must be valid Unicode (bytes that are not UTF-8 arrive as lone surrogates).
_TEXT_FLAGS = ("prompt", "negative", "cls")
# Int flags that are at least 1 in every command that has them (torch refuses 0 threads).
_AT_LEAST_ONE = ("threads", "nfe", "batch_size")


def check_cli_args(args: Any, flags: dict[str, str]) -> None:
    """Bound every number a command received: seeds in [0, MAX_SEED], ints below their limit
    (`_INT_FLAGS`, else 'width'), floats finite. `flags` maps each dest to its flag spelling."""
    for dest, value in sorted(vars(args).items()):
        flag = flags.get(dest)
        if flag is None or value is None or isinstance(value, bool):
            continue
        if dest in _TEXT_FLAGS:
            for text in value if isinstance(value, list) else [value]:
                try:
                    str(text).encode("utf-8")
                except UnicodeEncodeError:
                    raise UserError(f"{flag}: not valid UTF-8 text") from None
        elif dest in _SEED_FLAGS and isinstance(value, int):
            check_seed(value, flag)
        elif isinstance(value, int):
            if dest in _AT_LEAST_ONE and value < 1:
                raise UserError(f"{flag}: expected a positive number, got {value}")
            bound = _INT_FLAGS.get(dest, "width")
            cap = limit(bound)
            if abs(value) > cap:
                raise UserError(
                    f"{flag}: {value} is above the limit of {cap:,} ({_raise_hint(bound)})"
                )
        elif isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{flag}: expected a finite number, got {value}")


def limits_table() -> str:
    """The limits and their current values, for the README and `--help` texts."""
    rows = [
        f"DIFFUSIONFORGE_MAX_{k.upper():<11} {limit(k):>13,}  {w}" for k, (_, w) in LIMITS.items()
    ]
    return "\n".join(rows)
