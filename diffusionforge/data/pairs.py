"""(prompt, response) pairs for conditional generation (LLaDA-style SFT, core/sft.py).

A pairs file is JSON Lines: one object per line with two string fields,

    {"prompt": "What is 2 + 3?", "response": "5"}

Blank lines are skipped; any other line that is not such an object is refused with one line
naming the file and the line number. A pair becomes one token window of `length` tokens:

    prompt tokens, SEP, response tokens, EOS, EOS, ... (up to `length`)

SEP (the ASCII record separator, U+001E) ends the prompt, so the model knows where its answer
starts; EOS is the padding id 0, which in the response is learnt like any token (LLaDA pads
answers with |EOS| and trains on them, so the model picks its answer's length). At generation
the text after the first EOS is dropped. The prompt length (SEP included) travels beside each
window as the dataset's `cond`, which the SFT objectives use to score the response only.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from diffusionforge.data.files import file_problem
from diffusionforge.errors import DataError

SEP = "\x1e"
EOS_ID = 0  # the tokenizers' padding id


_MAX_PAIRS_BYTES = 1 << 30  # read whole: bounded like any one file of a data folder


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """The (prompt, response) pairs of a JSONL file; DataError "FILE:LINE: why" on a bad line."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if (problem := file_problem(path)) is not None:
        raise DataError(f"{path}: {problem}")
    if path.is_dir():
        raise DataError(f"{path}: a folder; pairs come from one .jsonl file")
    try:
        size = path.stat().st_size
        if size > _MAX_PAIRS_BYTES:
            raise DataError(
                f"{path}: {size:,} bytes, above the {_MAX_PAIRS_BYTES:,} a pairs file may hold"
            )
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    pairs = []
    for n, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise DataError(f"{where}: not UTF-8 (byte 0x{line[e.start]:02x})") from None
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not JSON ({e.msg} at column {e.colno})") from None
        except RecursionError:
            raise DataError(f"{where}: not JSON (nested too deep)") from None
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected an object with prompt and response")
        for key in ("prompt", "response"):
            if not isinstance(obj.get(key), str):
                got = "missing" if key not in obj else type(obj[key]).__name__
                raise DataError(f"{where}: field {key!r} must be a string ({got})")
        for key in ("prompt", "response"):
            try:  # a \ud800 escape decodes to a lone surrogate, which no tokenizer encodes
                obj[key].encode("utf-8")
            except UnicodeEncodeError:
                raise DataError(f"{where}: field {key!r} holds a lone surrogate escape") from None
        if SEP in obj["prompt"] or SEP in obj["response"]:
            raise DataError(f"{where}: U+001E (the prompt/response separator) in the text")
        pairs.append((obj["prompt"], obj["response"]))
    if not pairs:
        raise DataError(f"{path}: no pairs (expected JSON lines with prompt and response)")
    return pairs


def split_pairs(
    pairs: Sequence[tuple[str, str]], heldout: float
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, held-out) by a CRC-32 of the prompt: a prompt is never on both sides."""
    train, held = [], []
    for p in pairs:
        (held if zlib.crc32(p[0].encode()) / 2**32 < heldout else train).append(p)
    return train, held


def encode_pair(tokenizer, prompt: str, response: str | None, length: int) -> tuple[list[int], int]:
    """(ids, prompt_len): the window of one pair (response None: the prompt part only, unpadded).
    Raises DataError when the prompt and response do not fit in `length` tokens."""
    head = tokenizer.encode(prompt + SEP)
    if response is None:
        return head, len(head)
    ids = head + tokenizer.encode(response)
    if len(ids) > length:
        raise DataError(
            f"{len(ids)} tokens of prompt and response do not fit data.text.length = {length}"
        )
    return ids + [EOS_ID] * (length - len(ids)), len(head)


def pack_pairs(tokenizer, pairs: Sequence[tuple[str, str]], length: int) -> tuple[Tensor, Tensor]:
    """Windows (N, length) long and prompt lengths (N,) long."""
    rows, plens = [], []
    for i, (prompt, response) in enumerate(pairs):
        try:
            ids, plen = encode_pair(tokenizer, prompt, response, length)
        except DataError as e:
            raise DataError(f"pair {i + 1}: {e}") from None
        rows.append(ids)
        plens.append(plen)
    return torch.tensor(rows, dtype=torch.long), torch.tensor(plens, dtype=torch.long)


def response_text(tokenizer, ids: Sequence[int]) -> str:
    """The text of generated response ids, cut at the first EOS."""
    ids = list(ids)
    if EOS_ID in ids:
        ids = ids[: ids.index(EOS_ID)]
    return tokenizer.decode(ids)
