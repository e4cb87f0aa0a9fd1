"""Image models: sample to a PNG grid plus single PNGs whose metadata regenerates them.

Each image i is drawn alone (batch of one, its own generator seeded `seed + i`), so it is a
function of its metadata only: seed, class, guidance, sampler, schedule, NFE, the weights file
(by SHA-256) and the torch thread count (CPU kernels sum in a thread-dependent order). Drawing
images in batches would be faster, but batched convolutions differ from single ones in the last
bits, and "regenerate bit for bit" is the promise here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, PngImagePlugin
from torch import Tensor

from diffusionforge.core.draw import Edit
from diffusionforge.core.plan import Plan
from diffusionforge.pipelines.pipeline import Pipeline

META_KEY = "diffusionforge"  # PNG text chunk holding the JSON record; plain keys mirror it


@dataclass
class ImageRequest:
    seed: int  # image i uses seed + i
    labels: list[int] | None  # one label per image, or None (unconditional)
    guidance: float
    plan: Plan  # resolved: the metadata names the sampler and schedule that ran
    device: str = "cpu"
    edit: Edit | None = None  # img2img / inpainting

    @property
    def nfe(self) -> int:
        return self.plan.nfe

    @property
    def sampler(self) -> str:
        return self.plan.sampler

    @property
    def schedule(self) -> str:
        return self.plan.schedule


def weights_sha256(pipe: Pipeline) -> str:
    return hashlib.sha256(pipe.checkpoint.files[f"{pipe.weights}.safetensors"]).hexdigest()


def draw(
    pipe: Pipeline, req: ImageRequest, n: int, progress=None, callback=None, check=None
) -> Tensor:
    """n images (n, C, H, W) in [-1, 1], image i drawn alone from seed req.seed + i.
    `progress(i)` after image i, `callback` per sampler step, `check()` before each image (a
    server job's cancellation point)."""
    out = []
    for i in range(n):
        if check:
            check()
        labels = None if req.labels is None else torch.tensor([req.labels[i]])
        out.append(
            pipe.generate_images(
                [req.seed + i],
                labels=labels,
                guidance=req.guidance,
                plan=req.plan,
                device=req.device,
                edit=req.edit,
                callback=callback,
            )
        )
        if progress:
            progress(i + 1)
    return torch.cat(out)


def image_record(pipe: Pipeline, req: ImageRequest, index: int) -> dict:
    label = None if req.labels is None else req.labels[index]
    return {
        "seed": req.seed + index,  # the seed of this image alone (--seed S --n 1 regenerates it)
        "batch_seed": req.seed,
        "index": index,
        "class": label,
        "class_name": None if label is None else pipe.classes[label],
        "guidance": req.guidance,
        "sampler": req.sampler,
        "schedule": req.schedule,
        "nfe": req.nfe,
        "weights": pipe.weights,
        "checkpoint_sha256": weights_sha256(pipe),
        "checkpoint": str(pipe.checkpoint.path),
        "step": pipe.checkpoint.step,
        "threads": torch.get_num_threads(),
        "device": req.device,
        "torch": torch.__version__,
        # img2img / inpainting: the result also depends on the input image and mask
        "edited": req.edit is not None,
        "strength": req.edit.strength if req.edit else None,
    }


def grid_record(first: dict, req: ImageRequest, n: int, names: list[str] | None = None) -> dict:
    """A grid's record: its first image's, for the whole batch (seed, count, and in "class"
    every class it shows, in order; "classes" is the class of each image)."""
    rec = {k: v for k, v in first.items() if k != "index"}
    shown = None if req.labels is None else list(dict.fromkeys(req.labels[:n]))
    named = None if shown is None or names is None else [names[c] for c in shown]
    return rec | {
        "seed": req.seed,
        "count": n,
        "classes": req.labels,
        "class": shown,
        "class_name": named,
    }


def _pnginfo(record: dict) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text(META_KEY, json.dumps(record, sort_keys=True))
    for key, value in record.items():  # readable by any PNG viewer's "text chunks" panel
        if not isinstance(value, (list, dict)):
            info.add_text(key, "" if value is None else str(value))
    return info


def save_with_metadata(image: Image.Image, path: Path, record: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    image.save(tmp, format="PNG", pnginfo=_pnginfo(record))
    tmp.replace(path)
    return path


def read_metadata(path: str | Path) -> dict:
    """The JSON record of a PNG written here; ValueError naming the file otherwise."""
    try:
        with Image.open(path) as im:
            text = im.text.get(META_KEY) if hasattr(im, "text") else None
    except (OSError, SyntaxError) as e:
        raise ValueError(f"{path}: not a readable PNG ({e})") from None
    if not text:
        raise ValueError(f"{path}: no diffusionforge metadata in this PNG")
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(f"{path}: diffusionforge metadata is not valid JSON") from None
    missing = {"seed", "class", "guidance", "sampler", "schedule", "nfe"} - set(record)
    if missing:
        raise ValueError(f"{path}: metadata lacks {', '.join(sorted(missing))}")
    return record
