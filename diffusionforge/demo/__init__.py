"""`diffusionforge demo`: the main job on built-in defaults, one section per modality.

A section is a function `(out_dir, quick) -> Section` registered in `SECTIONS`; `run_demo` runs
them in order and prints one screen: what was trained, how good it is, where the pictures are.
Each section is a module of this package."""

from __future__ import annotations

import time
from pathlib import Path

from diffusionforge.demo.audio import spoken_digits
from diffusionforge.demo.digits import digits
from diffusionforge.demo.editing import editing
from diffusionforge.demo.section import Section
from diffusionforge.demo.sudoku import sudoku_section
from diffusionforge.demo.text import text
from diffusionforge.demo.text2image import t2i
from diffusionforge.demo.toy2d import toy2d

__all__ = ["SECTIONS", "Section", "run_demo"]

SECTIONS = {
    "toy2d": toy2d,
    "digits": digits,
    "text": text,
    "sudoku": sudoku_section,
    "spoken-digits": spoken_digits,
    "editing": editing,
    "t2i": t2i,
}


def run_demo(out: Path, *, sections: list[str], quick: bool = False) -> int:
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    results = []
    for name in sections:
        print(f"[demo] {name}: running...", flush=True)
        results.append(SECTIONS[name](out, quick))
    bar = "=" * 78
    print(bar)
    print(f"diffusionforge demo: {len(results)} section(s) in {time.monotonic() - start:.0f}s")
    for r in results:
        print(f"\n## {r.title}")
        for line in r.lines:
            print(f"   {line}")
        for f in r.files:
            print(f"   -> {f}")
    print(
        "\nnext: diffusionforge info <checkpoint> | diffusionforge sample <checkpoint> --out s.png"
    )
    print(bar)
    return 0
