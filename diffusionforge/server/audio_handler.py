"""Audio models (spoken digits and audio folders; mel or waveform route): WAVs out.

Runs the steps of `AudioPipeline.generate` (pipelines/audio.py) as `diffusionforge
generate-audio` does, with the sampler's callback as the progress: the network samples every
clip of the request in one batch (clip i from its own generator seeded `seed + i`), then the
route decodes them (Griffin-Lim for mel spectrograms). Each clip is a 16-bit WAV; a PNG of the
clips' spectrograms is the request's picture.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field

from diffusionforge.core.samplers import SAMPLERS
from diffusionforge.data.audio import save_wav
from diffusionforge.pipelines.audio import AudioPipeline, load_audio_pipeline
from diffusionforge.plot import spectrogram_image as spectrograms
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
    MAX_GUIDANCE,
    MAX_SEED,
    SamplerName,
    ScheduleName,
    labels_for,
)
from diffusionforge.server.jobs import JobContext
from diffusionforge.server.settings import Limits

DEFAULT_NFE, DEFAULT_GUIDANCE = 16, 2.0  # `diffusionforge generate-audio`'s defaults


class AudioParams(BaseModel):
    """Generate audio clips from a class-conditional (or unconditional) audio model."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    model: str = Field(pattern=ID_PATTERN, description="a model id from GET /api/models")
    class_: int | str | None = Field(
        None, alias="class", description="class index or name; null: the classes in turn"
    )
    guidance: float = Field(DEFAULT_GUIDANCE, ge=0, le=MAX_GUIDANCE, allow_inf_nan=False)
    nfe: int = Field(
        DEFAULT_NFE, ge=1, validation_alias=NFE_ALIAS, description="network evaluations per clip"
    )
    sampler: SamplerName | None = Field(None, description="null: recommended for the NFE")
    schedule: ScheduleName | None = Field(None, description="null: recommended for the NFE")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="clip i uses seed + i")
    n: int = Field(4, ge=1, description="number of clips")


class AudioHandler(Handler):
    name = "audio"
    summary = "audio model"
    Params = AudioParams

    def accepts(self, config: dict) -> bool:
        return model_kinds(config)[0] != "autoencoder"

    def describe(self, entry: ModelEntry) -> dict:
        header, audio = entry.config["diffusionforge"], entry.config["data"].get("audio", {})
        return {
            "classes": [str(c) for c in header.get("classes") or []],
            "rate": audio.get("rate"),
            "seconds": audio.get("seconds"),
            "route": audio.get("representation"),
            "defaults": {"nfe": DEFAULT_NFE, "guidance": DEFAULT_GUIDANCE},
            "samplers": list(SAMPLERS),
        }

    def load(self, path: Path) -> AudioPipeline:
        return load_audio_pipeline(path)

    def prepare(self, params: AudioParams, entry: ModelEntry, limits: Limits) -> tuple[dict, Run]:
        if params.nfe > limits.max_nfe:
            raise RequestError("nfe", f"at most {limits.max_nfe}, got {params.nfe}")
        if params.n > limits.max_n:
            raise RequestError("n", f"at most {limits.max_n} clips per request, got {params.n}")
        classes = self.describe(entry)["classes"]
        labels = labels_for(params.class_, classes, params.n)
        # the pipeline's plan: its checkpoint's fitted schedule for the NFE when it has one
        plan = entry.load().pipe.plan(params.nfe, params.sampler, params.schedule)
        sampler, schedule = plan.sampler, plan.schedule
        guidance = params.guidance if labels else 1.0
        echo = {"class": params.class_, "n": params.n, "seed": params.seed, "guidance": guidance}
        echo |= {"nfe": params.nfe, "sampler": sampler, "schedule": schedule}

        def run(ctx: JobContext) -> None:
            _draw(entry.load(), entry.id, labels, plan, echo, ctx)

        return echo, run


def _draw(pipe: AudioPipeline, model_id: str, labels, plan, echo: dict, ctx: JobContext) -> None:
    n, seed = echo["n"], echo["seed"]
    ctx.plan(plan.steps)  # one batch: a step moves every clip
    seeds = [seed + i for i in range(n)]
    lab = None if labels is None else torch.tensor(labels)
    waves = pipe.generate(
        seeds, labels=lab, guidance=echo["guidance"], plan=plan, callback=ctx.step, check=ctx.check
    )
    weights = pipe.pipe.checkpoint.files[f"{pipe.pipe.weights}.safetensors"]
    base = {k: v for k, v in echo.items() if k != "n"} | {"model": model_id, "rate": pipe.rate}
    base |= {"route": pipe.route, "weights": pipe.pipe.weights, "threads": torch.get_num_threads()}
    base["checkpoint_sha256"] = hashlib.sha256(weights).hexdigest()
    names = [pipe.classes[lab] if labels is not None else "sample" for lab in labels or [0] * n]
    titles = [f"{name} (seed {s})" for name, s in zip(names, seeds, strict=True)]
    picture = spectrograms(waves, pipe.rate, titles, cols=min(8, n))
    grid_rec = base | {"count": n, "classes": labels}
    ctx.save(lambda f: picture.save(f, format="PNG"), "png", "image/png", "grid", grid_rec)
    for i, wave in enumerate(waves):
        rec = base | {"seed": seeds[i], "index": i, "class": None if labels is None else labels[i]}
        rec["class_name"] = names[i] if labels is not None else None
        ctx.save(lambda f, w=wave: save_wav(f, w, pipe.rate), "wav", "audio/wav", "audio", rec)
        record = json.dumps(rec)
        ctx.save(lambda f, r=record: f.write_text(r), "json", "application/json", "record", rec)
