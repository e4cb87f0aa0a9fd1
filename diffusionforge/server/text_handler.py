"""Text models (masked diffusion, or the autoregressive baseline): generate and infill.

A prompt is the template `generate-text` takes: text with `[____]` holes (`[____:8]` holds 8
tokens); text before the first hole is a prefix, after the last a suffix. The request is run
the way `diffusionforge generate-text` runs it (pipelines.text), so the same seed, prompt and
settings give the same text there. Progress counts network evaluations.

Models trained on (prompt, response) pairs (data.kind "pairs" or "sudoku", core/sft.py) answer
the prompt instead (pipelines/text_pairs.py, as `generate-text --prompt`): the output text is the
response, greedy unless a temperature is given; a Sudoku model's prompt is a grid of 81 cells.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from diffusionforge import limits
from diffusionforge.data.pairs import response_text
from diffusionforge.errors import UserError
from diffusionforge.pipelines.text import DEFAULT_SAMPLER, TextPipeline, load_text_pipeline
from diffusionforge.pipelines.text_pairs import answer_defaults, fill, prompt_window
from diffusionforge.server.base import (
    ID_PATTERN,
    NFE_ALIAS,
    Counted,
    Handler,
    ModelEntry,
    RequestError,
    Run,
    model_kinds,
)
from diffusionforge.server.jobs import JobContext
from diffusionforge.server.settings import Limits
from diffusionforge.train.builders_text import PAIR_KINDS

MAX_SEED = limits.MAX_SEED  # seeds in [0, 2^32 - 1], as the CLI's (diffusionforge/limits.py)


class TextParams(BaseModel):
    """Generate text, or fill the [____] holes of a prompt, with a text model."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(pattern=ID_PATTERN, description="a model id from GET /api/models")
    prompt: str = Field("", description="text with [____] holes ([____:8]: a hole of 8 tokens)")
    hole: int = Field(8, ge=1, le=256, description="tokens per [____] hole")
    length: int | None = Field(
        None, ge=1, description="tokens in all (default: the prompt's if it has holes, else the "
        "model's context)"
    )  # fmt: skip
    nfe: int | None = Field(
        None, ge=1, validation_alias=NFE_ALIAS, description="denoising steps (default: the model's)"
    )
    sampler: Literal["confidence", "margin", "ancestral"] = DEFAULT_SAMPLER
    seed: int = Field(0, ge=0, le=MAX_SEED, description="sample i uses seed + i")
    n: int = Field(1, ge=1, description="number of texts")
    temperature: float = Field(1.0, ge=0, le=10, allow_inf_nan=False)
    top_k: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)
    draws: int | None = Field(
        None, ge=1, le=64,
        description="prompt/response models: redraw a doubted answer, up to this many draws "
        "(default 1; Sudoku models 24)",
    )  # fmt: skip
    accept: float = Field(
        0.9, gt=0, le=1, allow_inf_nan=False,
        description="with draws: the probability every written token must reach",
    )  # fmt: skip


class TextHandler(Handler):
    name = "text"
    summary = "text model (generation and infilling)"
    Params = TextParams

    def accepts(self, config: dict) -> bool:
        return model_kinds(config)[0] == "transformer"

    def describe(self, entry: ModelEntry) -> dict:
        cfg = entry.config
        text = cfg.get("data", {}).get("text", {})
        kind = cfg.get("data", {}).get("kind")
        out = {
            "context": int(text.get("length", 0)),
            "objective": cfg.get("formulation", {}).get("kind"),
            "defaults": {"nfe": int(cfg.get("sample", {}).get("nfe", 64)), "length": None},
            "samplers": ["confidence", "margin", "ancestral"],
            "conditional": kind in PAIR_KINDS,  # answers a prompt (trained on pairs)
        }
        if kind == "sudoku":
            out["prompt_hint"] = "a Sudoku: 81 cells row by row, digits 1-9, . or 0 for blanks"
        elif kind in PAIR_KINDS:
            out["prompt_hint"] = "a prompt; the model writes the response"
        return out

    def load(self, path: Path) -> TextPipeline:
        return load_text_pipeline(path)

    def prepare(self, params: TextParams, entry: ModelEntry, limits: Limits) -> tuple[dict, Run]:
        if len(params.prompt) > limits.max_prompt_chars:
            raise RequestError("prompt", f"at most {limits.max_prompt_chars} characters")
        if params.n > limits.max_n:
            raise RequestError("n", f"at most {limits.max_n} texts per request, got {params.n}")
        nfe = params.nfe if params.nfe is not None else self.describe(entry)["defaults"]["nfe"]
        if nfe > limits.max_nfe:
            raise RequestError("nfe", f"at most {limits.max_nfe}, got {nfe}")
        pipe: TextPipeline = entry.load()  # the tokenizer decides what a prompt means
        if self.describe(entry)["conditional"]:
            return _prepare_answer(pipe, entry, params, nfe if params.nfe is not None else None)
        if params.draws not in (None, 1):
            raise RequestError("draws", "only prompt/response models verify and redraw answers")
        try:
            template = pipe.template(params.prompt, params.hole) if params.prompt else None
        except UserError as e:
            raise RequestError("prompt", str(e).removeprefix("--prompt: ")) from None
        holes = template is not None and bool((template == pipe.mask_id).any())
        if template is not None and len(template) > pipe.context:
            raise RequestError(
                "prompt", f"{len(template)} tokens (holes included); the context is {pipe.context}"
            )
        length = params.length or (len(template) if holes else pipe.context)
        if length > limits.max_text_length:
            raise RequestError("length", f"at most {limits.max_text_length}, got {length}")
        if template is not None and length < len(template):
            raise RequestError("length", f"shorter than the prompt ({len(template)} tokens)")
        if pipe.is_ar and length > pipe.context:
            raise RequestError("length", f"this AR model's context is {pipe.context} tokens")
        if holes and (error := pipe.holes_error(template)) is not None:
            raise RequestError("prompt", error)
        echo = {"prompt": params.prompt, "hole": params.hole, "length": length, "nfe": nfe}
        echo |= {"sampler": params.sampler, "seed": params.seed, "n": params.n}
        echo |= {"temperature": params.temperature, "top_k": params.top_k, "top_p": params.top_p}

        def run(ctx: JobContext) -> None:
            _generate(pipe, entry.id, params, template, length, nfe, echo, ctx)

        return echo, run


