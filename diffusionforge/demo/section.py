"""What a demo section reports: a title, summary lines and the files worth opening."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Section:
    title: str
    lines: list[str]  # summary lines, each under ~90 characters
    files: list[Path] = field(default_factory=list)  # pictures and folders worth opening
