"""Image datasets: a folder of image files, and in-memory arrays (``.npy`` or built-in sets).

Every dataset returns ``(image, label)`` with ``image`` a float32 tensor (C, H, W) in [-1, 1].

Folder policy (each rule is tested in tests/test_data_images.py):

- **Labels**: if the root has sub-folders, each top-level sub-folder is a class (sorted names ->
  0, 1, ...) and everything below it belongs to that class; files lying directly in the root are
  then skipped ("not in a class folder"). With no sub-folders the set is unlabelled (label 0).
- **Resize/crop**: the shorter side is resized to ``size`` (bicubic, which Pillow antialiases
  when shrinking), then the centre ``size`` x ``size`` square is cropped. Small images, 1x1
  included, are upscaled by the same rule (a 1x1 image becomes a flat colour) unless their
  shorter side is below ``min_side``, in which case they are skipped.
- **Modes**: ``channels=3`` converts everything to RGB, ``channels=1`` to L (luma, ITU-R 601).
  Transparency (RGBA, LA, palette with transparency) is composited over white, so dark art on
  a transparent background stays visible. 16-bit grayscale (I;16, I) is scaled by 1/257 to
  8 bits, not clipped; 32-bit float (F) is taken as 0..255 and clipped. CMYK uses Pillow's
  plain conversion (no ICC profile).
- **Bad files** are skipped, counted in ``skipped`` and reported with one line naming the file:
  non-images, truncated or corrupt files (each file is verified and fully decoded once when the
  dataset is built; with ``check="header"``, for folders streamed from disk, only the header is
  read then and a file that fails to decode later is replaced as below), decompression bombs
  (more than ``max_pixels`` pixels, default
  ``limit("image_pixels")``, Pillow's 89,478,485; Pillow's own DecompressionBombWarning becomes
  this one line, not a printed warning) and images whose long side is more than ``max_aspect``
  (default ``limit("image_aspect")``, 16) times the short one (a 50,000,000 x 1 PNG is 6 KB
  and under the pixel limit, but resizing its short side to ``size`` would make it 1.6e9
  pixels long). Both limits are read from the image header before any pixel is decoded, and
  raised with DIFFUSIONFORGE_MAX_IMAGE_PIXELS / DIFFUSIONFORGE_MAX_IMAGE_ASPECT (Pillow itself
  still refuses more than twice its own limit). A file that breaks later (changed on disk) is
  reported from ``__getitem__`` and replaced by the next readable index rather than crashing a
  worker.
- **Anything that is not a regular file** (dangling symlink, symlink loop, FIFO, socket, device
  such as a symlink to ``/dev/zero``, a folder that cannot be listed) is skipped with the same
  one line, found by ``os.stat`` and never opened (``data/files.py``).
- **An empty folder** (or one with no readable image) raises one ``ValueError`` line naming it.

Random horizontal flips are a pure function of ``(seed, epoch, index)`` (see ``flip_decision``);
call ``set_epoch`` before each epoch, as with ``DistributedSampler`` (DataLoader workers get a
fresh copy of the dataset each epoch unless ``persistent_workers=True``).
"""

import math
import sys
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from diffusionforge.data.arrays import check_npy_header
from diffusionforge.data.files import FileList, class_folders, file_problem, regular_files
from diffusionforge.limits import limit

# Long side / short side that resize_center_crop resizes at most (it trims longer images
# first: the ends it trims are cropped away anyway). Folders skip beyond limit("image_aspect").
MAX_ASPECT = 16.0
AUTO_SIDES = (8, 16, 32, 64)  # what size=0 (data.image_size = 0) picks from (auto_side)


def flip_decision(seed: int, epoch: int, index: int) -> bool:
    """A fair coin that depends only on its arguments (SeedSequence hashes them), never on RNG."""
    return bool(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0] & 1)


