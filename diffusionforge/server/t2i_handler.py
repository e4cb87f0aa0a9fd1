"""Text-to-image models: a prompt (and a negative prompt) in, PNGs out.

Runs `load_text2image(path).generate` as `diffusionforge generate` does: image i from its own
generator seeded `seed + i`, classifier-free guidance with the negative prompt as the
unconditional branch, the sampler's callback as the progress. Unknown words and cut prompts
come back as warnings in the job status, found before the job is queued. img2img and
inpainting take the image and mask as base64 files in the JSON (server/uploads.py checks them),
read into the tensors `generate --init-image --mask` reads, so they give the CLI's bytes too.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from diffusionforge.core.plan import Plan
from diffusionforge.core.samplers import SAMPLERS
from diffusionforge.pipelines.images import save_with_metadata
from diffusionforge.pipelines.text2image import Text2ImagePipeline, load_text2image
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
from diffusionforge.server.image_handler import (
    INIT_HELP,
    MASK_HELP,
    MAX_GUIDANCE,
    MAX_SEED,
    STRENGTH_HELP,
    SamplerName,
    ScheduleName,
)
from diffusionforge.server.jobs import JobContext
from diffusionforge.server.settings import Limits
from diffusionforge.server.uploads import decode_image

DEFAULT_NFE, DEFAULT_GUIDANCE = 20, 1.0  # `diffusionforge generate`'s defaults


class Text2ImageParams(BaseModel):
    """Generate images from a text prompt."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(pattern=ID_PATTERN, description="a model id from GET /api/models")
    prompt: str = Field(description="what to draw, e.g. 'two red circles left of a blue square'")
    negative_prompt: str = Field("", description="the unguided branch (default: empty caption)")
    guidance: float = Field(DEFAULT_GUIDANCE, ge=0, le=MAX_GUIDANCE, allow_inf_nan=False)
    nfe: int = Field(
        DEFAULT_NFE, ge=1, validation_alias=NFE_ALIAS, description="network evaluations per image"
    )
    sampler: SamplerName | None = Field(None, description="null: recommended for the NFE")
    schedule: ScheduleName | None = Field(None, description="null: recommended for the NFE")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="image i uses seed + i")
    n: int = Field(4, ge=1, description="number of images")
    init_image: str | None = Field(None, description=INIT_HELP)
    mask: str | None = Field(None, description=MASK_HELP)
    strength: float | None = Field(None, gt=0, le=1, allow_inf_nan=False, description=STRENGTH_HELP)


class Text2ImageHandler(Handler):
    name = "text2image"
    summary = "text-to-image model"
    Params = Text2ImageParams

    def accepts(self, config: dict) -> bool:
        kind, encoder = model_kinds(config)
        return kind != "autoencoder" and bool(encoder)

    def describe(self, entry: ModelEntry) -> dict:

        header, data = entry.config["diffusionforge"], entry.config.get("data", {})
        shape = list(header["example_shape"])
        if data.get("autoencoder"):  # a latent model: the example is a latent; images are RGB
            shape = [3, int(data.get("image_size", 0)), int(data.get("image_size", 0))]
        return {
            "shape": shape,
            "defaults": {"nfe": DEFAULT_NFE, "guidance": DEFAULT_GUIDANCE},
            "samplers": list(SAMPLERS),
        }

    def load(self, path: Path) -> Text2ImagePipeline:
        return load_text2image(path)

    def prepare(
        self, params: Text2ImageParams, entry: ModelEntry, limits: Limits
    ) -> tuple[dict, Run]:
        for field_name in ("prompt", "negative_prompt"):
            if len(getattr(params, field_name)) > limits.max_prompt_chars:
                raise RequestError(field_name, f"at most {limits.max_prompt_chars} characters")
        if not params.prompt.strip():
            raise RequestError("prompt", "empty; describe the image, e.g. 'a red circle'")
        if params.nfe > limits.max_nfe:
            raise RequestError("nfe", f"at most {limits.max_nfe}, got {params.nfe}")
        if params.n > limits.max_n:
            raise RequestError("n", f"at most {limits.max_n} images per request, got {params.n}")
        pipe: Text2ImagePipeline = entry.load()
        enc = pipe.prompts.encode_batch([params.prompt, params.negative_prompt])
        warnings = [
            f"{which}: unknown word(s) {', '.join(sorted(set(words)))} (treated as <unk>)"
            for which, words in zip(("prompt", "negative_prompt"), enc.unknown, strict=False)
            if words
        ] + [f"prompt cut to {pipe.max_prompt_tokens} tokens" for i in enc.truncated if i == 0]
        edit = _edit(params, pipe.resolution, limits)
        # as `generate` plans it: the config's recipe, inpainting-aware
        inpainting = edit is not None and edit[1] is not None
        # (with no schedule named, the checkpoint's fitted one for the NFE when it has one)
        plan = pipe.plan(
            params.nfe, params.sampler, params.schedule, inpainting=inpainting,
            guidance=params.guidance,
        )  # fmt: skip
        sampler, schedule = plan.sampler, plan.schedule
        uploads = {"init_image", "mask", "strength"}
        echo = params.model_dump(exclude={"model"} | uploads)
        echo |= {"sampler": sampler, "schedule": schedule}
        if edit is not None:  # the hashes of the pixels, never the pixels
            echo |= {"strength": edit[2]} | {
                f"{k}_sha256": None
                if t is None
                else hashlib.sha256(t.numpy().tobytes()).hexdigest()
                for k, t in (("init", edit[0]), ("mask", edit[1]))
            }
        echo["warnings"] = warnings

        def run(ctx: JobContext) -> None:
            _draw(pipe, entry.id, params, plan, echo, ctx, edit)

        return echo, run