def _prepare_answer(pipe, entry: ModelEntry, params: TextParams, nfe: int | None):
    """A (prompt, response) model: the response to the prompt, one per seed."""
    if not params.prompt:
        raise RequestError(
            "prompt", "this model answers a prompt (trained on prompt/response pairs)"
        )
    try:
        window, start = prompt_window(pipe, params.prompt)
    except UserError as e:
        raise RequestError("prompt", str(e).removeprefix("--prompt: ")) from None
    steps = nfe or int((window == pipe.mask_id).sum())  # one step per token to write
    greedy = "temperature" not in params.model_fields_set
    temperature = 0.0 if greedy else params.temperature
    defaults = answer_defaults(pipe)
    sampler = params.sampler if "sampler" in params.model_fields_set else defaults["sampler"]
    draws = params.draws or defaults["draws"]
    echo = {"prompt": params.prompt, "nfe": steps, "sampler": sampler, "draws": draws}
    echo |= {"accept": params.accept}
    echo |= {"seed": params.seed, "n": params.n, "temperature": temperature}
    echo |= {"top_k": params.top_k, "top_p": params.top_p}

    def run(ctx: JobContext) -> None:
        ctx.plan(pipe.context - start if pipe.is_ar else steps)  # calls of one batch
        counted = dataclasses.replace(pipe, net=Counted(pipe.net, ctx.step))
        x = window.repeat(params.n, 1)
        out = fill(
            counted, x, nfe=steps, sampler=sampler, seed=params.seed,
            temperature=temperature, top_k=params.top_k, top_p=params.top_p,
            draws=draws, accept=params.accept,
        )  # fmt: skip
        weights = pipe.checkpoint.files[f"{pipe.weights}.safetensors"]
        base = {"model": entry.id, "checkpoint_sha256": hashlib.sha256(weights).hexdigest()}
        for i, row in enumerate(out):
            text = response_text(pipe.tokenizer, row[start:].tolist())
            meta = base | echo | {"seed": params.seed + i, "index": i}
            ctx.save(lambda p, t=text: p.write_text(t, encoding="utf-8"), "txt",
                     "text/plain; charset=utf-8", "text", meta)  # fmt: skip
            record = json.dumps({"text": text, "metadata": meta}, ensure_ascii=False, indent=1)
            ctx.save(lambda p, r=record: p.write_text(r, encoding="utf-8"), "json",
                     "application/json", "record", meta)  # fmt: skip

    return echo, run


def _generate(pipe, model_id, params, template, length, nfe, echo, ctx: JobContext) -> None:
    if pipe.is_ar:
        given = 0 if template is None else int((template != pipe.mask_id).sum())
        ctx.plan(max(1, length - given))  # one network call per generated position
    elif pipe.is_block:  # a step or more per block, and a cache feed per finished block
        blocks = math.ceil(length / pipe.objective.block)
        ctx.plan(max(nfe, blocks) + blocks - 1)
    else:
        ctx.plan(nfe * math.ceil(length / pipe.context))  # semi-AR: a pass per block
    counted = dataclasses.replace(pipe, net=Counted(pipe.net, ctx.step))
    out = counted.generate(
        params.n,
        length,
        template=template,
        nfe=nfe,
        sampler=params.sampler,
        seed=params.seed,
        temperature=params.temperature,
        top_k=params.top_k,
        top_p=params.top_p,
    )
    mark = torch.ones(length, dtype=torch.bool)  # generated positions, bracketed in `marked`
    if template is not None:
        mark[: len(template)] = template == pipe.mask_id
    weights = pipe.checkpoint.files[f"{pipe.weights}.safetensors"]
    base = {"model": model_id, "checkpoint_sha256": hashlib.sha256(weights).hexdigest()}
    base |= {
        "weights": pipe.weights,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    for i, ids in enumerate(out):
        text = pipe.decode(ids)
        meta = base | echo | {"seed": params.seed + i, "index": i, "n": params.n}
        meta |= {"marked": pipe.decode(ids, mark=mark)}
        ctx.save(lambda p, t=text: p.write_text(t, encoding="utf-8"), "txt",
                 "text/plain; charset=utf-8", "text", meta)  # fmt: skip
        record = json.dumps({"text": text, "metadata": meta}, ensure_ascii=False, indent=1)
        ctx.save(lambda p, r=record: p.write_text(r, encoding="utf-8"), "json",
                 "application/json", "record", meta)  # fmt: skip
