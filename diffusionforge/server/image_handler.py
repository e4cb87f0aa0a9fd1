"""Class-conditional (or unconditional) image models: digits, glyphs, image folders.

Image i of a request is drawn alone from seed `seed + i`, exactly as `diffusionforge sample`
draws it (pipelines.images), so a served PNG and `sample --like that.png` give the same bytes.
Each PNG carries the metadata that regenerates it; the checkpoint is named by its model id and
weights hash, never by its path on the server. img2img and inpainting take the image and mask
as base64 files in the JSON (server/uploads.py checks them) and go through the same Edit as
`sample --init-image --mask --strength --resample`, so they give the CLI's bytes too.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from diffusionforge import limits
from diffusionforge.core.draw import Edit
from diffusionforge.core.plan import Plan
from diffusionforge.core.samplers import SAMPLERS
from diffusionforge.core.schedules import SCHEDULES
from diffusionforge.pipelines.editing import DEFAULT_STRENGTH, image_tensor, mask_tensor
from diffusionforge.pipelines.images import (
    ImageRequest,
    draw,
    grid_record,
    image_record,
    save_with_metadata,
)
from diffusionforge.pipelines.pipeline import Pipeline, load_pipeline
from diffusionforge.plot import image_grid, to_pil
from diffusionforge.server.base import (
    ID_PATTERN,
    NFE_ALIAS,
    Handler,
    ModelEntry,
    RequestError,
    Run,
    model_kinds,
)
from diffusionforge.server.jobs import JobContext
from diffusionforge.server.settings import Limits
from diffusionforge.server.uploads import decode_image

SamplerName = Literal[tuple(SAMPLERS)]  # the registry is the list of choices
ScheduleName = Literal[tuple(SCHEDULES)]
MAX_SEED = limits.MAX_SEED  # seeds in [0, 2^32 - 1], as the CLI's (diffusionforge/limits.py)
MAX_GUIDANCE = 50.0
INIT_HELP = (
    "img2img: the image to start from, a PNG/JPEG/WebP file of the model's size in base64 "
    "(a data: URL too)"
)
MASK_HELP = "inpainting: a mask image of init_image's size, base64; white = generate, black = keep"
STRENGTH_HELP = (
    "img2img: the fraction of the schedule run from the noised image (0 keeps it, 1 ignores "
    "it); null: 0.6, or 1 with a mask"
)


class ImageParams(BaseModel):
    """Generate images from a class-conditional or unconditional image model."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    model: str = Field(pattern=ID_PATTERN, description="a model id from GET /api/models")
    class_: int | str | None = Field(
        None,
        alias="class",
        description="class index or name; null: the classes in turn (unconditional: null)",
    )
    guidance: float | None = Field(
        None, ge=0, le=MAX_GUIDANCE, allow_inf_nan=False, description="CFG scale (1: none)"
    )
    nfe: int | None = Field(
        None, ge=1, validation_alias=NFE_ALIAS, description="network evaluations per image"
    )
    sampler: SamplerName | None = Field(None, description="null: recommended for the NFE")
    schedule: ScheduleName | None = Field(None, description="null: recommended for the NFE")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="image i uses seed + i")
    n: int = Field(4, ge=1, description="number of images")
    size: int | None = Field(None, ge=1, description="image side; must be the model's own")
    init_image: str | None = Field(None, description=INIT_HELP)
    mask: str | None = Field(None, description=MASK_HELP)
    strength: float | None = Field(None, ge=0, le=1, allow_inf_nan=False, description=STRENGTH_HELP)
    resample: int = Field(0, ge=0, le=50, description="inpainting: RePaint resamplings per step")


class ImageHandler(Handler):
    name = "image"
    summary = "class-conditional image model"
    Params = ImageParams

    def accepts(self, config: dict) -> bool:
        kind, encoder = model_kinds(config)
        return kind != "autoencoder" and not encoder

    def describe(self, entry: ModelEntry) -> dict:
        # `shape` is the network's example (a latent's for latent models)
        header, sample = entry.config["diffusionforge"], entry.config.get("sample", {})
        nfe = int(sample.get("nfe", 16))
        return {
            "classes": [str(c) for c in header.get("classes") or []],
            "shape": list(header["example_shape"]),
            "defaults": {
                "nfe": nfe,
                "guidance": float(sample.get("guidance", 1.0)),
                "sampler": Plan.resolve(nfe).sampler,
            },
            "samplers": list(SAMPLERS),
            "schedules": list(SCHEDULES),
        }

    def load(self, path: Path) -> Pipeline:
        return load_pipeline(path)

    def prepare(self, params: ImageParams, entry: ModelEntry, limits: Limits) -> tuple[dict, Run]:
        info = self.describe(entry)
        classes = info["classes"]
        nfe = params.nfe if params.nfe is not None else info["defaults"]["nfe"]
        if nfe > limits.max_nfe:
            raise RequestError("nfe", f"at most {limits.max_nfe}, got {nfe}")
        if params.n > limits.max_n:
            raise RequestError("n", f"at most {limits.max_n} images per request, got {params.n}")
        if params.size is not None:
            if params.size > limits.max_image_side:
                raise RequestError("size", f"at most {limits.max_image_side}, got {params.size}")
            image_shape = entry.load().image_shape  # latent models: the decoded size
            if params.size != image_shape[-1]:
                raise RequestError(
                    "size", f"this model draws {image_shape[-1]}x{image_shape[-2]} images"
                )
        labels = labels_for(params.class_, classes, params.n)
        guidance = params.guidance if params.guidance is not None else info["defaults"]["guidance"]
        edit = edit_of(params, entry.load(), limits)
        # the pipeline's plan: its checkpoint's fitted schedule for the NFE when it has one
        inpainting = edit is not None and edit.mask is not None
        scale = guidance if labels else 1.0
        plan = entry.load().plan(
            nfe, params.sampler, params.schedule, inpainting=inpainting, guidance=scale
        )
        sampler, schedule = plan.sampler, plan.schedule
        req = ImageRequest(params.seed, labels, scale, plan, edit=edit)
        echo = {
            "class": params.class_,
            "n": params.n,
            "seed": params.seed,
            "guidance": req.guidance,
        }
        echo |= {"nfe": nfe, "sampler": sampler, "schedule": schedule}
        if edit is not None:  # the images' hashes, never their bytes, in the job status
            echo |= edit_echo(edit)

        def run(ctx: JobContext) -> None:
            _draw(entry.load(), entry.id, req, params.n, ctx)

        return echo, run


