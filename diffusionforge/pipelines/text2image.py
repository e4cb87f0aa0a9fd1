"""Text-to-image: prompts in, images out, in pixel space or in an autoencoder's latent space.

`load_text2image(path)` rebuilds a text-conditioned UNet/DiT from a checkpoint folder (its
config.json carries the tokenizer vocabulary), and with a latent model the autoencoder the
checkpoint carries (train/latent.py). `generate` batches the prompts, draws image i from its
own generator seeded `seeds[i]`, and applies classifier-free guidance (Ho & Salimans 2022) with
the negative prompt as the unconditional branch (the empty caption when none is given: the
condition caption dropout trained). img2img and inpainting go through core/editing.py.

Prompt problems (documented, tested in tests/test_t2i_pipeline.py): an empty prompt is a
one-line `PromptError`; a prompt longer than `max_prompt_tokens` is cut with a warning; words
outside the vocabulary become `<unk>` with a warning that names them (the MiniLM encoder's
word pieces cover any text, so it never warns about words).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from diffusionforge.core.draw import Edit, draw
from diffusionforge.core.plan import Plan
from diffusionforge.errors import CheckpointError, UserError
from diffusionforge.pipelines.fitted_schedules import checkpoint_plan
from diffusionforge.pipelines.pipeline import load_pipeline
from diffusionforge.train.builders_t2i import prompt_encoder
from diffusionforge.train.checkpoint import Checkpoint
from diffusionforge.train.config import Config
from diffusionforge.train.latent import latent_model_autoencoder


class PromptError(UserError):
    """An empty prompt or a bad prompt list."""


@dataclass
class Text2ImagePipeline:
    net: nn.Module
    formulation: object
    cfg: Config
    shape: tuple[int, ...]  # the network's example shape (latent shape for latent models)
    checkpoint: Checkpoint | None
    prompts: object  # WordTokenizer | MiniLMPrompts: strings -> cond rows
    autoencoder: object | None = None  # train.latent.Autoencoder for latent models

    @property
    def resolution(self) -> int:
        if self.autoencoder is not None:
            return self.shape[-1] * self.autoencoder.factor
        return self.shape[-1]

    @property
    def max_prompt_tokens(self) -> int:
        return self.prompts.max_tokens

    def encode(
        self, prompts: list[str], *, allow_empty: bool = False, seeds: list[int] | None = None
    ) -> Tensor:
        """cond rows for `prompts`, warning about cut prompts and unknown words. A layout-
        grounded model places prompt i's objects from seeds[i] (data/layouts.py)."""
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
            raise PromptError("prompts: expected a list of strings")
        if not allow_empty:
            for i, p in enumerate(prompts):
                if not p.strip():
                    raise PromptError(f"prompt {i}: empty; describe the image to generate")
        if getattr(self.prompts, "takes_seeds", False):
            enc = self.prompts.encode_batch(list(prompts), seeds)
        else:
            enc = self.prompts.encode_batch(list(prompts))
        for i in enc.truncated:
            warnings.warn(
                f"prompt {i} is longer than the encoder's {self.max_prompt_tokens} tokens; "
                f"cut to {self.max_prompt_tokens}",
                stacklevel=3,
            )
        for i, words in enumerate(enc.unknown):
            if words:
                warnings.warn(
                    f"prompt {i}: unknown word(s) {', '.join(sorted(set(words)))} "
                    "(not in the model's vocabulary; treated as <unk>)",
                    stacklevel=3,
                )
        return enc.cond

    def plan(
        self,
        nfe: int | None = None,
        sampler: str | None = None,
        schedule: str | Tensor | None = None,
        *,
        inpainting: bool = False,
        guidance: float | None = None,
    ) -> Plan:
        """The sampling plan as Pipeline.plan makes it: the config's recipe, and with no
        schedule named the checkpoint's fitted schedule for that NFE and sampler (`diffusionforge
        fit-schedule`, schedule name "fitted") when it has one."""
        return checkpoint_plan(
            self.checkpoint, self.cfg.sample, nfe, sampler, schedule, inpainting=inpainting,
            guidance=guidance,
        )  # fmt: skip

    @torch.no_grad()
    def generate(
        self,
        prompts: list[str],
        *,
        nfe: int,
        guidance: float,
        seeds: list[int],
        sampler: str | None = None,
        schedule: str | None = None,
        plan: Plan | None = None,
        negative_prompt: str = "",
        init_image: Tensor | None = None,
        strength: float = 0.6,
        mask: Tensor | None = None,
        callback=None,
    ) -> Tensor:
        """(B, 3, H, W) in [-1, 1], image i for prompts[i] from a generator seeded seeds[i].

        init_image (3, H, W) or (B, 3, H, W) in [-1, 1]: img2img at `strength` (SDEdit);
        mask (H, W) or (B, 1, H, W), 1 = generate, 0 = keep init_image: inpainting.
        """
        if len(seeds) != len(prompts):
            raise PromptError(f"seeds: {len(seeds)} seeds for {len(prompts)} prompts")
        cond = self.encode(prompts, seeds=list(seeds))
        neg = self.encode([negative_prompt], allow_empty=True)
        edit = None
        if init_image is not None or mask is not None:
            init, m = edit_inputs(init_image, mask, len(prompts), self.resolution)
            edit = Edit(init, strength, m)
        plan = plan or self.plan(
            nfe, sampler, schedule, inpainting=mask is not None, guidance=guidance
        )
        x = draw(
            self.net, self.formulation, self.shape, seeds, plan, cond=cond, guidance=guidance,
            uncond=neg.expand_as(cond), edit=edit, decoder=self.autoencoder, callback=callback,
        )  # fmt: skip
        return x.float().cpu().clamp(-1, 1)  # on the cpu in float32 wherever the net ran

    def decode(self, x: Tensor) -> Tensor:
        return self.autoencoder.decode(x) if self.autoencoder is not None else x

    def __call__(
        self,
        prompt,
        n: int = 1,
        *,
        seed: int = 0,
        nfe: int | None = None,
        guidance: float = 1.0,
        **kwargs,
    ) -> list:
        """n PIL images per prompt (a string or a list), image i of each from seed + i, as
        `diffusionforge generate` draws them; other keywords as generate."""  # fmt: skip
        # deferred: pipelines stay free of Pillow until a picture is asked for
        from diffusionforge.plot import to_pil

        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        seeds = [seed + i for _ in prompts for i in range(n)]
        prompts = [p for p in prompts for _ in range(n)]
        nfe = nfe or self.cfg.sample.nfe
        x = self.generate(prompts, nfe=nfe, guidance=guidance, seeds=seeds, **kwargs)
        return [to_pil(img) for img in x]


