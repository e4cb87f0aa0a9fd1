"""Text checkpoints -> generated text: the masked-diffusion model, or the autoregressive baseline.

A text checkpoint folder holds the usual weights and config plus `tokenizer.json`. Prompts are
templates a person can type: text with holes, `"The cat [____] the mat."`, where `[____]` is a
hole of the default size and `[____:8]` one of 8 tokens. Text before the first hole is a prefix,
text after the last a suffix, holes anywhere are filled from both sides at once (masked
diffusion sees the whole window). Outputs longer than the model's context are generated in
semi-autoregressive blocks (core/discrete_samplers.sample_semi_ar). A block-diffusion model
(core/block_diffusion.py) draws its blocks left to right, each with the chosen masked-diffusion
sampler, to any length (past its context, over a sliding window of whole blocks); like an AR
model it only continues a prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from diffusionforge.core.autoregressive import Autoregressive, sample_autoregressive
from diffusionforge.core.block_diffusion import BlockDiffusion, sample_blocks
from diffusionforge.core.discrete import MaskedDiffusion, subs
from diffusionforge.core.discrete_samplers import TOKEN_SAMPLERS, sample_semi_ar
from diffusionforge.data.tokenizers import TextTokenizer, load_tokenizer
from diffusionforge.errors import CheckpointError, UserError
from diffusionforge.nets.kv_cache import KVCache
from diffusionforge.train.builders import build_formulation, build_model
from diffusionforge.train.builders_text import PAIR_KINDS
from diffusionforge.train.checkpoint import (
    Checkpoint,
    resolve_checkpoint,
    tensors_to_bytes,
    write_folder,
)
from diffusionforge.train.config import Config
from diffusionforge.train.loading import split_config

HOLE = re.compile(r"\[_+(?::(\d+))?\]")
DEFAULT_SAMPLER = "confidence"  # best quality per NFE on the grammar benchmark (BENCHMARKS.md)


@dataclass
class TextPipeline:
    net: nn.Module
    objective: MaskedDiffusion | BlockDiffusion | Autoregressive
    tokenizer: TextTokenizer
    cfg: Config
    checkpoint: Checkpoint
    weights: str  # "ema" or "model"

    @property
    def context(self) -> int:
        """The longest window the network was trained on (tokens)."""
        return self.cfg.data.text.length

    @property
    def is_ar(self) -> bool:
        return isinstance(self.objective, Autoregressive)

    @property
    def is_block(self) -> bool:
        return isinstance(self.objective, BlockDiffusion)

    @property
    def kind(self) -> str:
        """The objective's name: "masked", "block" or "ar" (formulation.kind)."""
        return self.cfg.formulation.kind

    @property
    def mask_id(self) -> int:
        return self.tokenizer.mask_id

    def template(self, prompt: str, hole: int) -> Tensor:
        """Token ids (L,) of a prompt with its holes as mask ids."""
        return encode_template(self.tokenizer, prompt, hole)

    @torch.no_grad()
    def generate(
        self,
        n: int,
        length: int,
        *,
        template: Tensor | None = None,
        nfe: int = 64,
        sampler: str = DEFAULT_SAMPLER,
        seed: int = 0,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        block: int | None = None,
        device: str | torch.device = "cpu",
    ) -> Tensor:
        """n token sequences (n, length). `template` (T,) T <= length is their start (holes as
        mask ids; everything after it is generated). Sample i uses a generator seeded seed + i,
        so it does not depend on n. `device`: where the network runs (masked diffusion; the
        sampling loop and its generators stay on the cpu, so results match the cpu's draws
        up to the network's rounding)."""
        x = torch.full((n, length), self.mask_id, dtype=torch.long)
        if template is not None:
            x[:, : len(template)] = template
        gens = [torch.Generator().manual_seed(seed + i) for i in range(n)]
        shaping = dict(temperature=temperature, top_k=top_k, top_p=top_p)
        if self.is_ar or self.is_block:
            self._check_prefix(x)
        if self.is_ar:
            return self._generate_ar(x, gens, shaping)
        denoise = self.objective.precondition(self.net)
        if torch.device(device).type != "cpu":
            denoise = _on_device(denoise, self.net, torch.device(device))
        kw = dict(mask_id=self.mask_id, schedule=self.objective.schedule, generator=gens)
        inner = TOKEN_SAMPLERS[sampler]
        if self.is_block:
            block, context = self.objective.block, self._block_context(torch.device(device))
            return sample_blocks(
                denoise, x, nfe, **kw, **shaping, block=block, inner=inner, context=context,
                window=self.context,
            )  # fmt: skip
        if length <= self.context:
            return inner(denoise, x, nfe, **kw, **shaping)
        return sample_semi_ar(
            denoise, x, nfe, **kw, **shaping, window=self.context, block=block, inner=inner
        )

    def __call__(
        self,
        n: int = 1,
        *,
        seed: int = 0,
        prompt: str | None = None,
        hole: int = 8,
        length: int | None = None,
        **kwargs,
    ) -> list[str]:
        """n texts from seeds seed..seed+n-1, as `diffusionforge generate-text` makes them:
        `prompt` with [____] holes (of `hole` tokens, or [____:k]) to fill or a start to
        continue; length: the prompt's (holes filled) or the model's context. Other keywords
        as generate (nfe, sampler, temperature, top_k, top_p, device). A prompt/response model
        answers through pipelines.text_pairs.answer instead."""  # fmt: skip
        if self.cfg.data.kind in PAIR_KINDS:
            raise UserError(
                "a prompt/response model: answer prompts with "
                "diffusionforge.pipelines.text_pairs.answer(pipe, [prompt])"
            )
        template = self.template(prompt, hole) if prompt else None
        holes = template is not None and bool((template == self.mask_id).any())
        length = length or (len(template) if holes else self.context)
        ids = self.generate(n, length, template=template, seed=seed, **kwargs)
        return [self.decode(row) for row in ids]

    def holes_error(self, template: Tensor) -> str | None:
        """Why this model cannot take `template` (L,) or (B, L), or None: AR and block models
        see only text to their left, so holes must come after all given text."""
        if not (self.is_ar or self.is_block):
            return None
        masked = (template == self.mask_id).int()
        if not bool((masked.cummax(-1).values != masked).any()):
            return None
        name = "an autoregressive" if self.is_ar else "a block-diffusion"
        return (
            f"{name} model continues a prefix; it cannot fill holes before given "
            "text (use a masked-diffusion checkpoint)"
        )

    def _check_prefix(self, x: Tensor) -> None:
        if (error := self.holes_error(x)) is not None:
            raise UserError(error)
        if self.is_ar and x.shape[1] > self.context:
            raise UserError(
                f"--length {x.shape[1]}: longer than this AR model's context ({self.context})"
            )

    def _block_context(self, device: torch.device):
        """sample_blocks' `context` with a key/value cache: finished blocks go through the
        network once; each step runs only the block being drawn (nets/kv_cache.py)."""
        self.net.to(device)
        state = {"offset": -1, "cache": None}

        def context(prefix: Tensor, offset: int):
            if offset != state["offset"]:  # the window slid: its prefix is encoded afresh
                state["offset"], state["cache"] = offset, KVCache(self.net)
            cache = state["cache"]
            if prefix.shape[1] > cache.pos:  # feed the blocks finished since the last call
                cache.step(prefix[:, cache.pos :].to(device))

            def denoise(z: Tensor, t: Tensor, cond=None) -> Tensor:
                logits = cache.step(z.to(device), keep=False).float().cpu()
                return subs(logits, z, self.mask_id)

            return denoise

        return context

    def _generate_ar(self, x: Tensor, gens, shaping: dict) -> Tensor:
        return sample_autoregressive(
            self.net, x, bos_id=self.objective.bos_id, mask_id=self.mask_id, generator=gens,
            kv_cache=lambda: KVCache(self.net), **shaping,
        )  # fmt: skip

    def decode(self, ids: Tensor, *, mark: Tensor | None = None, marks=("[", "]")) -> str:
        """Text of `ids` (L,); with `mark` (L,) bool, runs of marked tokens are bracketed."""
        if mark is None:
            return self.tokenizer.decode(ids.tolist())
        out, run, inside = [], [], False
        for i, m in zip(ids.tolist(), mark.tolist(), strict=True):
            if bool(m) != inside:
                out.append(self.tokenizer.decode(run))
                out.append(marks[0] if m else marks[1])
                run, inside = [], bool(m)
            run.append(i)
        out.append(self.tokenizer.decode(run))
        return "".join(out) + (marks[1] if inside else "")


