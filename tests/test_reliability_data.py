"""Reliability of the dataset folders against hostile files (issue 14).

The bar: every bad entry is skipped with exactly one line naming it (never a traceback, never a
printed warning, never unbounded memory), and nothing that is not a regular file is ever opened:
a FIFO would block the scan forever and /dev/zero would never end. A guard alarm turns such a
hang into a failure instead of a stuck test run.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import warnings
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffusionforge.data import files as files_module
from diffusionforge.data.audio import AudioFolder, load_audio
from diffusionforge.data.captions import CaptionedImages
from diffusionforge.data.files import file_problem, regular_files
from diffusionforge.data.images import ImageFolder, resize_center_crop
from diffusionforge.data.text import read_text
from diffusionforge.errors import DataError, UserError


@contextmanager
def no_hang(seconds: int = 30):
    """Fail (rather than hang the suite) if the body blocks, e.g. by opening a FIFO."""

    def on_alarm(signum, frame):
        raise TimeoutError(f"blocked for {seconds} s: something opened a FIFO or device?")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _png(path: Path, width: int, height: int) -> None:
    """A valid grayscale PNG of any size, written without holding its pixels (a row of zeros
    compresses to almost nothing): how a 6 KB file can claim 50,000,000 x 1 pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = zlib.compressobj(9)
    raw = b"".join(rows.compress(b"\0" + bytes(width)) for _ in range(height)) + rows.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) +
                     chunk(b"IEND", b""))  # fmt: skip