def edit_inputs(
    init_image: Tensor | None, mask: Tensor | None, n: int, resolution: int
) -> tuple[Tensor, Tensor | None]:
    """Check and broadcast img2img / inpainting inputs to (n, 3, H, W) and (n, 1, H, W)."""
    if init_image is None:
        raise PromptError("mask: inpainting needs an init image (--init-image) to keep pixels of")
    init = init_image.float()
    init = init[None] if init.ndim == 3 else init
    if init.ndim != 4 or init.shape[1] != 3 or init.shape[0] not in (1, n):
        raise PromptError(
            f"init image: expected (3, H, W) or ({n}, 3, H, W), got {tuple(init_image.shape)}"
        )
    if init.shape[-2:] != (resolution, resolution):
        raise PromptError(
            f"init image: {init.shape[-1]}x{init.shape[-2]} pixels; this model makes "
            f"{resolution}x{resolution} images (resize it first)"
        )
    init = init.expand(n, -1, -1, -1)
    if mask is None:
        return init, None
    m = mask.float()
    m = m[None, None] if m.ndim == 2 else (m[None] if m.ndim == 3 else m)
    if m.ndim != 4 or m.shape[1] != 1 or m.shape[-2:] != (resolution, resolution):
        raise PromptError(
            f"mask: expected {resolution}x{resolution} (like the image), got {tuple(mask.shape)}"
        )
    if not bool((m > 0.5).any()):
        raise PromptError("mask: all zero, so nothing would be generated (1 = generate)")
    return init, m.expand(n, -1, -1, -1)


def load_text2image(path: str | Path, *, use_ema: bool = True) -> Text2ImagePipeline:
    """A text-conditioned checkpoint folder (or run folder, or bundled name) -> pipeline."""

    path = _bundled_or_path(path)
    pipe = load_pipeline(path, use_ema=use_ema)
    if not pipe.cfg.model.text_encoder.kind:
        raise CheckpointError(f"{pipe.checkpoint.path}: not a text-to-image model")
    autoencoder = None
    if pipe.checkpoint.has("autoencoder/config.json") or getattr(pipe.cfg.data, "autoencoder", ""):
        autoencoder = latent_model_autoencoder(pipe.checkpoint)
        if autoencoder is None:
            raise CheckpointError(f"{pipe.checkpoint.path}: latent model without autoencoder/")
    return Text2ImagePipeline(
        pipe.net,
        pipe.formulation,
        pipe.cfg,
        pipe.shape,
        pipe.checkpoint,
        prompt_encoder(pipe.cfg, pipe.checkpoint),
        autoencoder,
    )


def _bundled_or_path(path: str | Path) -> Path:
    p = Path(str(path)).expanduser()
    if p.exists():
        return p
    from importlib import resources

    # bundled text-to-image models (assets/half.py: EMA weights only, so not in assets.BUNDLED)
    bundled = Path(str(resources.files("diffusionforge.assets") / str(path)))
    return bundled if "/" not in str(path) and (bundled / "config.json").exists() else p
