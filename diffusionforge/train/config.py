"""Training configuration: nested dataclasses with typed defaults, TOML presets, `--set` overrides.

A run is described completely by one `Config`. It is built from a preset (a TOML file shipped in
`diffusionforge/train/presets/`) or a user TOML file, then `--set key=value` overrides, and the
resolved result is written as `config.json` next to every checkpoint, so a checkpoint folder can
rebuild its model with no other file. Keys and types are checked here, values in config_checks.py;
each problem is a one-line `ConfigError` naming the key."""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from diffusionforge.core.plan import Plan
from diffusionforge.errors import ConfigError
from diffusionforge.train.config_checks import parse_duration as parse_duration
from diffusionforge.train.config_checks import validate


@dataclass
class MLPConfig:
    hidden: int = 256  # width of the residual blocks
    depth: int = 4  # number of residual blocks
    emb_dim: int = 64  # width of the Fourier noise-level embedding


@dataclass
class UNetConfig:
    # A key of nets.unet.UNET_PRESETS; the fields below override it when set (0 / empty: keep).
    preset: str = "small"
    channels: int = 0
    channel_mult: list[int] = field(default_factory=list)
    num_res_blocks: int = 0
    attn_resolutions: list[int] | None = None  # None: the preset's; [] for no attention
    dropout: float = 0.0
    gradient_checkpointing: bool = False


@dataclass
class DiTConfig:
    # A key of nets.dit.DIT_PRESETS; the fields below override it when set (0: keep).
    preset: str = "tiny"
    dim: int = 0
    depth: int = 0
    heads: int = 0
    patch_size: int = 0
    dropout: float = 0.0
    gradient_checkpointing: bool = False


@dataclass
class TransformerConfig:
    # A key of nets.transformer.TRANSFORMER_PRESETS; the fields below override it when set (0:
    # keep). The same backbone is bidirectional for formulation.kind = "masked" and causal for
    # "ar". vocab_size 0: the tokenizer's, filled in when the text data is built.
    preset: str = "small"
    dim: int = 0
    depth: int = 0
    heads: int = 0
    mlp_ratio: int = 4
    dropout: float = 0.0
    vocab_size: int = 0
    positions: str = "rope"  # "learned": one embedding per position; "grid": row + column
    grid_width: int = 0  # positions "grid": cells per row (Sudoku: 9)


@dataclass
class TextEncoderConfig:
    # Text conditioning of a unet/dit (nets/text_encoder.py); "" leaves the network unchanged.
    # "small": a trainable transformer over word ids (data/word_tokenizer.py); "minilm": the
    # frozen all-MiniLM-L6-v2 of the optional extra diffusionforge[minilm].
    kind: str = ""
    vocab: list[str] = field(default_factory=list)  # small: the words; empty: from the captions
    max_tokens: int = 24  # longer prompts are cut (with a warning) to this many tokens
    dim: int = 128  # small: width of the encoder and of the tokens cross-attention reads
    depth: int = 2
    heads: int = 4
    cross_attn_resolutions: list[int] = field(default_factory=lambda: [16, 8])  # unet only
    # layout: channels of the painted layout map the network reads as extra input (0: none)
    spatial_channels: int = 16
    planner_steps: int = 600  # layout: training steps of the prompt -> layout planner


@dataclass
class AutoencoderConfig:
    # model.kind = "autoencoder" (nets/autoencoder.py, trained with formulation.kind = "vae"):
    # a key of AUTOENCODER_PRESETS; the fields below override it when set (0 / empty: keep).
    preset: str = "f4-small"
    latent_channels: int = 4
    channels: int = 0
    channel_mult: list[int] = field(default_factory=list)  # its length - 1 = log2(factor)
    num_res_blocks: int = 0
    decoder_blocks: int = 0  # 0: as many as the encoder
    patch_size: int = 0  # pixels folded into channels before the first layer (0: preset's)


@dataclass
class DiffWaveConfig:
    # nets.diffwave.DiffWave: residual layers with dilation 2^(i mod cycle)
    channels: int = 64
    layers: int = 12
    cycle: int = 12


