"""Load a checkpoint folder and draw samples from it: the one path from files to samples."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from diffusionforge.core.draw import Edit, draw
from diffusionforge.core.plan import Plan
from diffusionforge.errors import CheckpointError, ConfigError
from diffusionforge.train.builders import build_formulation, build_model
from diffusionforge.train.checkpoint import Checkpoint, resolve_checkpoint
from diffusionforge.train.config import Config, from_dict


@dataclass
class Pipeline:
    net: nn.Module
    formulation: object
    cfg: Config
    shape: tuple[int, ...]  # shape of one example
    checkpoint: Checkpoint
    weights: str  # "ema" or "model"
    classes: list[str] = dataclasses.field(default_factory=list)  # class names, label order
    # Latent models: the pipelines.latent.Autoencoder their checkpoint carries (images are
    # decoded after sampling); None for pixel-space models.
    autoencoder: object | None = None

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
    ) -> Plan:
        """The sampling plan: what is given, else the config's sample settings."""
        return self.cfg.sample.plan(nfe, sampler, schedule, inpainting=inpainting)

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
        plan = self.plan(nfe, sampler, schedule)
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
        plan = plan or self.plan(nfe, sampler, schedule, inpainting=inpainting)
        uncond = None if labels is None else torch.full_like(labels, self.num_classes)
        return draw(
            self.net, self.formulation, self.shape, seeds, plan, cond=labels,
            guidance=guidance, uncond=uncond, edit=edit, decoder=self.autoencoder,
            device=device, callback=callback,
        )  # fmt: skip


def split_config(raw: dict, where: str) -> tuple[Config, tuple[int, ...]]:
    """config.json -> (Config, example shape); the header holds what the Config does not."""
    if not isinstance(raw, dict):
        raise CheckpointError(f"{where}/config.json: expected a JSON object")
    raw = dict(raw)
    header = raw.pop("diffusionforge", None)
    if not isinstance(header, dict) or "example_shape" not in header:
        raise CheckpointError(f"{where}: config.json lacks the diffusionforge header")
    try:
        cfg = from_dict(raw, source=f"{where}/config.json")
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    return cfg, example_shape(header["example_shape"], where)


def example_shape(value, where: str) -> tuple[int, ...]:
    """The header's example_shape: 1 to 4 positive whole numbers whose product fits
    limits.limit('values'); a one-line CheckpointError otherwise."""
    from diffusionforge.limits import limit

    ok = (
        isinstance(value, list)
        and 1 <= len(value) <= 4
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    )
    if not ok or math.prod(value) > limit("values"):
        raise CheckpointError(
            f"{where}/config.json: example_shape: expected 1 to 4 positive whole numbers "
            f"(at most {limit('values'):,} values), got {value!r}"
        )
    return tuple(value)


def check_finite_weights(state: dict[str, Tensor], where: str) -> None:
    """Refuse weights holding NaN or infinite values: they can only draw NaN."""
    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{where}: weights are not finite (NaN or inf in {name})")


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
    from diffusionforge.pipelines.latent import latent_model_autoencoder

    ae = latent_model_autoencoder(ckpt)  # None unless trained with data.autoencoder
    formulation = build_formulation(cfg)
    return Pipeline(net, formulation, cfg, shape, ckpt, weights, list(map(str, classes)), ae)


def grid_labels(num_classes: int, n: int, per_class_max: int = 10) -> tuple[Tensor | None, int]:
    """Labels for a picture with one row per class: (labels (classes * k,), k columns);
    unconditional models get (None, n) for a single batch of n."""
    if num_classes <= 0:
        return None, n
    k = max(1, min(per_class_max, n // num_classes))
    return torch.arange(num_classes).repeat_interleave(k), k


def real_examples(dataset, labels: Tensor | None, n: int) -> Tensor:
    """Training images laid out like `labels` (the first examples of each class), for a panel
    of real data beside the samples."""
    if labels is None or dataset.labels is None:
        return dataset.data[:n]
    picks, used = [], {}
    for lab in labels.tolist():
        where = (dataset.labels == lab).nonzero().flatten()
        k = used.get(lab, 0)
        used[lab] = k + 1
        # spread over the class (glyphs list each font's copies together)
        pick = where[(k * 977) % len(where)] if len(where) else None
        picks.append(dataset.data[pick] if pick is not None else dataset.data[0] * 0)
    return torch.stack(picks)