def _on_device(denoise, net, device: torch.device):
    """denoise with the network on `device`: tensors go there, logits come back as float32."""
    net.to(device)

    def moved(*args, **kwargs):
        args = [a.to(device) if isinstance(a, Tensor) else a for a in args]
        kwargs = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in kwargs.items()}
        return denoise(*args, **kwargs).float().cpu()

    return moved


def encode_template(tokenizer: TextTokenizer, prompt: str, hole: int) -> Tensor:
    """`prompt` with `[____]` holes of `hole` tokens (or `[____:k]` of k) -> ids (L,), holes as
    the mask id. Unknown characters (char tokenizers) are refused in one line naming them."""
    ids: list[int] = []
    pos = 0
    for m in HOLE.finditer(prompt):
        before = prompt[pos : m.start()]
        if tokenizer.kind == "bpe":
            # BPE words carry their leading space (" cat" is one token): a space typed before a
            # hole belongs to the first word generated in it, not to a lone space token
            before = before.rstrip(" ")
        ids += _encode(tokenizer, before)
        size = int(m.group(1)) if m.group(1) else hole
        if size <= 0:
            raise UserError(f"--prompt: hole {m.group(0)!r} must hold at least one token")
        ids += [tokenizer.mask_id] * size
        pos = m.end()
    ids += _encode(tokenizer, prompt[pos:])
    return torch.tensor(ids, dtype=torch.long)