def auto_side(sizes: Counter) -> int:
    """The training side for images of these (w, h) sizes: the short side of the most common
    size, rounded down to 8, 16, 32 or 64 (U-Nets halve it twice or more; 64 is CPU-sized)."""
    (w, h), _ = sizes.most_common(1)[0]
    return max([s for s in AUTO_SIDES if s <= min(w, h)] or [AUTO_SIDES[0]])


def _report(line: str) -> None:
    print(line, file=sys.stderr)


def to_mode(im: Image.Image, channels: int) -> Image.Image:
    """Convert any Pillow mode to RGB (channels=3) or L (channels=1) by the policy above."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # Pillow's convert("L") clips 16-bit values at 255; rescale the full range instead.
        arr = np.asarray(im, dtype=np.float64) / 257.0
        im = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
    return im.convert("RGB" if channels == 3 else "L")


def resize_center_crop(im: Image.Image, size: int) -> Image.Image:
    """Shorter side to ``size`` (bicubic), then the centre square of side ``size``.

    An image longer than ``MAX_ASPECT`` times its short side first loses the ends of its long
    side (which the final crop drops anyway), so the resized image is never more than
    ``MAX_ASPECT * size`` pixels long whatever the input's shape."""
    w, h = im.size
    if max(w, h) > MAX_ASPECT * min(w, h):
        keep = math.ceil(MAX_ASPECT * min(w, h))
        left, top = max(0, (w - keep) // 2), max(0, (h - keep) // 2)
        im = im.crop((left, top, left + min(w, keep), top + min(h, keep)))
        w, h = im.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    im = im.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return im.crop((left, top, left + size, top + size))


def pil_to_tensor(im: Image.Image) -> Tensor:
    """uint8 Pillow image -> float32 (C, H, W) in [-1, 1]."""
    arr = np.asarray(im, dtype=np.float32)
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr.transpose(2, 0, 1) / 127.5 - 1.0)


