"""Finding the files of a dataset folder without ever opening anything that is not a file.

One policy for every folder loader (images, captioned images, audio, text): a dataset file is
a *regular* file, found by ``os.stat`` (which follows symlinks and opens nothing). Everything
else under the folder is reported with one line and left alone, never opened or read:

- a dangling symlink, a symlink loop (``ELOOP``), a symlink to a folder already scanned;
- a FIFO (opening one blocks until a writer comes), a socket, a character or block device
  (``/dev/zero`` reads forever), directly or through a symlink;
- a folder that cannot be listed (permissions) and an entry that cannot be stat-ed.

Symlinks to files and to folders are followed; a link to a folder above it (a loop) or to a
folder already scanned is reported instead, so every real folder is scanned once. Results
are sorted by path, so the order never depends on the disk.
"""

from __future__ import annotations

import errno
import os
import stat
from array import array
from collections.abc import Callable
from pathlib import Path

Report = Callable[[Path, str], None]


def _kind(mode: int) -> str | None:
    """Why a stat mode is not a regular file or a folder (None when it is one of them)."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "not a regular file"


def file_problem(path: str | os.PathLike) -> str | None:
    """None if `path` is a regular file (through symlinks), else why not, in a few words.
    Opens nothing, so it is safe on FIFOs and devices."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as e:
        return _stat_error(path, e)
    if stat.S_ISDIR(st.st_mode):
        return "a folder, not a file"
    kind = _kind(st.st_mode)
    if kind is not None:
        via = "a symlink to " if path.is_symlink() else ""
        return f"{via}{kind}, not a regular file"
    return None


def _stat_error(path: Path, e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "a symlink loop"
    if e.errno == errno.ENOENT and path.is_symlink():
        return f"a dangling symlink (to {os.readlink(path)})"
    return f"cannot be read ({e.strerror or e})"


def regular_files(
    root: str | os.PathLike, report: Report, *, skip_hidden: bool = False
) -> list[Path]:
    """Every regular file under `root` (recursive, sorted); everything else is `report`-ed
    once with its reason. `skip_hidden` leaves names starting with '.' out without a word."""
    root = Path(root)
    found: list[Path] = []
    # each folder carries the (device, inode) of the folders above it, the root's own parents
    # included, so a link back up (`ln -s .. up`) is a loop; `seen` scans every folder once
    above = {_inode(p) for p in Path(os.path.abspath(root)).parents}
    seen = {_inode(root)}
    stack = [(root, frozenset(above | seen))]
    while stack:
        folder, ancestors = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            report(folder, f"folder cannot be listed ({e.strerror or e})")
            continue
        subfolders = []
        for entry in entries:
            if skip_hidden and entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:
                st = os.stat(path)  # follows symlinks; never opens the file
            except OSError as e:
                report(path, _stat_error(path, e))
                continue
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in ancestors:
                    report(path, "a symlink loop (to a folder above it)")
                elif key in seen:
                    report(path, "a second link to a folder already scanned")
                else:
                    seen.add(key)
                    subfolders.append((path, ancestors | {key}))
            elif stat.S_ISREG(st.st_mode):
                found.append(path)
            else:
                via = "a symlink to " if entry.is_symlink() else ""
                report(path, f"{via}{_kind(st.st_mode)}, not a regular file")
        stack.extend(reversed(subfolders))
    return sorted(found)


def class_folders(root: str | os.PathLike) -> list[Path]:
    """The top-level sub-folders of `root` that are classes, sorted: folders and symlinks to
    folders, but not a link back up to `root` or above it (which `regular_files` reports)."""
    root = Path(root)
    above = {_inode(p) for p in Path(os.path.abspath(root)).parents} | {_inode(root)}
    out = []
    for path in root.iterdir():
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and (st.st_dev, st.st_ino) not in above:
            out.append(path)
    return sorted(out)


def _inode(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


class FileList:
    """(path, label) pairs of a scanned folder, held compactly: one str per file (relative to
    the root) and one int64 label. A list of (Path, int) tuples costs about 2.5 KB a file once
    the paths have been taken apart (250 MB for 100k files, measured: BENCHMARKS.md); this
    costs about a tenth of that. Reads back as (Path, int), like the list it replaces."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self._paths: list[str] = []
        self._labels = array("q")

    def append(self, item: tuple[Path, int]) -> None:
        path, label = item
        self._paths.append(str(Path(path).relative_to(self.root)))
        self._labels.append(label)

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, i: int) -> tuple[Path, int]:
        return self.root / self._paths[i], self._labels[i]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def labels(self) -> array:
        return self._labels
