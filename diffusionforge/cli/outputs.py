"""The one `--out` rule of the drawing verbs (sample, generate, generate-text, generate-audio).

`--out FOLDER` (a name without one of the verb's file suffixes): one file per sample, named
`<verb>-<seed>[-<label>].<ext>` (label: the class name or a slug of the prompt), an overview
where there is a picture (grid.png, spectrograms.png) and samples.json, the manifest: the
command's resolved settings (sampler and schedule names, NFE, weights hash) and every file with
its seed and label. `--out FILE.png|.npy|.wav|.txt`: that one file (a grid, an array, the
clips end to end, the texts one after another).

Reusing a folder removes the files its earlier samples.json lists (what a drawing verb wrote
there) and nothing else; other files stay, with one line saying how many."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from diffusionforge.cli.common import _check_writable_dir, _log
from diffusionforge.errors import UserError
from diffusionforge.train.checkpoint import describe

MANIFEST = "samples.json"


@dataclass
class Out:
    """Where a drawing verb writes: a folder of single files, or one file (`single`)."""

    path: Path
    verb: str
    single: bool
    names: set[str] = field(default_factory=set)  # lower-cased names given out so far
    files: list[dict] = field(default_factory=list)  # manifest rows: file, seed, label
    extra: list[str] = field(default_factory=list)  # overview files (grid.png ...)

    @property
    def suffix(self) -> str:
        return self.path.suffix.lower()

    def name(self, seed: int, ext: str, label: str | None = None, **row) -> Path:
        """The next sample's file, `<verb>-<seed>[-<label>].<ext>` (-2, -3 ... if taken)."""
        tag = re.sub(r"[^A-Za-z0-9]+", "-", label or "").strip("-")[:40]
        base = f"{self.verb}-{seed}" + (f"-{tag}" if tag else "")
        name, k = f"{base}.{ext}", 1
        while name.lower() in self.names:
            k += 1
            name = f"{base}-{k}.{ext}"
        self.names.add(name.lower())
        self.files.append({"file": name, "seed": seed, "label": label, **row})
        return self.path / name

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Around the writes: first the files an earlier run listed in the folder's
        samples.json go; on OSError (disk full ...) what this run wrote is removed, then one
        line; other files stay."""
        folder = self.path.parent if self.single else self.path
        if not self.single:  # only now, once the samples are drawn
            _clear_earlier(folder, f"--out {self.path}")
        before = set(folder.iterdir())
        try:
            yield
        except OSError as e:
            for p in set(folder.iterdir()) - before:
                if p.is_file():
                    p.unlink(missing_ok=True)
            raise UserError(
                f"--out {self.path}: could not write ({describe(e)}); nothing kept"
            ) from None

    def overview(self, name: str) -> Path:
        self.extra.append(name)
        return self.path / name

    def finish(self, settings: dict) -> Path:
        """Write samples.json (folders only); returns what to name in the 'wrote' line."""
        if self.single:
            return self.path
        record = {"verb": self.verb, **settings, "files": self.files, "overview": self.extra}
        tmp = self.path / f".tmp-{MANIFEST}"
        tmp.write_text(json.dumps(record, indent=1, default=str))
        os.replace(tmp, self.path / MANIFEST)
        return self.path


def resolve_out(text: str | None, verb: str, suffixes: tuple[str, ...], default: str) -> Out:
    """--out as a folder or one file (suffix in `suffixes`), checked before any work; a
    folder's earlier files (its samples.json) are replaced when `writing` starts."""
    path = Path(text or default).expanduser()
    flag = f"--out {text or default}"
    if path.suffix.lower() in suffixes:
        if path.is_dir():
            raise UserError(f"{flag}: a folder; name a {path.suffix} file or a new folder")
        _check_writable_dir(path.parent, flag)
        return Out(path, verb, single=True)
    if path.suffix and not path.is_dir() and not path.exists():
        raise UserError(
            f"{flag}: expected a folder (one file per sample) or a file ending in "
            f"{', '.join(suffixes)}"
        )
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag}: exists and is not a folder or a {'/'.join(suffixes)} file")
    _check_writable_dir(path, flag)
    return Out(path, verb, single=False)


def _clear_earlier(folder: Path, flag: str) -> None:
    manifest = folder / MANIFEST
    removed = 0
    if manifest.is_file():
        try:
            earlier = json.loads(manifest.read_text())
            names = [f["file"] for f in earlier.get("files", [])]
            names += list(earlier.get("overview", []))
        except (ValueError, TypeError, KeyError, AttributeError):
            raise UserError(
                f"{flag}: {manifest} is not a manifest this tool wrote; move it or choose "
                "another --out"
            ) from None
        for name in names:  # plain names inside the folder only: never a path elsewhere
            p = folder / str(name)
            if isinstance(name, str) and Path(name).name == name and p.is_file():
                p.unlink()
                removed += 1
        manifest.unlink()
    others = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if removed:
        _log(f"{flag}: replaced the {removed} file(s) an earlier run wrote there")
    if others:
        _log(f"{flag}: also holds {len(others)} other file(s), left as they are")