@dataclass
class ModelConfig:
    kind: str = "mlp"  # a key of train.builders.MODELS
    # Class labels the network embeds (plus the null label at this index, for guidance).
    # -1: the dataset's class count, filled in when a run starts; 0: unconditional.
    num_classes: int = -1
    mlp: MLPConfig = field(default_factory=MLPConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    dit: DiTConfig = field(default_factory=DiTConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    diffwave: DiffWaveConfig = field(default_factory=DiffWaveConfig)


@dataclass
class TextDataConfig:
    # data.kind = "text" (data.path: a UTF-8 file or folder), "fortunes" or "grammar"
    tokenizer: str = "char"  # "char" or "bpe" (byte-level BPE trained on the training text)
    vocab_size: int = 1024  # bpe: merges learned up to this many tokens
    length: int = 128  # tokens per training window (the model's context)
    heldout: float = 0.05  # fraction of documents held out for evaluation (fortunes, text)
    subset: float = 1.0  # train on a fixed slice of this share of the training documents
    sentences: int = 20000  # grammar: training sentences drawn from the PCFG


@dataclass
class SudokuDataConfig:
    # data.kind "sudoku" (data/sudoku.py): `bases` puzzles (grid: full grids) x `variants` forms
    bases: int = 2000
    variants: int = 16
    min_givens: int = 25
    max_givens: int = 35
    format: str = "pairs"  # or "grid": whole solution grids, infilled (data.text.length 81)


@dataclass
class AudioDataConfig:
    # data.kind = "spoken-digits" (built-in, espeak-ng) or "audio" (data.path: a folder)
    rate: int = 8000  # every file is resampled to this rate (Hz)
    seconds: float = 1.0  # clip length: longer files are cut, shorter ones padded
    representation: str = "mel"  # "mel": log-mel image (n_mels x frames); "wave": samples
    n_mels: int = 32  # mel: image height; must equal the frame count seconds * rate / hop
    n_fft: int = 512
    hop: int = 250
    per_voice: int = 2  # spoken-digits: clips per (accent, voice variant, digit)


@dataclass
class DataConfig:
    kind: str = "toy"  # toy (2-D), npy ((N, ...) array), digits/glyphs, images (folder or .npy)
    name: str = "moons"  # toy set: moons, swissroll, ring, checkerboard
    path: str = ""  # .npy file when kind = "npy"; folder or .npy when kind = "images"
    labels: str = ""  # kind = "images" with a .npy stack: optional int labels .npy (N,)
    image_size: int = 0  # resize/centre-crop side of image folders; 0: from the data (32 else)
    channels: int = 3  # kind = "images": 1 (grayscale) or 3 (RGB)
    cache_mb: int = 256  # image folders decoding to at most this many MiB are held in memory
    num_workers: int = 0  # larger folders stream: decoding processes (0: inline; data/stream.py)
    size: int = 20000  # number of toy points generated
    seed: int = 0  # seed that generates the toy points
    shuffle: bool = True
    augment: str = "none"  # "none", "flip" (mirror the last axis: image width) or "jitter"
    jitter: float = 0.02  # standard deviation of the jitter augmentation
    # Latent diffusion: train on the scaled latents of this autoencoder checkpoint ("": pixels)
    autoencoder: str = ""
    text: TextDataConfig = field(default_factory=TextDataConfig)
    sudoku: SudokuDataConfig = field(default_factory=SudokuDataConfig)
    audio: AudioDataConfig = field(default_factory=AudioDataConfig)


@dataclass
class FormulationConfig:
    kind: str = "edm"  # a key of core.formulations.FORMULATIONS
    # EDM (Karras et al. 2022)
    sigma_data: float = 0.5
    p_mean: float = -1.2
    p_std: float = 1.2
    # VP (DDPM family)
    schedule: str = "linear"
    prediction: str = "eps"
    min_snr_gamma: float | None = None
    # Flow matching (rectified flow)
    shift: float = 1.0
    logit_mean: float = 0.0
    logit_std: float = 1.0
    # KL-regularised autoencoder (kind = "vae"): weight of KL / pixels against the per-pixel MSE
    kl_weight: float = 1e-6
    # Masked diffusion (kind = "masked", or "block" inside each block): core.discrete.SCHEDULES
    mask_schedule: str = "loglinear"
    block_size: int = 4  # kind = "block" (core/block_diffusion.py): divides data.text.length


@dataclass
class OptimConfig:
    name: str = "adamw"  # "adam" or "adamw"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    warmup_steps: int = 100  # linear warm-up from 0
    decay: str = "cosine"  # after warm-up: "constant", "linear", "cosine" or "rsqrt"
    min_lr_ratio: float = 0.0  # floor of the linear/cosine decay, as a fraction of lr


@dataclass
class EMAConfig:
    kind: str = "classic"  # "none", "classic" (fixed decay) or "power" (EDM2 power function)
    decay: float = 0.999  # classic: per-step decay, ramped up as min(decay, (1+t)/(10+t))
    stds: list[float] = field(default_factory=lambda: [0.05, 0.10])  # power: tracked sigma_rel
    snapshot_every: int = 0  # power: save snapshots for post-hoc EMA every N steps (0: never)


@dataclass
class TrainConfig:
    steps: int = 4000  # length of the LR schedule and the step budget
    batch_size: int = 256  # global, over processes x accumulation; 0: by image side (auto_size)
    grad_accum: int = 1
    mixed_precision: str = "no"  # "no", "bf16" or "fp16"
    compile: bool = False  # torch.compile the network for training (GPUs; minutes to compile)
    seed: int = 0
    threads: int = 0  # CPU threads for torch (0: torch's default); 1 suits small models best
    max_time: str = ""  # wall-clock budget such as "10m"; empty for none
    max_cpu_time: str = ""  # CPU-time budget of the process, e.g. "10m" (fair on a busy box)
    nan_limit: int = 5  # stop after this many non-finite steps in a row
    log_every: int = 50
    sample_every: int = 1000  # write a sample grid every N steps (0: never)
    ckpt_every: int = 1000  # write a checkpoint every N steps (0: only at the end)
    keep_last: int = 3  # keep this many newest checkpoints
    tensorboard: bool = True
    progress: bool = True
    # Classifier-free guidance training (Ho & Salimans 2022): each label is replaced by the null
    # label with this probability, drawn from (seed, step, micro-batch) like the noise.
    label_dropout: float = 0.0


@dataclass
class SampleConfig:
    sampler: str = "auto"  # a key of core.samplers.SAMPLERS, or "auto"
    schedule: str = "auto"  # a key of core.schedules.SCHEDULES, or "auto"
    nfe: int = 32  # network evaluations per sample
    n: int = 2000  # samples drawn for periodic grids (images: a row of n / classes per class)
    seed: int = 0
    guidance: float = 1.0  # classifier-free guidance scale of the periodic grids (1: none)

    def plan(
        self,
        nfe: int | None = None,
        sampler: str | None = None,
        schedule: str | Any | None = None,
        *,
        inpainting: bool = False,
        fitted: Any = None,
    ) -> Plan:
        """What is given, else these settings ("auto": the recommendation for the NFE), as a
        core.plan.Plan; `fitted`: the model's fitted schedules {steps: sigmas} (Plan.resolve).
        ValueError names an unknown sampler or schedule."""
        return Plan.resolve(
            nfe or self.nfe,
            sampler or (None if self.sampler == "auto" else self.sampler),
            schedule
            if schedule is not None
            else (None if self.schedule == "auto" else self.schedule),
            fitted,
            inpainting=inpainting,
        )


@dataclass
class Config:
    preset: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    formulation: FormulationConfig = field(default_factory=FormulationConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)


# --- presets --------------------------------------------------------------------------------


def preset_names() -> list[str]:
    folder = resources.files("diffusionforge.train") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_preset(name: str) -> Config:
    if name not in preset_names():
        raise ConfigError(f"unknown preset {name!r} (expected one of: {', '.join(preset_names())})")
    text = (resources.files("diffusionforge.train") / "presets" / f"{name}.toml").read_text()
    cfg = from_dict(_parse_toml(text, f"preset {name}"), source=f"preset {name}")
    cfg.preset = name
    return cfg


def load_config_file(path: str | Path) -> Config:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
    else:
        data = _parse_toml(path.read_text(errors="replace"), str(path))
    return from_dict(data, source=str(path))


def _parse_toml(text: str, source: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML ({e})") from None


# --- dict <-> dataclass, with type checks ---------------------------------------------------


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(data: dict, *, source: str = "config") -> Config:
    cfg = Config()
    _merge(cfg, data, prefix="", source=source)
    validate(cfg)
    return cfg


def _merge(obj: Any, data: dict, *, prefix: str, source: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'config'} must be a table")
    hints = typing.get_type_hints(type(obj))  # a run's config.json header is facts: skipped
    for key, value in ((k, v) for k, v in data.items() if prefix or k != "diffusionforge"):
        name = prefix + key
        if key not in hints:
            known = ", ".join(f.name for f in dataclasses.fields(obj))
            raise ConfigError(f"{source}: unknown key {name!r} (known here: {known})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _merge(current, value, prefix=name + ".", source=source)
        else:
            setattr(obj, key, _coerce(value, hints[key], name, source))


def _coerce(value: Any, tp: Any, name: str, source: str) -> Any:
    """Check `value` against the annotated type `tp`; ints widen to floats, nothing else."""
    args = typing.get_args(tp)
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], name, source)
    if typing.get_origin(tp) is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {name} expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{name}[{i}]", source) for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{source}: {name} expected true or false, got {value!r}")
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{source}: {name} expected an integer, got {value!r}")
    if not isinstance(value, tp):
        raise ConfigError(f"{source}: {name} expected {tp.__name__}, got {value!r}")
    return value


# --- overrides ------------------------------------------------------------------------------


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply `key=value` strings such as `optim.lr=2e-4` or `ema.stds=[0.05,0.1]`."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[a-z_]+(\.[a-z_0-9]+)*", key):
            raise ConfigError(f"--set {item!r}: expected key=value, such as optim.lr=2e-4")
        *parents, leaf = key.split(".")
        obj = cfg
        for i, part in enumerate(parents):
            if not dataclasses.is_dataclass(obj) or not hasattr(obj, part):
                raise ConfigError(f"--set {key}: unknown key {'.'.join(parents[: i + 1])!r}")
            obj = getattr(obj, part)
        hints = typing.get_type_hints(type(obj)) if dataclasses.is_dataclass(obj) else {}
        if leaf not in hints:
            raise ConfigError(f"--set {key}: unknown key {key!r}")
        if dataclasses.is_dataclass(getattr(obj, leaf)):
            raise ConfigError(f"--set {key}: is a section; set one of its keys")
        setattr(
            obj, leaf, _coerce(_parse_value(raw.strip(), hints[leaf]), hints[leaf], key, "--set")
        )
    validate(cfg)
    return cfg


def _parse_value(raw: str, tp: Any) -> Any:
    if tp is str:
        return raw
    if raw.lower() in ("none", "null") and type(None) in typing.get_args(tp):
        return None
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw  # let the type check name the problem
