"""Models made with diffusers (pipelines/diffusers_model.py), served like our own.

A sub-folder of `--models` that is a diffusers folder (model_index.json, or a config.json with
a diffusers `_class_name`) is listed with kind "diffusers". Its public facts come from its JSON
files at start-up; the networks are built at the first job (all checks first: safetensors only,
shapes, memory). A request names a prompt for Stable-Diffusion-layout folders, a class for
class-conditional ones, and nothing for unconditional ones; image i comes from seed + i.
img2img and inpainting take `init_image` and `mask` as base64 files (server/uploads.py),
converted as `sample/generate --init-image --mask` convert files (cli/diffusers.py).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from diffusionforge import limits
from diffusionforge.core.samplers import SAMPLER_INFO, SAMPLERS
from diffusionforge.core.schedules import SCHEDULES
from diffusionforge.errors import CheckpointError
from diffusionforge.pipelines.diffusers_import import PIPELINES, read_json
from diffusionforge.pipelines.diffusers_model import load
from diffusionforge.pipelines.images import save_with_metadata
from diffusionforge.plot import image_grid, to_pil
from diffusionforge.server.base import ID_PATTERN, NFE_ALIAS, Handler, ModelEntry, RequestError, Run
from diffusionforge.server.image_handler import INIT_HELP, MASK_HELP, STRENGTH_HELP
from diffusionforge.server.jobs import JobContext
from diffusionforge.server.settings import Limits
from diffusionforge.server.uploads import decode_image

SamplerName = Literal[tuple(SAMPLERS)]
ScheduleName = Literal[(*SCHEDULES, "scheduler")]  # "scheduler": the folder's own timesteps
MAX_SEED = limits.MAX_SEED  # seeds in [0, 2^32 - 1], as the CLI's (diffusionforge/limits.py)


class DiffusersParams(BaseModel):
    """Generate images from a model made with diffusers."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    model: str = Field(pattern=ID_PATTERN, description="a model id from GET /api/models")
    prompt: str | None = Field(None, description="text-to-image folders: what to draw")
    negative_prompt: str = Field("", description="text-to-image folders: the unguided branch")
    class_: int | None = Field(None, alias="class", description="class-conditional: the label")
    guidance: float | None = Field(None, ge=0, le=50.0, allow_inf_nan=False)
    nfe: int | None = Field(
        None, ge=1, validation_alias=NFE_ALIAS, description="network evaluations per image"
    )
    sampler: SamplerName | None = Field(None, description="null: recommended for the NFE")
    schedule: ScheduleName | None = Field(None, description="null: recommended for the NFE")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="image i uses seed + i")
    n: int = Field(1, ge=1, description="number of images")
    init_image: str | None = Field(None, description=INIT_HELP)
    mask: str | None = Field(None, description=MASK_HELP)
    strength: float | None = Field(None, gt=0, le=1, allow_inf_nan=False, description=STRENGTH_HELP)


def edit_tensors(params: DiffusersParams, entry: ModelEntry, max_bytes: int) -> tuple | None:
    """(init (1, C, H, W) in [-1, 1], mask (1, 1, H, W) in [0, 1] or None, strength) as the
    CLI reads files (RGB / 127.5 - 1, its channel mean for 1-channel models; mask grey / 255),
    or None; RequestError naming the field otherwise."""
    if params.init_image is None:
        for name in ("mask", "strength"):
            if getattr(params, name) is not None:
                raise RequestError(name, "send the image to edit as init_image too")
        return None
    c, h, w = entry.load().image_shape  # the networks are built here, at the first edit
    rgb = np.asarray(decode_image("init_image", params.init_image, (w, h), max_bytes, "RGB"))
    init = torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1) / 127.5 - 1
    init = (init.mean(0, keepdim=True) if c == 1 else init)[None]
    mask = None
    if params.mask is not None:
        grey = np.asarray(decode_image("mask", params.mask, (w, h), max_bytes, "L"))
        mask = (torch.from_numpy(grey.astype(np.float32)) / 255.0)[None, None]
        if not bool((mask > 0.5).any()):
            raise RequestError("mask", "all black: nothing to generate (white = generate)")
    default = 1.0 if mask is not None else 0.6
    strength = params.strength if params.strength is not None else default
    return init, mask, strength


def entry_config(path: Path) -> dict:
    """The facts a listing needs, read from the folder's JSON files (nothing is built)."""

    if (path / "model_index.json").is_file():
        index = read_json(path / "model_index.json")
        name = index.get("_class_name")
        if name not in PIPELINES:
            raise RequestError("model", f"unknown pipeline _class_name {name!r}")
        net_dir = path / ("transformer" if "transformer" in PIPELINES[name] else "unet")
        text = "text_encoder" in PIPELINES[name]
    else:
        name, net_dir, text = None, path, False
    net = read_json(net_dir / "config.json")
    classes = net.get("num_class_embeds") or net.get("num_embeds_ada_norm") or 0
    if type(classes) is not int or not 0 <= classes <= limits.limit("width"):  # listed each
        raise CheckpointError(
            f"{net_dir / 'config.json'}: num_class_embeds {classes!r}; expected a whole number "
            f"in [0, {limits.limit('width')}]"
        )
    facts = {"class_name": name or net.get("_class_name"), "text": text, "classes": classes}
    return {"data": {"kind": "diffusers"}, "diffusers": facts}


