"""Text corpora for token models: any UTF-8 file or folder, Debian's fortunes, and packing.

A corpus is a list of documents (strings) split into a training part and a held-out part.
`pack` joins tokenized documents with a separator and cuts the stream into windows of a fixed
length (MDLM's "wrap", Sahoo et al. 2024 Sec. 4.1): no padding, every position is text.

- `read_text(path)`: a file, or every file under a folder (recursive, sorted, hidden files
  skipped); each file is one document. Bytes that are not UTF-8 are refused with one line naming
  the file and the byte offset. Entries that are not regular files (FIFO, device, dangling
  symlink or loop, a folder that cannot be listed) are skipped with one line each, never opened.
- `fortunes()`: the quotations of Debian's `fortunes` package (/usr/share/games/fortunes),
  one document per fortune; terminal overstrikes (x BACKSPACE y) and bells are cleaned away.
- `split_documents`: a stable train/held-out split by a hash of each document's text, so the
  split does not depend on file order and duplicates never straddle it.
"""

from __future__ import annotations

import hashlib
import re
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from diffusionforge.data.files import file_problem, regular_files
from diffusionforge.errors import DataError

FORTUNES_DIR = Path("/usr/share/games/fortunes")


def _decode(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path}: not UTF-8 text: undecodable byte 0x{raw[e.start]:02x} at byte offset "
            f"{e.start}"
        ) from None


def _skip(path: Path, why: str) -> None:
    print(f"{path}: {why} (skipped)", file=sys.stderr)


def read_text(path: str | Path) -> list[str]:
    """The documents of a text file or folder (one per file, empty files dropped)."""
    path = Path(path).expanduser()
    if not path.exists() and not path.is_symlink():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        files = regular_files(path, _skip, skip_hidden=True)
    elif (problem := file_problem(path)) is not None:
        raise DataError(f"{path}: {problem}")  # a FIFO would block, /dev/zero never end
    else:
        files = [path]
    docs = [text for text in (_decode(f) for f in files) if text.strip()]
    if not docs:
        raise DataError(f"{path}: empty corpus (no text in {len(files)} file(s))")
    return docs


def fortunes(root: str | Path = FORTUNES_DIR) -> list[str]:
    """Every fortune of the installed `fortunes` package, in file then position order."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"{root}: not found; install Debian's `fortunes` package (make sysdeps does)"
        )
    docs = []
    for f in sorted(root.iterdir()):
        if f.suffix == ".dat" or f.is_symlink() or not f.is_file():
            continue
        text = re.sub(".\x08", "", _decode(f)).replace("\x07", "")  # overstrikes, bells
        docs += [d.strip("\n") for d in re.split(r"\n%\n", text) if d.strip()]
    if not docs:
        raise DataError(f"{root}: no fortunes found")
    return docs


def split_documents(docs: Sequence[str], heldout: float) -> tuple[list[str], list[str]]:
    """(train, held-out): a document is held out when the CRC-32 of its text, as a fraction of
    2^32, is below `heldout`. With one document, its last `heldout` fraction (at a line break
    when one is near) is held out instead."""
    if len(docs) == 1 and heldout > 0:
        text = docs[0]
        cut = int(len(text) * (1 - heldout))
        nl = text.rfind("\n", 0, cut)
        cut = nl + 1 if nl > cut * 0.9 else cut
        return [text[:cut]], [text[cut:]] if text[cut:].strip() else []
    train, held = [], []
    for d in docs:
        (held if zlib.crc32(d.encode()) / 2**32 < heldout else train).append(d)
    return train, held


def slice_documents(docs: Sequence[str], fraction: float) -> list[str]:
    """The documents whose BLAKE2b hash, as a fraction of 2^64, is below `fraction`: a fixed
    slice of about that share, in the original order, independent of the held-out split (a
    CRC-32 of the text with a prefix would not be: CRC is affine, so the two would coincide)."""

    def share(d: str) -> float:
        return int.from_bytes(hashlib.blake2b(d.encode(), digest_size=8).digest(), "big") / 2**64

    return [d for d in docs if share(d) < fraction]


def pack(docs_ids: Sequence[Sequence[int]], length: int, sep: Sequence[int]) -> Tensor:
    """Token windows (N, length) long: the documents joined by `sep`, cut every `length`
    tokens; the incomplete tail is dropped."""
    stream: list[int] = []
    for ids in docs_ids:
        stream.extend(ids)
        stream.extend(sep)
    n = len(stream) // length
    return torch.tensor(stream[: n * length], dtype=torch.long).view(n, length)
