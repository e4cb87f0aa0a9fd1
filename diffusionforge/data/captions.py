"""Users' captioned images: a folder with ``.txt`` sidecars, or a CSV / JSONL list of them.

Three ways to give (image, caption) pairs, chosen by what ``source`` is:

- **a folder**: every file under it (recursively) except ``.txt``/``.csv``/``.jsonl`` is an image
  whose caption is the text of the file with the same stem in the same folder (``cat.png`` ->
  ``cat.txt``). A ``.txt`` with no image beside it is reported and ignored.
- **a .csv file** with a header row naming a path column (``path``, ``file_name``, ``file`` or
  ``image``) and a caption column (``caption`` or ``text``); other columns are ignored.
- **a .jsonl file**: one JSON object per line with the same keys (Hugging Face's imagefolder
  ``metadata.jsonl`` uses ``file_name`` and ``text``). Blank lines are skipped.

Relative paths in a list resolve against the list's folder. Captions are stripped and their
whitespace runs (newlines included) collapsed to one space.

Decoding is ``ImageFolder``'s (data/images.py): resize the shorter side, centre-crop, convert
modes, composite transparency over white. Bad entries are skipped, counted in ``skipped`` and
reported with one line each naming the file (or the list and its row): a missing image, a
non-image or corrupt or truncated image, a decompression bomb, an image below ``min_side``,
a missing, empty or non-UTF-8 caption, a malformed row. A list without the needed columns, a
missing source, or a source with no usable pair is one ``DataError`` line.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from diffusionforge.data.files import file_problem, regular_files
from diffusionforge.data.images import ImageFolder, _report
from diffusionforge.errors import DataError
from diffusionforge.limits import limit

PATH_KEYS = ("path", "file_name", "file", "image")
CAPTION_KEYS = ("caption", "text")
_NOT_IMAGES = (".txt", ".csv", ".jsonl")


def clean_caption(text: str) -> str:
    return " ".join(text.split())


class CaptionedImages(ImageFolder):
    """(image, caption) pairs; ``dataset[i]`` = (float32 (C, size, size) in [-1, 1], caption)."""

    def __init__(
        self,
        source: str | Path,
        size: int,
        channels: int = 3,
        min_side: int = 1,
        max_pixels: int | None = None,
        max_aspect: float | None = None,
        report: Callable[[str], None] = _report,
    ) -> None:
        # ImageFolder's decoding methods (_check, _open, load) read only these attributes.
        self.root, self.size, self.channels = Path(source), size, channels
        self.hflip, self.seed, self.epoch = False, 0, 0
        self.min_side = min_side
        self.max_pixels = max_pixels if max_pixels is not None else limit("image_pixels")
        self.max_aspect = max_aspect if max_aspect is not None else limit("image_aspect")
        self.report = report
        self.classes: list[str] = []
        self.skipped: list[tuple[Path, str]] = []
        self.samples: list[tuple[Path, str]] = []
        if not self.root.exists() and not self.root.is_symlink():
            raise DataError(f"{self.root}: no such file or folder")
        if not self.root.is_dir() and (problem := file_problem(self.root)):
            raise DataError(f"{self.root}: {problem}")  # a FIFO would block, a device never end
        if self.root.is_dir():
            pairs = self._scan_folder()
        elif self.root.suffix.lower() == ".csv":
            pairs = self._read_csv()
        elif self.root.suffix.lower() == ".jsonl":
            pairs = self._read_jsonl()
        else:
            raise DataError(f"{self.root}: expected a folder, a .csv or a .jsonl file")
        for path, caption in pairs:
            problem = file_problem(path)
            if problem is not None:
                problem = "no such image file" if not os.path.lexists(path) else problem
            else:
                problem = self._check(path)
            if problem:
                self._skip(path, problem)
            else:
                self.samples.append((path, caption))
        if not self.samples:
            raise DataError(
                f"{self.root}: no usable captioned images (skipped {len(self.skipped)})"
            )
        if self.skipped:
            report(f"{self.root}: skipped {len(self.skipped)} of {len(self.skipped) + len(self)}")

    @property
    def captions(self) -> list[str]:
        return [c for _, c in self.samples]

    def _scan_folder(self) -> list[tuple[Path, str]]:
        files = regular_files(self.root, self._skip)
        regular = set(files)
        images = [p for p in files if p.suffix.lower() not in _NOT_IMAGES]
        stems = {p.with_suffix("") for p in images}
        for p in files:
            if p.suffix.lower() == ".txt" and p.with_suffix("") not in stems:
                self._skip(p, "caption file without an image of the same name")
        pairs = []
        for p in images:
            sidecar = p.with_suffix(".txt")
            if not os.path.lexists(sidecar):
                self._skip(p, f"no caption file {sidecar.name}")
                continue
            if sidecar not in regular:  # a FIFO, device or broken link: reported by the scan
                self._skip(p, f"caption {sidecar.name} is not a regular file")
                continue
            caption = self._read_caption(sidecar)
            if caption is not None:
                pairs.append((p, caption))
        return pairs

    def _read_caption(self, path: Path) -> str | None:
        try:
            caption = clean_caption(path.read_bytes().decode("utf-8-sig"))
        except UnicodeDecodeError:
            self._skip(path, "caption is not UTF-8 text")
            return None
        except OSError as e:
            self._skip(path, f"unreadable caption ({e.strerror or e})")
            return None
        if not caption:
            self._skip(path, "empty caption")
            return None
        return caption

    def _row(self, row: dict, where: str) -> tuple[Path, str] | None:
        """(image path, caption) of one list row, or None (reported) when it is unusable."""
        path = next((row[k] for k in PATH_KEYS if isinstance(row.get(k), str) and row[k]), None)
        caption = next((row[k] for k in CAPTION_KEYS if isinstance(row.get(k), str)), None)
        if path is None:
            self._skip(Path(where), "no image path")
            return None
        # normalised, not resolved: a link is reported under its own name (file_problem)
        full = Path(os.path.abspath(self.root.parent / path))
        if caption is None or not clean_caption(caption):
            self._skip(full, f"{where}: empty or missing caption")
            return None
        return full, clean_caption(caption)

    def _columns_error(self, found) -> DataError:
        return DataError(
            f"{self.root}: expected a path column ({'/'.join(PATH_KEYS)}) and a caption column "
            f"({'/'.join(CAPTION_KEYS)}); found {', '.join(map(str, found)) or 'none'}"
        )

    def _open_text(self):
        try:
            return self.root.open(encoding="utf-8-sig", newline="")
        except OSError as e:
            raise DataError(f"{self.root}: cannot read ({e.strerror or e})") from None

    def _read_csv(self) -> list[tuple[Path, str]]:
        with self._open_text() as f:
            try:
                reader = csv.DictReader(f)
                header = reader.fieldnames or []
                if not set(header) & set(PATH_KEYS) or not set(header) & set(CAPTION_KEYS):
                    raise self._columns_error(header)
                rows = [self._row(row, f"{self.root.name} row {reader.line_num}") for row in reader]
            except (csv.Error, UnicodeDecodeError) as e:
                raise DataError(f"{self.root}: not a readable CSV file ({e})") from None
        return [r for r in rows if r is not None]

    def _read_jsonl(self) -> list[tuple[Path, str]]:
        pairs, keys = [], set()
        with self._open_text() as f:
            try:
                lines = list(enumerate(f, start=1))
            except UnicodeDecodeError as e:
                raise DataError(f"{self.root}: not UTF-8 text ({e.reason})") from None
        for num, line in lines:
            if not line.strip():
                continue
            where = f"{self.root.name} line {num}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                self._skip(Path(where), "not a JSON object")
                continue
            if not isinstance(row, dict):
                self._skip(Path(where), "not a JSON object")
                continue
            keys |= set(row)
            pair = self._row(row, where)
            if pair is not None:
                pairs.append(pair)
        if not pairs and keys and (not keys & set(PATH_KEYS) or not keys & set(CAPTION_KEYS)):
            raise self._columns_error(sorted(keys))
        return pairs


def load_captioned(
    source: str | Path, size: int, channels: int = 3, report: Callable[[str], None] = _report
) -> tuple[Tensor, list[str]]:
    """Decode every usable pair once: images float32 (N, C, size, size) in [-1, 1], captions."""
    data = CaptionedImages(source, size, channels=channels, report=report)
    images = torch.stack([data.load(i) for i in range(len(data))])
    return images, data.captions
