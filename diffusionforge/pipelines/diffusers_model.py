"""An imported diffusers model as one object: `.denoiser` (our seam), a cond producer (CLIP text
encoder + tokenizer, or class labels), a decoder (AutoencoderKL) and `generate`, which runs any
of our samplers and schedules with guidance, img2img and inpainting.

`load(path, dtype=..., device=...)` checks the whole folder first (pipelines/diffusers_import.py)
and only then builds the networks, so a bad folder loads nothing half-way.

Conventions kept from diffusers so that the same seed gives the same picture: the initial noise
is drawn per sample as diffusers' `randn_tensor` draws it, VP models start from x_vp ~ N(0, I)
(x = sqrt(1 + sigma_max^2) n in our variables), img2img/inpainting encode the image with a sample
of the VAE posterior drawn before the noise, and schedule="scheduler" visits the timesteps the
folder's own scheduler would (`scheduler_sigmas`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from diffusionforge.core.denoiser import Denoiser
from diffusionforge.core.editing import inpaint, strength_sigmas
from diffusionforge.core.guidance import cfg
from diffusionforge.core.plan import default_schedule, recommended
from diffusionforge.core.sampler_utils import randn_like
from diffusionforge.core.samplers import SAMPLER_INFO, SAMPLERS
from diffusionforge.core.schedules import SCHEDULES
from diffusionforge.errors import CheckpointError, UserError
from diffusionforge.limits import limit
from diffusionforge.pipelines import diffusers_import as di
from diffusionforge.pipelines import fitted_schedules as fs
from diffusionforge.pipelines.diffusers_noise import NoiseProcess, noise_process

MULTISTEP = ("DPMSolverMultistepScheduler", "UniPCMultistepScheduler", "DEISMultistepScheduler")


@dataclass
class DiffusersModel:
    path: Path
    class_name: str  # the pipeline's or the lone network's _class_name
    net: torch.nn.Module
    process: NoiseProcess
    shape: tuple[int, ...]  # (C, H, W) of the sampled state (latents for latent models)
    dtype: torch.dtype
    device: torch.device
    vae: Any = None
    text_encoder: Any = None
    tokenizer: Any = None
    num_classes: int = 0
    null_class: int | None = None  # the label that means "no class" (DiT's CFG), if any
    scheduler_note: str = ""
    components: dict = field(default_factory=dict)  # name -> class name, for `info`

    @property
    def is_text_to_image(self) -> bool:
        return self.text_encoder is not None

    @property
    def image_shape(self) -> tuple[int, ...]:
        if self.vae is None:
            return self.shape
        f = 2 ** (len(self.vae.config.block_out_channels) - 1)
        return self.vae.config.out_channels, self.shape[1] * f, self.shape[2] * f

    @property
    def parameters(self) -> int:
        mods = [self.net, self.vae, self.text_encoder]
        return sum(p.numel() for m in mods if m is not None for p in m.parameters())

    # --- the seam --------------------------------------------------------------------------

    def _net(self, x_in: Tensor, t: Tensor, cond: Any) -> Tensor:
        """net(x_in, timestep, cond) in diffusers' own calling convention."""
        x = x_in.to(self.dtype)
        name = type(self.net).__name__
        if name == "UNet2DConditionModel":
            out = self.net(x, t, encoder_hidden_states=cond).sample
        elif name == "SD3Transformer2DModel":
            out = self.net(
                hidden_states=x,
                timestep=t,
                encoder_hidden_states=cond["encoder_hidden_states"],
                pooled_projections=cond["pooled_projections"],
            ).sample
        elif name == "UNet2DModel":
            out = self.net(x, t, class_labels=cond).sample
        else:  # DiT / Transformer2DModel
            out = self.net(x, timestep=t, class_labels=cond).sample
        if out.shape[1] == 2 * x.shape[1]:  # learned variance: the mean's target is the first half
            out = out[:, : x.shape[1]]
        return out.float()

    @property
    def denoiser(self) -> Denoiser:
        denoise = self.process.denoiser(self._net)
        clip = (self.process.config or {}).get("clip_sample")
        if clip and self.process.table is not None:  # DDPM/DDIM clip the x0 estimate
            limit = float(self.process.config.get("clip_sample_range", 1.0))

            def clipped(x, sigma, cond=None):
                return denoise(x, sigma, cond).clamp(-limit, limit)

            return clipped
        return denoise

    # --- cond producers, encoder, decoder ---------------------------------------------------

    def encode_prompt(self, prompts: list[str]) -> Tensor:
        """CLIP last hidden states (B, L, D) of prompts padded to the tokenizer's max length,
        as StableDiffusionPipeline.encode_prompt makes them (no clip skip)."""
        tok = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        mask = None
        if getattr(self.text_encoder.config, "use_attention_mask", False):
            mask = tok.attention_mask.to(self.device)
        with torch.no_grad():
            out = self.text_encoder(tok.input_ids.to(self.device), attention_mask=mask)[0]
        return out.to(self.dtype)

    def decode(self, latents: Tensor) -> Tensor:
        """Images in [-1, 1] (B, C, H, W) from the sampled state."""
        if self.vae is None:
            return latents.float()
        scale = self.vae.config.scaling_factor
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        with torch.no_grad():
            img = self.vae.decode((latents / scale + shift).to(self.vae.dtype)).sample
        return img.float()

    def encode_image(self, images: Tensor, generators: list[torch.Generator]) -> Tensor:
        """Latents of images in [-1, 1]: one draw from the VAE posterior per image with its
        own generator, as diffusers' img2img and inpainting pipelines encode."""
        if self.vae is None:
            return images.float()
        scale = self.vae.config.scaling_factor
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        with torch.no_grad():
            out = []
            for img, g in zip(images, generators, strict=True):
                dist = self.vae.encode(img[None].to(self.device, self.vae.dtype)).latent_dist
                out.append(dist.sample(g))
        return ((torch.cat(out) - shift) * scale).float()

    # --- timesteps -------------------------------------------------------------------------

    def scheduler_sigmas(self, steps: int, scheduler: str | None = None) -> Tensor:
        """The sigmas of the timesteps diffusers' scheduler (the folder's, or the class named)
        visits in `steps` steps, ending in 0 (or in sigma(t=0) for DDIM without
        set_alpha_to_one). Reproduces set_timesteps for the three spacings."""
        if self.process.table is None:
            raise UserError(f"{self.path}: schedule 'scheduler' is for discrete-time models")
        c = self.process.config or {}
        name = scheduler or c.get("_class_name", "DDPMScheduler")
        n_train, offset = self.process.num_train_timesteps, int(c.get("steps_offset", 0))
        spacing = c.get("timestep_spacing", "leading")
        m = steps + 1 if name in MULTISTEP else steps  # multistep schedulers drop their last
        if spacing == "linspace":
            ts = np.linspace(0, n_train - 1, m)[::-1]
            ts = ts if name == "EulerDiscreteScheduler" else ts.round()
        elif spacing == "leading":
            ratio = n_train // m
            ts = (np.arange(0, m) * ratio).round()[::-1] + offset
        elif spacing == "trailing":
            ts = np.arange(n_train, 0, -n_train / steps).round() - 1
        else:
            raise CheckpointError(f"{self.path}: timestep_spacing {spacing!r} is not supported")
        ts = torch.from_numpy(ts[:steps].copy()).double()
        sigmas = self.process.table.t_to_sigma(ts)
        end = 0.0
        if name == "DDIMScheduler" and not c.get("set_alpha_to_one", True):
            end = self.process.table.sigma_min  # its last step lands on alphas_cumprod[0]
        return torch.cat([sigmas, sigmas.new_full((1,), end)])

    # --- drawing ---------------------------------------------------------------------------

    def fitted_sigmas(
        self, nfe: int, sampler: str | None = None, *, inpainting: bool = False
    ) -> Tensor | None:
        """The sigmas `diffusionforge fit-schedule` fitted to this folder for the sampler a plan
        of `nfe` runs (`sampler`, else the recommended one), read from FOLDER/schedules.json or
        the sidecar FOLDER.schedules.json (pipelines/fitted_schedules.py), or None."""
        path = fs.schedules_file_for(self.path)
        if path is None:
            return None
        run, _ = self.names(nfe, sampler, "-", inpainting=inpainting)
        table = fs.fitted_table(fs.read_file(path), run)
        return table.get(SAMPLER_INFO[run].steps_for(nfe))

    def names(
        self, nfe: int, sampler: str | None, schedule: str | None, *, inpainting: bool = False
    ):
        """(sampler, schedule) that generate runs for these arguments: never None or "auto";
        "fitted" when no schedule is named and the folder has one for them (fitted_sigmas)."""
        path = fs.schedules_file_for(self.path) if sampler is None and schedule is None else None
        if path is not None:  # a fit for another sampler at this NFE (fitted_schedules)
            sampler = fs.fitted_sampler(fs.read_file(path), nfe, inpainting=inpainting)
        if schedule is None and self.fitted_sigmas(nfe, sampler, inpainting=inpainting) is not None:
            schedule = "fitted"
        sampler = sampler or recommended(nfe, inpainting=inpainting)[0]
        if sampler not in SAMPLERS:
            raise UserError(f"sampler: expected one of {', '.join(SAMPLERS)}, got {sampler!r}")
        # the schedule of the sampler actually run (a fitted one only for its own sampler)
        return sampler, schedule or default_schedule(nfe, sampler, inpainting=inpainting)

    def generate(
        self,
        seeds: list[int],
        *,
        nfe: int = 20,
        sampler: str | None = None,
        schedule: str | None = None,
        sigmas: Tensor | None = None,
        guidance: float = 1.0,
        prompts: list[str] | None = None,
        negative_prompt: str | None = None,
        labels: Tensor | None = None,
        init: Tensor | None = None,
        strength: float = 1.0,
        mask: Tensor | None = None,
        callback=None,
    ) -> Tensor:
        """len(seeds) images in [-1, 1], image i from its own generator seeded seeds[i].

        schedule "scheduler" visits the folder's scheduler timesteps; `sigmas` overrides both.
        `init` (B, C, H, W) in [-1, 1] edits an image (img2img at `strength`), `mask` (B or 1,
        1, H, W), 1 = generate, inpaints it.
        """
        sampler, schedule = self.names(nfe, sampler, schedule, inpainting=mask is not None)
        steps = SAMPLER_INFO[sampler].steps_for(nfe)
        if sigmas is None and schedule == "fitted":  # no schedule named, the folder has one
            sigmas = self.fitted_sigmas(nfe, sampler, inpainting=mask is not None)
        if sigmas is None and schedule == "scheduler":
            sigmas = self.scheduler_sigmas(steps)
        elif sigmas is None:
            if schedule not in SCHEDULES:
                raise UserError(
                    f"schedule: expected one of {', '.join(SCHEDULES)} or scheduler, got "
                    f"{schedule!r}"
                )
            sigmas = SCHEDULES[schedule](steps, self.process.sigma_min, self.process.sigma_max)
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        cond, uncond = self._conds(len(seeds), prompts, negative_prompt, labels)
        denoise = self.denoiser
        if guidance != 1.0 and uncond is not None:
            denoise = cfg(denoise, guidance, uncond)
        init_latents = None if init is None else self.encode_image(init, gens)  # before noise
        noise = randn_like(torch.empty((len(seeds), *self.shape)), gens).to(self.device)
        run = {"cond": cond, "generator": gens, "callback": callback}
        end = float(sigmas[-1])
        if init_latents is None:
            x = noise * self.process.init_scale(float(sigmas[0]))
            out = SAMPLERS[sampler](denoise, x, sigmas, **run)
        else:
            init_latents = init_latents.to(self.device)
            tail = strength_sigmas(sigmas, strength)
            if len(tail) == 1:
                return self.decode(init_latents)
            s0 = float(tail[0])
            x = init_latents + s0 * noise
            keep = None
            if mask is not None:
                m = torch.nn.functional.interpolate(
                    (mask > 0.5).float(), size=self.shape[1:], mode="nearest"
                ).to(self.device)
                keep = m < 0.5
                denoise = inpaint(denoise, init_latents, m)
            out = SAMPLERS[sampler](denoise, x, tail, **run) / (1 + end**2) ** 0.5
            if keep is not None:  # the kept pixels come back exactly, as diffusers pastes them
                out = torch.where(keep, init_latents, out)
            return self.decode(out)
        # DDIM without set_alpha_to_one stops at sigma(t=0): the result is its VP state
        return self.decode(out / (1 + end**2) ** 0.5)

    def _conds(self, batch, prompts, negative, labels) -> tuple[Any, Any]:
        if type(self.net).__name__ == "SD3Transformer2DModel":
            raise UserError(
                f"{self.path}: an SD3 transformer alone has no text encoders here (SD3's two "
                "CLIPs and T5 are not imported); call .denoiser with a cond dict of "
                "encoder_hidden_states and pooled_projections from Python"
            )
        if self.is_text_to_image:
            if prompts is None or len(prompts) != batch:
                raise UserError(f"{self.path}: a text-to-image model needs one prompt per seed")
            uncond = self.encode_prompt([negative or ""] * batch)
            return self.encode_prompt(list(prompts)), uncond
        if labels is not None:
            if self.num_classes == 0:
                raise UserError(f"{self.path}: an unconditional model takes no class labels")
            labels = labels.to(self.device).long()
            null = None
            if self.null_class is not None:
                null = torch.full_like(labels, self.null_class)
            return labels, null
        if self.num_classes and self.null_class is None:
            raise UserError(f"{self.path}: a class-conditional model needs class labels")
        if self.num_classes:
            return torch.full((batch,), self.null_class, device=self.device), None
        return None, None


