"""Reading untrusted checkpoint files without trusting them: the path stays inside its folder,
the file is a regular file (no symlink, device or FIFO) of the size the manifest says, checked on
the open descriptor before a byte is read; a safetensors header is parsed and checked (shapes,
offsets inside the file) without touching the tensors, so a loader can compare what a config
would allocate with what the weights hold. Everything wrong is a one-line CheckpointError.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

from diffusionforge.errors import CheckpointError


def describe(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return "disk full"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission denied"
    return e.strerror or str(e)


_DTYPE_BYTES = {
    **dict.fromkeys(["F64", "I64", "U64"], 8),
    **dict.fromkeys(["F32", "I32", "U32"], 4),
    **dict.fromkeys(["F16", "BF16", "I16", "U16"], 2),
    **dict.fromkeys(["I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2"], 1),
}


def safetensors_header(data: bytes, name: str) -> dict[str, dict]:
    """The JSON header of a .safetensors file: tensor name -> {dtype, shape, data_offsets},
    read without touching the tensors; one-line CheckpointError when it is malformed."""
    if len(data) < 8:
        raise CheckpointError(f"{name}: not a valid safetensors file (shorter than 8 bytes)")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        raise CheckpointError(f"{name}: not a valid safetensors file (header past the end)")
    try:
        header = json.loads(data[8 : 8 + size])
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        for v in tensors.values():
            if not all(isinstance(d, int) and d >= 0 for d in v["shape"]):
                raise ValueError("bad shape")
            begin, end = v["data_offsets"]
            count = 1
            for d in v["shape"]:
                count *= d
            # the bytes each tensor claims must be its size and lie inside the file
            if (
                not 0 <= begin <= end <= len(data) - 8 - size
                or end - begin != count * (_DTYPE_BYTES[v["dtype"]])
            ):
                raise ValueError("bad offsets")
    except (
        json.JSONDecodeError,
        UnicodeDecodeError,
        AttributeError,
        KeyError,
        TypeError,
        ValueError,
    ):
        raise CheckpointError(f"{name}: not a valid safetensors file (bad header)") from None
    return tensors


def stored_values(data: bytes, name: str) -> int:
    """How many numbers a .safetensors file holds, from its header alone."""
    total = 0
    for info in safetensors_header(data, name).values():
        n = 1
        for d in info["shape"]:
            n *= d
        total += n
    return total


MAX_MANIFEST_BYTES = 1 << 20  # a manifest lists a few files; anything larger is not one


def read_inside(folder: Path, rel: str, size: int | None) -> bytes:
    """The bytes of `folder/rel`, read only when `rel` is a plain relative path inside the
    folder naming a regular file (no symlink, device or FIFO) of exactly `size` bytes (None:
    at most MAX_MANIFEST_BYTES). Checked on the open descriptor before reading, so nothing
    outside the folder is ever opened and a file cannot make the reader allocate without end."""
    parts = Path(rel).parts
    if (
        not isinstance(rel, str)
        or not rel
        or "\0" in rel
        or Path(rel).is_absolute()
        or any(p in ("..", ".") for p in parts)
    ):
        raise CheckpointError(f"{folder}: corrupt checkpoint (manifest names {rel!r}, outside it)")
    target = folder / rel
    try:
        inside = target.parent.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        inside = False
    if not inside:
        raise CheckpointError(f"{folder}: corrupt checkpoint ({rel} lies outside the folder)")
    try:
        fd = os.open(target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK)
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: incomplete checkpoint ({rel} missing)") from None
    except OSError as e:
        if e.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
            raise CheckpointError(f"{folder}: corrupt checkpoint ({rel} is a symlink)") from None
        raise CheckpointError(f"{target}: could not read ({describe(e)})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CheckpointError(f"{folder}: corrupt checkpoint ({rel} is not a regular file)")
        expected = st.st_size if size is None else size
        if size is None and st.st_size > MAX_MANIFEST_BYTES:
            raise CheckpointError(f"{folder}: corrupt checkpoint ({rel} is too large)")
        if st.st_size != expected:
            raise CheckpointError(
                f"{folder}: corrupt checkpoint ({rel} fails its checksum: {st.st_size} bytes, "
                f"manifest says {expected})"
            )
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(expected + 1)
    except OSError as e:
        raise CheckpointError(f"{target}: could not read ({describe(e)})") from None
    finally:
        os.close(fd)
    if len(data) != expected:
        raise CheckpointError(f"{folder}: corrupt checkpoint ({rel} changed while read)")
    return data
