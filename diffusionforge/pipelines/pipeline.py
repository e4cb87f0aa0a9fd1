"""A checkpoint folder of vectors, images or audio -> a `Pipeline` (network, formulation,
shape, classes, autoencoder) that draws samples through core.draw."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from diffusionforge.core.draw import Edit, draw
from diffusionforge.core.plan import Plan
from diffusionforge.errors import CheckpointError
from diffusionforge.pipelines.fitted_schedules import checkpoint_plan
from diffusionforge.train.builders import build_formulation, build_model
from diffusionforge.train.checkpoint import Checkpoint, resolve_checkpoint
from diffusionforge.train.config import Config
from diffusionforge.train.latent import latent_model_autoencoder
from diffusionforge.train.loading import check_finite_weights, split_config


@dataclass
class Pipeline:
    net: nn.Module
    formulation: object
    cfg: Config
    shape: tuple[int, ...]  # shape of one example
    checkpoint: Checkpoint
    weights: str  # "ema" or "model"
    classes: list[str] = dataclasses.field(default_factory=list)  # class names, label order
    # Latent models: the train.latent.Autoencoder their checkpoint carries (images are
    # decoded after sampling); None for pixel-space models.
    autoencoder: object | None = None

    @property
    def makes_images(self) -> bool:
        """One example is a (C, H, W) image, or a latent the autoencoder decodes to one (drawn by
        `generate_images`, editable); otherwise a vector or array (`generate`)."""
        return len(self.shape) == 3

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one output image: `shape` itself, or the decoded shape of a latent."""
        if self.autoencoder is None:
            return self.shape
        c, h, w = self.autoencoder.image_shape
        f = self.autoencoder.factor
        return c, self.shape[1] * f, self.shape[2] * f

    def plan(
        self,
        nfe: int | None = None,
        sampler: str | None = None,
        schedule: str | Tensor | None = None,
        *,
        inpainting: bool = False,
        guidance: float | None = None,
    ) -> Plan:
        """The sampling plan: what is given, else the config's sample settings; with no
        schedule named, the checkpoint's own schedule fitted for that NFE, sampler and guidance
        (`diffusionforge fit-schedule`, schedule name "fitted") when it has one. `guidance`:
        the scale the draw uses (1: none; None: any fitted entry matches)."""
        return checkpoint_plan(
            self.checkpoint, self.cfg.sample, nfe, sampler, schedule, inpainting=inpainting,
            guidance=guidance,
        )  # fmt: skip

    def generate(
        self,
        n: int,
        *,
        nfe: int | None = None,
        sampler: str | None = None,
        schedule: str | None = None,
        seed: int = 0,
        device: str | torch.device = "cpu",
        callback=None,
    ) -> Tensor:
        """n samples from one generator seeded `seed` (the same seed gives the same bytes)."""
        plan = self.plan(nfe, sampler, schedule, guidance=1.0)
        return draw(
            self.net, self.formulation, self.shape, seed, plan, n=n, device=device,
            callback=callback,
        )  # fmt: skip

    @property
    def num_classes(self) -> int:
        return max(self.cfg.model.num_classes, 0)

    def generate_images(
        self,
        seeds: list[int],
        *,
        labels: Tensor | None = None,
        guidance: float = 1.0,
        nfe: int | None = None,
        sampler: str | None = None,
        schedule: str | None = None,
        plan: Plan | None = None,
        device: str | torch.device = "cpu",
        edit: Edit | None = None,
        callback=None,
    ) -> Tensor:
        """One image per seed (image i from its own generator seeded seeds[i]); with labels (n,)
        and guidance != 1, classifier-free guidance against the null label `num_classes`.
        `edit`: img2img / inpainting (core.draw.Edit). Latent models return decoded images."""
        inpainting = edit is not None and edit.mask is not None
        labels = self._labels(labels, len(seeds))
        scale = guidance if labels is not None else 1.0
        plan = plan or self.plan(nfe, sampler, schedule, inpainting=inpainting, guidance=scale)
        uncond = None if labels is None else torch.full_like(labels, self.num_classes)
        return draw(
            self.net, self.formulation, self.shape, seeds, plan, cond=labels,
            guidance=guidance, uncond=uncond, edit=edit, decoder=self.autoencoder,
            device=device, callback=callback,
        )  # fmt: skip

    def _labels(self, labels, n: int) -> Tensor | None:
        """Labels as a (n,) long tensor: a tensor, a list of indices or class names, or one
        label for every seed. ValueError names a label the model does not have."""
        if labels is None:
            return None
        if not self.num_classes:
            raise ValueError("labels: this model is not class-conditional")
        if isinstance(labels, (int, str)):
            labels = [labels] * n
        if not isinstance(labels, Tensor):
            names = {name: k for k, name in enumerate(self.classes)}
            idx = [names.get(v, v) if isinstance(v, str) else v for v in labels]
            bad = [v for v in idx if not isinstance(v, int) or not 0 <= v < self.num_classes]
            if bad:
                raise ValueError(
                    f"labels: {bad[0]!r} is not a class of this model (0-"
                    f"{self.num_classes - 1} or {', '.join(self.classes[:12])})"
                )
            labels = torch.tensor(idx, dtype=torch.long)
        if len(labels) != n:
            raise ValueError(f"labels: expected one per seed ({n}), got {len(labels)}")
        return labels.long()

    def __call__(self, n: int = 1, *, seed: int = 0, labels=None, **kwargs) -> list:
        """n outputs drawn from seeds seed..seed+n-1: PIL images for image models (in [0, 255],
        the [-1, 1] network range clipped), else one numpy array per sample. `labels`: one
        class (index or name) for all, or one per sample; other keywords as generate_images
        (guidance, nfe, sampler, schedule, device)."""
        if not self.makes_images:
            x = self.generate(n, seed=seed, **kwargs)
            return [row.cpu().numpy() for row in x]
        # deferred: pipelines stay free of Pillow until a picture is asked for
        from diffusionforge.plot import to_pil

        x = self.generate_images(list(range(seed, seed + n)), labels=labels, **kwargs)
        return [to_pil(img) for img in x.clamp(-1, 1)]


def load_pipeline(path: str | Path, *, use_ema: bool = True) -> Pipeline:
    """Rebuild the network of a checkpoint (or a run folder's newest one) from its files alone."""
    ckpt = resolve_checkpoint(path)
    cfg, shape = split_config(ckpt.config, str(ckpt.path))
    weights = "ema" if use_ema and ckpt.has("ema.safetensors") else "model"
    rel = f"{weights}.safetensors"
    net = build_model(cfg, shape, weights=ckpt.files[rel], where=str(ckpt.path / rel))
    state = ckpt.tensors(rel)
    check_finite_weights(state, str(ckpt.path / rel))
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{ckpt.path}: weights do not fit the model ({first})") from None
    net.eval().requires_grad_(False)
    classes = ckpt.config["diffusionforge"].get("classes") or []
    if cfg.model.num_classes > 0 and len(classes) != cfg.model.num_classes:
        classes = [str(k) for k in range(cfg.model.num_classes)]

    ae = latent_model_autoencoder(ckpt)  # None unless trained with data.autoencoder
    formulation = build_formulation(cfg)
    return Pipeline(net, formulation, cfg, shape, ckpt, weights, list(map(str, classes)), ae)