def _edit(p: Text2ImageParams, side: int, limits: Limits) -> tuple | None:
    """(init (3, H, W) in [-1, 1], mask (H, W) in [0, 1] or None, strength), converted as
    `generate`'s _load_png converts files (a soft mask: grey / 255), or None."""
    if p.init_image is None:
        for name in ("mask", "strength"):
            if getattr(p, name) is not None:
                raise RequestError(name, "send the image to edit as init_image too")
        return None
    cap = limits.max_upload_bytes
    rgb = np.asarray(decode_image("init_image", p.init_image, (side, side), cap, "RGB"), np.float32)
    init = torch.from_numpy(rgb).permute(2, 0, 1) / 127.5 - 1
    mask = None
    if p.mask is not None:
        grey = np.asarray(decode_image("mask", p.mask, (side, side), cap, "L"), np.float32)
        mask = torch.from_numpy(grey) / 255.0
        if not bool((mask > 0.5).any()):
            raise RequestError("mask", "all black: nothing to generate (white = generate)")
    strength = p.strength if p.strength is not None else (1.0 if mask is not None else 0.6)
    return init, mask, strength


def _draw(pipe: Text2ImagePipeline, model_id: str, p, plan: Plan, echo, ctx, edit) -> None:
    ctx.plan(plan.steps)  # one batch: a step moves every image
    seeds = [p.seed + i for i in range(p.n)]
    init, mask, strength = edit if edit is not None else (None, None, 0.6)
    images = pipe.generate(
        [p.prompt] * p.n,
        nfe=p.nfe,
        guidance=p.guidance,
        seeds=seeds,
        plan=plan,
        negative_prompt=p.negative_prompt,
        init_image=init,
        strength=strength,
        mask=mask,
        callback=ctx.step,
    )
    weights = "ema.safetensors" if pipe.checkpoint.has("ema.safetensors") else "model.safetensors"
    base = {k: v for k, v in echo.items() if k not in ("n", "warnings")}
    base |= {
        "model": model_id,
        "weights": weights.split(".")[0],
        "threads": torch.get_num_threads(),
    }
    base["checkpoint_sha256"] = hashlib.sha256(pipe.checkpoint.files[weights]).hexdigest()
    base["resolution"] = pipe.resolution
    grid_rec = base | {"count": p.n}
    grid = image_grid(images, min(p.n, 8), value_range=(-1, 1))
    ctx.save(lambda f: save_with_metadata(grid, f, grid_rec), "png", "image/png", "grid", grid_rec)
    for i, image in enumerate(images):
        rec = base | {"seed": seeds[i], "index": i, "batch_seed": p.seed}
        pil = to_pil(image)
        ctx.save(lambda f, im=pil, r=rec: save_with_metadata(im, f, r), "png", "image/png",
                 "image", rec)  # fmt: skip