# --- loading -------------------------------------------------------------------------------


def _scheduler_config(folder: Path) -> tuple[dict, str]:
    for p in (folder / "scheduler_config.json", folder.parent / "scheduler/scheduler_config.json"):
        if p.is_file():
            return di.read_json(p), ""
    note = "no scheduler_config.json beside the model: DDPMScheduler's defaults assumed"
    return {"_class_name": "DDPMScheduler"}, note


def _sample_shape(cfg: dict, what: Path) -> tuple[int, int, int]:
    size = cfg.get("sample_size")
    if isinstance(size, int):
        h = w = size
    elif isinstance(size, (list, tuple)) and len(size) == 2:
        h, w = size
    else:
        raise CheckpointError(f"{what / 'config.json'}: sample_size missing (needed for the shape)")
    c = cfg.get("in_channels", 4)
    side = limit("image_side")
    checks = (("sample_size", h, side), ("sample_size", w, side), ("in_channels", c, 4096))
    for key, v, hi in checks:
        if type(v) is not int or not 1 <= v <= hi:  # 10**9: a 10**18-pixel draw
            raise CheckpointError(f"{what / 'config.json'}: {key} {v!r}; expected 1 to {hi}")
    return c, h, w


def load(
    path: str | Path, *, dtype: str | torch.dtype = "float32", device: str | torch.device = "cpu"
) -> DiffusersModel:
    """A diffusers folder (one network or a pipeline) as a DiffusersModel, checked before any
    weight is read; every problem is one CheckpointError/UserError line."""
    di.require_extra()
    root = Path(path).expanduser()
    if isinstance(dtype, str):
        if dtype not in di.DTYPES:
            raise UserError(f"--dtype: expected one of {', '.join(di.DTYPES)}, got {dtype!r}")
        dtype = di.DTYPES[dtype]
    device = torch.device(device)
    if not root.is_dir():
        raise CheckpointError(f"{root}: no such folder")
    if (root / "model_index.json").is_file():
        index = di.read_json(root / "model_index.json")
        class_name = index.get("_class_name")
        if class_name not in di.PIPELINES:
            raise CheckpointError(
                f"{root / 'model_index.json'}: unknown pipeline _class_name {class_name!r} "
                f"(expected one of {', '.join(di.PIPELINES)})"
            )
        needed = di.PIPELINES[class_name]
        for part in needed:
            if not (root / part).is_dir():
                raise CheckpointError(
                    f"{root}: half a pipeline: {class_name} needs {part}/, which is missing"
                )
        net_dir = root / ("transformer" if "transformer" in needed else "unet")
    else:
        class_name, needed, net_dir = None, (), root
    net_c = di.inspect_component(net_dir, di.NETWORKS, "network")
    class_name = class_name or net_c.class_name
    comps = [net_c]
    vae_c = text_c = None
    if "vae" in needed:
        vae_c = di.inspect_component(root / "vae", ("AutoencoderKL",), "vae")
        comps.append(vae_c)
    if "text_encoder" in needed:
        text_c = di.inspect_component(root / "text_encoder", ("CLIPTextModel",), "text encoder")
        comps.append(text_c)
    sched, note = _scheduler_config(net_dir)
    process = noise_process(sched, str(net_dir))
    shape = _sample_shape(net_c.config, net_dir)
    if net_c.class_name == "UNet2DConditionModel" and shape[0] != 4 and vae_c is not None:
        if shape[0] != vae_c.config.get("latent_channels", 4):
            raise CheckpointError(
                f"{net_dir}: a {shape[0]}-channel UNet (e.g. a 9-channel inpainting UNet) is not "
                "supported; our inpainting works with the plain text-to-image UNet"
            )
    tokenizer = None
    if "tokenizer" in needed:
        max_len = int(text_c.config.get("max_position_embeddings", 77))
        tokenizer = di.load_tokenizer(root / "tokenizer", max_len)
    di.check_components(comps, dtype, device)  # shapes and memory, before any allocation
    net = di.load_component(net_c, dtype, device)
    vae = di.load_component(vae_c, dtype, device) if vae_c else None
    text = di.load_component(text_c, dtype, device) if text_c else None
    n_cls = int(net_c.config.get("num_class_embeds") or 0)
    null = None
    if net_c.class_name in ("DiTTransformer2DModel", "Transformer2DModel"):
        n_cls = int(net_c.config.get("num_embeds_ada_norm") or 0)
        null = n_cls if n_cls else None  # DiT's label table has one extra row: "no class"
    return DiffusersModel(
        path=root,
        class_name=class_name,
        net=net,
        process=process,
        shape=shape,
        dtype=dtype,
        device=device,
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        num_classes=n_cls,
        null_class=null,
        scheduler_note=note,
        components={c.folder.name: c.class_name for c in comps},
    )