def edit_of(params, pipe: Pipeline, limits: Limits) -> Edit | None:
    """init_image/mask/strength/resample -> the Edit `sample` would build from the same files
    (cli/latent.edit_inputs), or None; RequestError naming the field otherwise."""
    if params.resample and params.mask is None:
        raise RequestError("resample", "resampling harmonises inpainting; send a mask too")
    if params.init_image is None:
        for name in ("mask", "strength"):
            if getattr(params, name) is not None:
                raise RequestError(name, "send the image to edit as init_image too")
        return None
    c, h, w = pipe.image_shape
    if not pipe.makes_images:
        raise RequestError("init_image", f"this model does not make images ({pipe.shape})")
    cap = limits.max_upload_bytes
    mode = "L" if c == 1 else "RGB"
    init = image_tensor(decode_image("init_image", params.init_image, (w, h), cap, mode), c)
    mask = None
    if params.mask is not None:
        mask = mask_tensor(image_tensor(decode_image("mask", params.mask, (w, h), cap, "L"), 1))
        if not bool((mask > 0.5).any()):
            raise RequestError(
                "mask", "all black: nothing to generate (white = generate, black = keep)"
            )
    default = 1.0 if mask is not None else DEFAULT_STRENGTH
    strength = default if params.strength is None else params.strength
    return Edit(init, strength, mask, params.resample)


def edit_echo(edit: Edit) -> dict:
    """What the job status and the PNGs record of an edit: its settings and the SHA-256 of the
    pixels it started from (float32 bytes), never the pixels themselves."""

    def sha(x: torch.Tensor | None) -> str | None:
        return None if x is None else hashlib.sha256(x.numpy().tobytes()).hexdigest()

    return {"strength": edit.strength, "resample": edit.resample} | {
        "init_sha256": sha(edit.init),
        "mask_sha256": sha(edit.mask),
    }


def labels_for(cls: int | str | None, classes: list[str], n: int) -> list[int] | None:
    if not classes:
        if cls is not None:
            raise RequestError("class", "this model is unconditional; leave class out")
        return None
    if cls is None:
        return [i % len(classes) for i in range(n)]
    if isinstance(cls, str):
        if cls not in classes:
            shown = ", ".join(classes[:12]) + (", ..." if len(classes) > 12 else "")
            raise RequestError("class", f"unknown class name (expected one of {shown})")
        return [classes.index(cls)] * n
    if not 0 <= cls < len(classes):
        raise RequestError("class", f"expected an index in [0, {len(classes) - 1}], got {cls}")
    return [cls] * n


def _draw(pipe: Pipeline, model_id: str, req: ImageRequest, n: int, ctx: JobContext) -> None:
    ctx.plan(n * req.plan.steps)
    images = draw(pipe, req, n, callback=ctx.step, check=ctx.check)  # as `sample` draws them
    records = [_record(pipe, model_id, req, i) for i in range(n)]
    cols = min(n, 8)
    grid_rec = grid_record(records[0], req, n)
    grid = image_grid(images, cols, value_range=(-1, 1))
    ctx.save(lambda p: save_with_metadata(grid, p, grid_rec), "png", "image/png", "grid", grid_rec)
    for image, rec in zip(images, records, strict=True):
        pil = to_pil(image)
        ctx.save(
            lambda p, im=pil, r=rec: save_with_metadata(im, p, r), "png", "image/png", "image", rec
        )


def _record(pipe: Pipeline, model_id: str, req: ImageRequest, index: int) -> dict:
    rec = image_record(pipe, req, index)
    rec.pop("checkpoint", None)  # a server path: name the model by id (and its weights by hash)
    return rec | {"model": model_id} | (edit_echo(req.edit) if req.edit is not None else {})