class ImageFolder(Dataset):
    """A recursive folder of images; see the module docstring for the full input policy."""

    def __init__(
        self,
        root: str | Path,
        size: int,
        channels: int = 3,
        hflip: bool = False,
        seed: int = 0,
        min_side: int = 1,
        max_pixels: int | None = None,
        max_aspect: float | None = None,
        report: Callable[[str], None] = _report,
        check: str = "full",
    ) -> None:
        self.root, self.size, self.channels = Path(root), size, channels
        self.full_check = check == "full"  # "header": sizes from headers, pixels decoded later
        self.hflip, self.seed, self.epoch = hflip, seed, 0
        self.min_side = min_side
        self.max_pixels = max_pixels if max_pixels is not None else limit("image_pixels")
        self.max_aspect = max_aspect if max_aspect is not None else limit("image_aspect")
        self.report = report
        if not self.root.is_dir():
            raise ValueError(f"{self.root}: not a directory")
        class_dirs = class_folders(self.root)
        self.classes = [p.name for p in class_dirs]
        self.skipped: list[tuple[Path, str]] = []
        self.samples = FileList(self.root)  # (path, label): about 250 bytes a file
        self.sizes: Counter[tuple[int, int]] = Counter()  # (w, h) of the usable images
        for path in regular_files(self.root, self._skip):
            rel = path.relative_to(self.root)
            if self.classes and len(rel.parts) == 1:
                self._skip(path, "not in a class folder")
                continue
            label = self.classes.index(rel.parts[0]) if self.classes else 0
            problem = self._check(path)
            if problem:
                self._skip(path, problem)
            else:
                self.samples.append((path, label))
                self.sizes[self._last_size] += 1
        if not self.samples:
            raise ValueError(f"{self.root}: no readable images found (skipped {len(self.skipped)})")
        picked = ""
        if not size:  # the side from the data: the short side of its most common size
            self.size = size = auto_side(self.sizes)
            picked = ", picked from the data"
        other = [(n, wh) for wh, n in self.sizes.most_common() if wh != (size, size)]
        if other:  # never resize without a word: say what happens and how to change it
            (n, (w, h)), more = other[0], len(other) - 1
            also = f" and {more} other size(s)" if more else ""
            report(
                f"{self.root}: images are {w}x{h} ({n} image(s){also}); training at "
                f"{size}x{size}{picked} (centre crop after resizing the short side) - set "
                "data.image_size to change"
            )
        if self.skipped:
            report(f"{self.root}: skipped {len(self.skipped)} of {len(self.skipped) + len(self)}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _skip(self, path: Path, why: str) -> None:
        self.skipped.append((path, why))
        self.report(f"skipping {path}: {why}")

    def _size_problem(self, w: int, h: int) -> str | None:
        """Why an image of this header size is refused before decoding (None: it is not)."""
        if w * h > self.max_pixels:
            return f"decompression bomb ({w}x{h} > {self.max_pixels} px)"
        if max(w, h) > self.max_aspect * max(1, min(w, h)):
            return f"aspect ratio {w}x{h} beyond max_aspect {self.max_aspect:g}"
        return None

    def _bomb_warning(self) -> str:
        """Pillow's bomb warning is an error up to its own limit; a max_pixels raised beyond
        it (DIFFUSIONFORGE_MAX_IMAGE_PIXELS) silences it (Pillow still refuses 2x its limit)."""
        return "error" if self.max_pixels <= Image.MAX_IMAGE_PIXELS else "ignore"

    def _open(self, path: Path) -> Image.Image:
        """Open and fully decode one file; raise ValueError with the reason if it is unusable."""
        # Pillow's bomb warning (between 1x and 2x MAX_IMAGE_PIXELS) is reported in our one line
        # rather than printed. Truncated files raise as long as ImageFile.LOAD_TRUNCATED_IMAGES
        # keeps its default.
        problem = file_problem(path)  # replaced by a FIFO or device since the scan: never open
        if problem is not None:
            raise ValueError(problem)
        with warnings.catch_warnings():
            warnings.simplefilter(self._bomb_warning(), Image.DecompressionBombWarning)
            try:
                with Image.open(path) as im:
                    problem = self._size_problem(*im.size)
                    if problem:
                        raise ValueError(problem)
                    im.load()
                    return im.copy()
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
                raise ValueError(f"decompression bomb ({e})") from e
            except Image.UnidentifiedImageError as e:
                raise ValueError("not an image") from e
            except (OSError, SyntaxError, EOFError) as e:
                # Pillow reports truncation and corrupt streams as OSError/SyntaxError.
                raise ValueError(f"corrupt or truncated image ({e})") from e

    def _check(self, path: Path) -> str | None:
        if not getattr(self, "full_check", True):  # CaptionedImages scans in full
            return self._check_header(path)
        try:
            # verify() checks structure and checksums (PNG CRCs) that load() may not; it leaves
            # the file unusable, so _open reopens and decodes every pixel. The size limits are
            # checked first, from the header, and Pillow's bomb warning is ours to report.
            with warnings.catch_warnings():
                warnings.simplefilter(self._bomb_warning(), Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    problem = self._size_problem(*im.size)
                    if problem:
                        return problem
                    im.verify()
            im = self._open(path)
        except ValueError as e:
            return str(e)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            return f"decompression bomb ({e})"
        except Image.UnidentifiedImageError:
            return "not an image"
        except Exception as e:  # any decoder failure is a bad file, not a crash
            return f"unreadable image ({type(e).__name__}: {e})"
        if min(im.size) < self.min_side:
            return f"too small ({im.size[0]}x{im.size[1]} < min_side {self.min_side})"
        self._last_size = im.size
        return None

    def keep_verified(self) -> None:
        """After a header scan: verify and decode every file in full, as check="full" does,
        and drop (with the one line each) those that fail. A no-op after a full scan."""
        if self.full_check:
            return
        self.full_check, before = True, len(self.skipped)
        kept = FileList(self.root)
        for path, label in self.samples:
            problem = self._check(path)
            if problem:
                self._skip(path, problem)
            else:
                kept.append((path, label))
        self.samples = kept
        if not kept:
            raise ValueError(f"{self.root}: no readable images found (skipped {len(self.skipped)})")
        if len(self.skipped) > before:
            self.report(
                f"{self.root}: skipped {len(self.skipped)} of {len(self.skipped) + len(self)}"
            )

    def _check_header(self, path: Path) -> str | None:
        """The size limits and min_side from the header only; pixels are decoded on use."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter(self._bomb_warning(), Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    size = im.size
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            return f"decompression bomb ({e})"
        except Image.UnidentifiedImageError:
            return "not an image"
        except Exception as e:  # any header failure is a bad file, not a crash
            return f"unreadable image ({type(e).__name__}: {e})"
        problem = self._size_problem(*size)
        if problem:
            return problem
        if min(size) < self.min_side:
            return f"too small ({size[0]}x{size[1]} < min_side {self.min_side})"
        self._last_size = size
        return None

    def load(self, index: int) -> Tensor:
        """Decode, convert and resize one image (no flip): float32 (C, size, size) in [-1, 1]."""
        im = resize_center_crop(
            to_mode(self._open(self.samples[index][0]), self.channels), self.size
        )
        return pil_to_tensor(im)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        for attempt in range(len(self)):
            i = (index + attempt) % len(self)
            try:
                image = self.load(i)
            except Exception as e:  # a file changed after the scan: never crash
                self._skip(self.samples[i][0], f"failed at load time ({e})")
                continue
            if self.hflip and flip_decision(self.seed, self.epoch, index):
                image = image.flip(-1)
            return image, self.samples[i][1]
        raise ValueError(f"{self.root}: no image could be read any more")


class ArrayImages(Dataset):
    """In-memory images: float32 (N, C, H, W) in [-1, 1] and int labels (N,).

    ``from_uint8`` takes the usual array layouts (N, H, W) or (N, H, W, C) in 0..255, which is
    what ``np.save`` of a stack of Pillow images gives; ``from_npy`` loads such files without
    unpickling anything.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor | None = None,
        classes: list[str] | None = None,
        hflip: bool = False,
        seed: int = 0,
    ) -> None:
        self.images = images
        self.labels = labels if labels is not None else torch.zeros(len(images), dtype=torch.long)
        self.classes = classes or []
        self.hflip, self.seed, self.epoch = hflip, seed, 0

    @classmethod
    def from_uint8(cls, array: np.ndarray, labels: np.ndarray | None = None, **kw) -> "ArrayImages":
        arr = array[..., None] if array.ndim == 3 else array
        if array.dtype != np.uint8 or arr.ndim != 4 or arr.shape[3] not in (1, 3):
            raise ValueError(
                f"expected uint8 (N,H,W) or (N,H,W,C), C 1 or 3; got {array.dtype} {array.shape}"
            )
        images = torch.from_numpy(arr.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0)
        lab = None if labels is None else torch.from_numpy(np.asarray(labels, dtype=np.int64))
        return cls(images.contiguous(), lab, **kw)

    @classmethod
    def from_npy(
        cls, images_path: str | Path, labels_path: str | Path | None = None, **kw
    ) -> "ArrayImages":
        def _load(path: str | Path) -> np.ndarray:

            check_npy_header(Path(path))  # shape and size from the header, before reading
            try:
                return np.load(path, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise ValueError(f"{path}: not a readable .npy array ({e})") from e

        labels = None if labels_path is None else _load(labels_path)
        images = _load(images_path)
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{labels_path}: {len(labels)} labels for {len(images)} images")
        return cls.from_uint8(images, labels, **kw)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image = self.images[index]
        if self.hflip and flip_decision(self.seed, self.epoch, index):
            image = image.flip(-1)
        return image, int(self.labels[index])