class DiffusersHandler(Handler):
    name = "diffusers"
    summary = "a model made with diffusers (UNet2DModel, DiT, Stable Diffusion layout)"
    Params = DiffusersParams

    def describe(self, entry: ModelEntry) -> dict:
        facts = entry.config["diffusers"]
        return {
            "class_name": facts["class_name"],
            "prompt": facts["text"],
            "classes": [str(i) for i in range(facts["classes"])],
            "defaults": {"nfe": 20, "guidance": 7.5 if facts["text"] else 1.0},
            "samplers": list(SAMPLERS),
            "schedules": [*SCHEDULES, "scheduler"],
        }

    def load(self, path: Path) -> object:

        return load(path)

    def prepare(
        self, params: DiffusersParams, entry: ModelEntry, limits: Limits
    ) -> tuple[dict, Run]:
        info = self.describe(entry)
        nfe = params.nfe if params.nfe is not None else info["defaults"]["nfe"]
        if nfe > limits.max_nfe:
            raise RequestError("nfe", f"at most {limits.max_nfe}, got {nfe}")
        if params.n > limits.max_n:
            raise RequestError("n", f"at most {limits.max_n} images per request, got {params.n}")
        if info["prompt"]:
            if not params.prompt or not params.prompt.strip():
                raise RequestError("prompt", "this model draws from a text prompt; give one")
            for key in ("prompt", "negative_prompt"):
                if len(getattr(params, key) or "") > limits.max_prompt_chars:
                    raise RequestError(key, f"at most {limits.max_prompt_chars} characters")
        elif params.prompt is not None:
            raise RequestError("prompt", "this model takes no prompt")
        n_cls = len(info["classes"])
        if params.class_ is not None and not 0 <= params.class_ < n_cls:
            raise RequestError("class", f"expected an index below {n_cls} (or null)")
        guidance = params.guidance if params.guidance is not None else info["defaults"]["guidance"]
        sampler = params.sampler
        echo = {"n": params.n, "seed": params.seed, "nfe": nfe, "guidance": guidance}
        echo |= {"sampler": sampler or "auto", "schedule": params.schedule or "auto"}
        echo |= {"prompt": params.prompt, "class": params.class_}
        edit = edit_tensors(params, entry, limits.max_upload_bytes)
        if edit is not None:  # the hashes of the pixels, never the pixels
            echo["strength"] = edit[2]
            for key, t in (("init_sha256", edit[0]), ("mask_sha256", edit[1])):
                echo[key] = None if t is None else hashlib.sha256(t.numpy().tobytes()).hexdigest()
        init, mask, strength = edit if edit is not None else (None, None, 1.0)

        def run(ctx: JobContext) -> None:
            model = entry.load()
            # the names run, recorded in the images: "fitted" when the folder has a schedule
            # fitted for this NFE (FOLDER.schedules.json, fit-schedule) and none is named
            echo["sampler"], echo["schedule"] = model.names(nfe, sampler, params.schedule)
            steps = SAMPLER_INFO[sampler].steps_for(nfe) if sampler else nfe
            ctx.plan(params.n * steps)
            labels = None
            if n_cls:
                idx = [params.class_ if params.class_ is not None else i % n_cls
                       for i in range(params.n)]  # fmt: skip
                labels = torch.tensor(idx)
            images = []
            for i in range(params.n):  # one at a time: image i is a function of seed + i
                images.append(
                    model.generate(
                        [params.seed + i],
                        nfe=nfe,
                        sampler=sampler,
                        schedule=params.schedule,
                        guidance=guidance,
                        prompts=[params.prompt] if info["prompt"] else None,
                        negative_prompt=params.negative_prompt,
                        labels=None if labels is None else labels[i : i + 1],
                        init=init,
                        strength=strength,
                        mask=mask,
                        callback=ctx.step,
                    ).cpu()
                )
            images = torch.cat(images).clamp(-1, 1)
            base = {"model": entry.id, **echo}
            grid = image_grid(images, min(params.n, 8), value_range=(-1, 1))
            ctx.save(lambda p: save_with_metadata(grid, p, base), "png", "image/png", "grid", base)
            for i, image in enumerate(images):
                rec = {**base, "seed": params.seed + i, "index": i}
                pil = to_pil(image)
                ctx.save(
                    lambda p, im=pil, r=rec: save_with_metadata(im, p, r),
                    "png",
                    "image/png",
                    "image",
                    rec,
                )

        return echo, run