def _zoo(folder: Path, suffix: str) -> list[str]:
    """Every kind of non-regular entry, named `*{suffix}` so a suffix filter keeps them."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []

    def add(name: str, make) -> None:
        make(folder / name)
        names.append(name)

    add(f"loop{suffix}", lambda p: os.symlink(p.name, p))  # points at itself: ELOOP
    add(f"dangling{suffix}", lambda p: os.symlink("no-such-file", p))
    add(f"fifo{suffix}", lambda p: os.mkfifo(p))
    add(f"zero{suffix}", lambda p: os.symlink("/dev/zero", p))
    add("parent-loop", lambda p: os.symlink("..", p))  # a folder link back up the tree
    sock_path = folder / f"sock{suffix}"
    if len(str(sock_path)) < 100:  # AF_UNIX paths are short
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(sock_path))
        s.close()
        names.append(sock_path.name)
    return names


def _one_line_each(lines: list[str], names: list[str]) -> None:
    for name in names:
        hits = [line for line in lines if f"/{name}" in line]
        assert len(hits) == 1, (name, lines)
        assert "\n" not in hits[0]


# --- sizes and shapes -------------------------------------------------------------------------


def test_a_50_million_by_1_png_is_skipped_with_one_line(tmp_path):
    _png(tmp_path / "c" / "line.png", 50_000_000, 1)
    assert (tmp_path / "c" / "line.png").stat().st_size < 200_000
    Image.new("L", (8, 8), 128).save(tmp_path / "c" / "ok.png")
    lines: list[str] = []
    ds = ImageFolder(tmp_path, 32, channels=1, report=lines.append)
    assert [p.name for p, _ in ds.samples] == ["ok.png"]
    ((path, why),) = ds.skipped
    assert path.name == "line.png" and "aspect ratio 50000000x1" in why
    assert sum("line.png" in line for line in lines) == 1


def test_max_aspect_is_raised_by_its_limit_and_the_resize_stays_bounded(tmp_path, monkeypatch):
    _png(tmp_path / "wide.png", 400, 2)  # 200:1
    lines: list[str] = []
    with pytest.raises(ValueError, match="no readable images"):
        ImageFolder(tmp_path, 8, channels=1, report=lines.append)
    assert "beyond max_aspect 16" in lines[0]
    monkeypatch.setenv("DIFFUSIONFORGE_MAX_IMAGE_ASPECT", "500")
    ds = ImageFolder(tmp_path, 8, channels=1, report=lines.append)
    assert ds.max_aspect == 500 and tuple(ds[0][0].shape) == (1, 8, 8)
    monkeypatch.setenv("DIFFUSIONFORGE_MAX_IMAGE_ASPECT", "many")
    with pytest.raises(UserError, match="DIFFUSIONFORGE_MAX_IMAGE_ASPECT"):
        ImageFolder(tmp_path, 8)
    # any caller of the resize: a 1,000,000 x 1 image never becomes 32,000,000 x 32
    im = Image.new("L", (1_000_000, 1), 255)
    out = resize_center_crop(im, 32)
    assert out.size == (32, 32) and np.asarray(out).min() == 255


def test_resize_of_a_moderate_aspect_is_unchanged_by_the_bound():
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 255, (8, 100), np.uint8))  # 12.5:1, under 16
    w, h = 8 * 100 // 8, 8
    expected = im.resize((w, h), Image.Resampling.BICUBIC).crop((46, 0, 54, 8))
    assert np.array_equal(np.asarray(resize_center_crop(im, 8)), np.asarray(expected))


def test_pillow_bomb_warning_is_our_one_line_not_a_printed_warning(tmp_path, monkeypatch, capfd):
    Image.new("L", (80, 80)).save(tmp_path / "between.png")  # 6400 px: Pillow warns (1x-2x)
    Image.new("L", (8, 8)).save(tmp_path / "ok.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    for max_pixels, skipped in ((5000, ["between.png"]), (6000, ["between.png"]), (10**9, [])):
        lines: list[str] = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = ImageFolder(tmp_path, 8, max_pixels=max_pixels, report=lines.append)
        assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
        assert [p.name for p, _ in ds.skipped] == skipped, max_pixels  # 10**9: raised on purpose
        if skipped:
            assert "decompression bomb" in ds.skipped[0][1]
            assert sum("between.png" in line for line in lines) == 1
    assert capfd.readouterr().err == ""


# --- entries that are not regular files -------------------------------------------------------


def test_image_folder_skips_every_non_regular_entry_with_one_line(tmp_path):
    root = tmp_path / "data"
    Image.new("RGB", (8, 8), "red").save(_mk(root / "cls" / "ok.png"))
    names = _zoo(root / "cls", ".png")
    lines: list[str] = []
    with no_hang():
        ds = ImageFolder(root, 8, report=lines.append)
    assert [p.name for p, _ in ds.samples] == ["ok.png"]
    assert sorted(p.name for p, _ in ds.skipped) == sorted(names)
    _one_line_each(lines, names)
    assert lines[-1].endswith(f"skipped {len(names)} of {len(names) + 1}")


def test_unreadable_class_folder_is_one_line(tmp_path, monkeypatch):
    root = tmp_path / "data"
    Image.new("RGB", (8, 8)).save(_mk(root / "a" / "ok.png"))
    Image.new("RGB", (8, 8)).save(_mk(root / "b" / "hidden.png"))
    _deny(root / "b", monkeypatch)
    lines: list[str] = []
    ds = ImageFolder(root, 8, report=lines.append)
    assert ds.classes == ["a", "b"] and [p.name for p, _ in ds.samples] == ["ok.png"]
    assert [(p.name, why.split(" (")[0]) for p, why in ds.skipped] == [
        ("b", "folder cannot be listed")
    ]
    _one_line_each(lines, ["b"])


def test_captioned_folder_and_lists_skip_non_regular_entries(tmp_path):
    root = tmp_path / "caps"
    Image.new("RGB", (8, 8)).save(_mk(root / "ok.png"))
    (root / "ok.txt").write_text("a black square")
    names = _zoo(root, ".png")
    os.mkfifo(root / "piped.txt")  # a sidecar that is a FIFO
    Image.new("RGB", (8, 8)).save(root / "piped.png")
    lines: list[str] = []
    with no_hang():
        ds = CaptionedImages(root, 8, report=lines.append)
        assert ds.captions == ["a black square"]
        _one_line_each(lines, [n for n in names if n != "parent-loop"] + ["piped.txt"])
        lines.clear()
        listing = tmp_path / "list.jsonl"
        rows = [{"file_name": f"caps/{n}", "text": "x"} for n in ["ok.png", *names]]
        listing.write_text("\n".join(map(__import__("json").dumps, rows)))
        ds = CaptionedImages(listing, 8, report=lines.append)
        assert len(ds) == 1
        _one_line_each(lines, names)
        os.mkfifo(tmp_path / "fifo.csv")
        with pytest.raises(DataError, match="FIFO"):
            CaptionedImages(tmp_path / "fifo.csv", 8)


def test_audio_folder_skips_non_regular_entries_and_load_audio_refuses_them(tmp_path, capsys):
    import soundfile as sf

    root = tmp_path / "audio"
    wave = np.sin(np.arange(800) / 5).astype(np.float32) * 0.5
    sf.write(_mk(root / "tone.wav"), wave, 8000)
    names = _zoo(root, ".wav")
    with no_hang():
        data = AudioFolder(root, 8000, 0.1)
        err = capsys.readouterr().err.splitlines()
        assert data.files == [root / "tone.wav"] and data.skipped == len(names)
        _one_line_each(err, names)
        for name in ("fifo.wav", "zero.wav", "loop.wav", "dangling.wav"):
            with pytest.raises(DataError) as e:
                load_audio(root / name, 8000)
            assert "\n" not in str(e.value) and name in str(e.value)


def test_text_folder_skips_non_regular_entries_and_refuses_a_fifo_file(tmp_path, capsys):
    root = tmp_path / "corpus"
    (_mk(root / "a.txt")).write_text("hello world")
    names = _zoo(root, ".txt")
    with no_hang():
        assert read_text(root) == ["hello world"]
        _one_line_each(capsys.readouterr().err.splitlines(), names)
        for name in ("fifo.txt", "zero.txt", "loop.txt", "dangling.txt"):
            with pytest.raises(DataError) as e:
                read_text(root / name)
            assert "\n" not in str(e.value)


def test_file_problem_names_each_kind(tmp_path):
    names = _zoo(tmp_path, ".x")
    (tmp_path / "plain.x").write_text("x")
    problems = {n: file_problem(tmp_path / n) for n in [*names, "plain.x"]}
    assert problems["plain.x"] is None
    assert "loop" in problems["loop.x"] and "dangling" in problems["dangling.x"]
    assert "FIFO" in problems["fifo.x"] and "character device" in problems["zero.x"]
    assert "folder" in problems["parent-loop"]
    lines: list[tuple[Path, str]] = []
    with no_hang():
        found = regular_files(tmp_path, lambda p, why: lines.append((p, why)))
    assert found == [tmp_path / "plain.x"] and len(lines) == len(names)


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _deny(folder: Path, monkeypatch) -> None:
    """Make `folder` unlistable the same way for every user (root ignores chmod 0): scandir
    refuses it as the kernel would."""
    real = os.scandir

    def scandir(path=".", *args):
        if Path(path) == folder:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args)

    monkeypatch.setattr(files_module.os, "scandir", scandir)


# --- spoken digits: the same clip on a fresh machine ------------------------------------------


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_spoken_digit_clip_is_the_same_on_a_fresh_home(tmp_path, monkeypatch):
    """The flaky CI failure: on a fresh machine (no PulseAudio runtime folder in HOME) the
    first espeak-ng call let libpulse reseed rand(), so the first "f2" clip (breath noise)
    differed from every later one. Each call here gets a HOME of its own, as on fresh clones."""
    from diffusionforge.data.spoken_digits import speak

    clips = []
    for k in range(3):
        home = tmp_path / f"home{k}"
        home.mkdir()
        monkeypatch.setenv("HOME", str(home))
        for name in ("XDG_RUNTIME_DIR", "PULSE_RUNTIME_PATH", "PULSE_SERVER"):
            monkeypatch.delenv(name, raising=False)  # as on a fresh login: nothing set up
        clips.append(speak("seven", "en-us+f2", 160, 50, 8000))
        assert not any(home.iterdir())  # the audio system was never set up
    assert all(torch.equal(clips[0], c) for c in clips[1:])  # unfixed: 3 different clips


def test_audio_longer_than_the_values_limit_is_refused_from_its_header(tmp_path, monkeypatch):
    import soundfile as sf

    sf.write(_mk(tmp_path / "a" / "short.wav"), np.zeros(400, np.float32), 8000)
    sf.write(tmp_path / "a" / "long.wav", np.zeros((3000, 2), np.float32), 8000)
    monkeypatch.setenv("DIFFUSIONFORGE_MAX_VALUES", "5000")  # long.wav: 6,000 values
    with pytest.raises(DataError, match="above the limit of 5,000 values") as e:
        load_audio(tmp_path / "a" / "long.wav", 8000)
    assert "\n" not in str(e.value) and "DIFFUSIONFORGE_MAX_VALUES" in str(e.value)
    data = AudioFolder(tmp_path / "a", 8000, 0.05)
    assert [f.name for f in data.files] == ["short.wav"] and data.skipped == 1


def test_an_image_replaced_by_a_fifo_after_the_scan_is_skipped_not_opened(tmp_path):
    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8), "blue").save(tmp_path / name)
    lines: list[str] = []
    ds = ImageFolder(tmp_path, 8, report=lines.append)
    (tmp_path / "a.png").unlink()
    os.mkfifo(tmp_path / "a.png")
    with no_hang():
        image, _ = ds[0]  # a.png is now a FIFO: reported, and b.png stands in
    assert image.shape == (3, 8, 8) and any("a.png" in line and "FIFO" in line for line in lines)


# --- JSONL pairs files (data/pairs.py) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deep"),
        (b'{"prompt": "\\ud800 x", "response": "y"}', "lone surrogate"),
        (b'{"prompt": "x", "response": "\\udcff"}', "lone surrogate"),
        (b'{"prompt": "\xff", "response": "y"}', "not UTF-8"),
        (b'{"prompt": 5, "response": "y"}', "must be a string"),
    ],
    ids=["deep", "surrogate-prompt", "surrogate-response", "not-utf8", "number"],
)
def test_a_bad_pairs_line_is_one_line_naming_it(tmp_path, line, needle):
    from diffusionforge.data.pairs import read_pairs
    from diffusionforge.errors import DataError

    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b'{"prompt": "a", "response": "b"}\n' + line + b"\n")
    with pytest.raises(DataError) as e:
        read_pairs(path)
    assert f"{path}:2" in str(e.value) and needle in str(e.value)
    assert "\n" not in str(e.value)


def test_a_pairs_file_above_the_size_bound_is_not_read(tmp_path, monkeypatch):
    from diffusionforge.data import pairs
    from diffusionforge.errors import DataError

    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b'{"prompt": "a", "response": "b"}\n' * 100)
    monkeypatch.setattr(pairs, "_MAX_PAIRS_BYTES", 1000)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("read"))
    with pytest.raises(DataError, match="above the 1,000"):
        pairs.read_pairs(path)