def _encode(tokenizer: TextTokenizer, text: str) -> list[int]:
    try:
        return tokenizer.encode(text) if text else []
    except UserError as e:
        raise UserError(f"--prompt: {e}") from None


def load_text_pipeline(path: str | Path, *, use_ema: bool = True) -> TextPipeline:
    """Rebuild a text model (network, objective, tokenizer) from its checkpoint folder alone."""

    ckpt = resolve_checkpoint(path)
    cfg, shape = split_config(ckpt.config, str(ckpt.path))
    if cfg.model.kind != "transformer":
        raise CheckpointError(f"{ckpt.path}: not a text model (model.kind = {cfg.model.kind})")
    tokenizer = load_tokenizer(ckpt.path)
    weights = "ema" if use_ema and ckpt.has("ema.safetensors") else "model"
    rel = f"{weights}.safetensors"
    net = build_model(cfg, shape, weights=ckpt.files[rel], where=str(ckpt.path / rel))
    try:
        net.load_state_dict(ckpt.tensors(rel), strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{ckpt.path}: weights do not fit the model ({first})") from None
    net.float().eval().requires_grad_(False)  # bundled weights may be stored in fp16
    return TextPipeline(net, build_formulation(cfg), tokenizer, cfg, ckpt, weights)


def is_text_checkpoint(path: str | Path) -> bool:
    """True when `path` (a checkpoint or run folder) holds a text model; never raises."""
    try:
        ckpt = resolve_checkpoint(path)
        return ckpt.config.get("model", {}).get("kind") == "transformer"
    except Exception:
        return False


def bundle_text(checkpoint: str | Path, dest: str | Path) -> Path:
    """Copy a text checkpoint's weights and EMA weights (stored as fp16, half the size; loading
    casts them back to fp32), config and tokenizer into `dest`, a checkpoint folder with a
    manifest and no training state."""

    ckpt = resolve_checkpoint(checkpoint)
    files = {
        rel: tensors_to_bytes(
            {k: v.half() for k, v in ckpt.tensors(rel).items()}, {"step": str(ckpt.step)}
        )
        for rel in ("model.safetensors", "ema.safetensors")
    }
    files["config.json"] = ckpt.files["config.json"]
    files["tokenizer.json"] = ckpt.files["tokenizer.json"]
    return write_folder(Path(dest), files, step=ckpt.step)


if __name__ == "__main__":  # python -m diffusionforge.pipelines.text CHECKPOINT DEST
    import sys

    print(f"bundled as {bundle_text(sys.argv[1], sys.argv[2])}")
