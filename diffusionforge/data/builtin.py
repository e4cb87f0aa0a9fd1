"""Built-in small image datasets: ``digits`` (real handwriting) and ``glyphs`` (system fonts).

Both are grayscale with the ink bright: ink -> +1, background -> -1, like MNIST.
"""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from diffusionforge.data.images import ArrayImages

GLYPH_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
FONT_DIRS = ("/usr/share/fonts",)
# Fonts whose letters are not letters (symbol/dingbat/music/math alphabets map A to other shapes).
_NOT_TEXT_FONTS = ("symbol", "dingbat", "d050000l", "music", "math", "emoji")
_GLYPHS_VERSION = 1  # bump when rendering changes, so stale caches are not reused


def cache_dir() -> Path:
    """``$DIFFUSIONFORGE_CACHE`` if set, else ``~/.cache/diffusionforge``."""
    env = os.environ.get("DIFFUSIONFORGE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "diffusionforge"


def load_digits(size: int = 8) -> ArrayImages:
    """scikit-learn's bundled 8x8 handwritten digits: 1,797 images, 10 classes, (1, 8, 8).

    Pixels are 0..16 ink counts, mapped linearly to [-1, 1]. The UNet runs at 8x8 directly
    (levels 8 -> 4 -> 2), so no padding is needed; ``size`` (a multiple of 8) upsamples with
    nearest neighbour for networks or viewers that want more pixels, keeping the exact values.
    """
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as e:
        raise ImportError("the digits dataset needs scikit-learn: pip install scikit-learn") from e
    bunch = sk_load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 8.0 - 1.0)[:, None]  # (N,1,8,8)
    if size != 8:
        images = F.interpolate(images, scale_factor=size // 8, mode="nearest")
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    return ArrayImages(images, labels, classes=[str(d) for d in range(10)])


def find_fonts(dirs: tuple[str, ...] = FONT_DIRS) -> list[Path]:
    """Sorted .ttf/.otf files under ``dirs``, minus symbol-type fonts (see _NOT_TEXT_FONTS)."""
    paths = []
    for d in dirs:
        for p in Path(d).rglob("*"):
            if p.suffix.lower() in (".ttf", ".otf") and not any(
                word in p.name.lower() for word in _NOT_TEXT_FONTS
            ):
                paths.append(p)
    return sorted(paths)


def render_font(path: Path, chars: str = GLYPH_CHARS) -> np.ndarray | None:
    """Render ``chars`` at 64x64 (2x supersampled), ink 255: uint8 (len(chars), 64, 64).

    Every font is scaled so its capital H is 36 px tall and drawn on a common baseline at y=48,
    each glyph centred horizontally on its ink. Keeping the font's own proportions (rather than
    stretching each glyph to fill the box) is what tells 'o' from 'O' and 'x' from 'X'.
    Returns None when the font lacks one of the characters (it would draw its .notdef box) or
    cannot be read.
    """
    try:
        probe = ImageFont.truetype(str(path), 64)
        missing = bytes(probe.getmask(chr(0xFFFF)))  # a code point no font maps: .notdef
        _, top, _, bottom = probe.getbbox("H", anchor="ls")
        if bottom - top <= 0:
            return None
        font = ImageFont.truetype(str(path), max(8, round(64 * 36 / (bottom - top))))
    except OSError:
        return None
    out = np.zeros((len(chars), 64, 64), dtype=np.uint8)
    for i, ch in enumerate(chars):
        if bytes(probe.getmask(ch)) == missing:
            return None
        x0, _, x1, _ = font.getbbox(ch, anchor="ls")
        if x1 <= x0:
            return None  # maps to an empty glyph
        im = Image.new("L", (64, 64), 0)
        ImageDraw.Draw(im).text((32 - (x0 + x1) / 2, 48), ch, fill=255, font=font, anchor="ls")
        out[i] = np.asarray(im)
    return out


def _augment(glyph: np.ndarray, rng: np.random.Generator, jitter: bool) -> np.ndarray:
    """64x64 glyph -> 32x32: scale in [0.85, 1.1] about the centre and shift up to 2 px."""
    s, dx, dy = (rng.uniform(0.85, 1.1), *rng.uniform(-4, 4, size=2)) if jitter else (1.0, 0, 0)
    # Image.transform maps output -> input coordinates: x_in = (x_out - 32 - dx) / s + 32.
    coeffs = (1 / s, 0, 32 - (32 + dx) / s, 0, 1 / s, 32 - (32 + dy) / s)
    im = Image.fromarray(glyph).transform(
        (64, 64), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR
    )
    return np.asarray(im.resize((32, 32), Image.Resampling.BOX))


def build_glyphs(
    fonts: list[Path], copies: int = 4, seed: int = 0, chars: str = GLYPH_CHARS
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Render every usable font: uint8 images (N, 32, 32), int64 labels (N,), font names used.

    Copy 0 of each glyph is unjittered; copies 1.. get a scale/shift drawn from a generator
    seeded by (seed, font index, copy), so the set is the same on every machine with the same
    fonts. Fonts whose renders are byte-identical to an earlier one (Noto's script fonts reuse
    one Latin design) are dropped so no design is over-counted.
    """
    images, labels, used, seen = [], [], [], set()
    for f, path in enumerate(fonts):
        rendered = render_font(path, chars)
        if rendered is None:
            continue
        digest = hashlib.sha256(rendered.tobytes()).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        used.append(path.name)
        for c in range(copies):
            rng = np.random.default_rng([seed, f, c])
            for k in range(len(chars)):
                images.append(_augment(rendered[k], rng, jitter=c > 0))
                labels.append(k)
    if not images:
        raise ValueError(f"no usable .ttf/.otf fonts found (looked at {len(fonts)} files)")
    return np.stack(images), np.asarray(labels, dtype=np.int64), used


def load_glyphs(
    copies: int = 4, seed: int = 0, fonts: list[Path] | None = None, cache: Path | None = None
) -> ArrayImages:
    """Letters and digits (62 classes: 0-9, A-Z, a-z) from the installed fonts, 32x32, 1 channel.

    The rendered array is cached as .npy under ``cache_dir()`` keyed by the font files and the
    parameters; delete the folder to re-render. Some classes look alike in many typefaces
    (l / I / 1, O / 0 / o): a classifier's ceiling on this set is below 100%.
    """
    fonts = find_fonts() if fonts is None else sorted(fonts)
    meta = [str(_GLYPHS_VERSION), GLYPH_CHARS, str(copies), str(seed)]
    meta += [f"{p}:{p.stat().st_size}" for p in fonts]
    key = hashlib.sha256("\n".join(meta).encode()).hexdigest()[:16]
    folder = (cache or cache_dir()) / f"glyphs-{key}"
    if not (folder / "labels.npy").exists():
        images, labels, used = build_glyphs(fonts, copies, seed)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "fonts.json").write_text(json.dumps(used, indent=1))
        # Write-then-rename so a concurrent reader never sees half a file; labels go last
        # because their presence marks a complete cache.
        for name, array in (("images", images), ("labels", labels)):
            tmp = folder / f"{name}.{os.getpid()}.tmp.npy"
            np.save(tmp, array)
            os.replace(tmp, folder / f"{name}.npy")
    return ArrayImages.from_npy(
        folder / "images.npy", folder / "labels.npy", classes=list(GLYPH_CHARS)
    )


# The built-in datasets by name; each returns an ArrayImages of (image, label) pairs.
BUILTIN_DATASETS = {"digits": load_digits, "glyphs": load_glyphs}
