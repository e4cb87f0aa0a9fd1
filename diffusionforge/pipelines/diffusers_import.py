"""Models made with diffusers, read at the loading edge (DESIGN.md, "foreign models at the edge").

A diffusers folder is either one network (`config.json` + `diffusion_pytorch_model.safetensors`,
optionally a `scheduler_config.json` beside it or in `../scheduler/`) or a pipeline
(`model_index.json` with `unet/` or `transformer/`, `scheduler/`, and for Stable Diffusion
`vae/`, `text_encoder/`, `tokenizer/`). The networks are built by diffusers' and transformers'
own classes (optional extra `diffusionforge[diffusers]`); this module only checks the folder and
hands the scheduler config to `diffusers_noise.noise_process`, which makes it our seam: a
`core.denoiser.DiscreteTimesteps` table (or the flow adapter) around the network, so every
sampler and schedule of ours runs on it.

Everything is checked before a tensor is allocated: safetensors only (a `.bin`/`.ckpt`/`.pt`
folder is refused: unpickling runs code), every component a pipeline names is present, the
`_class_name` is one we know, every weight's shape in the safetensors header matches the network
the config builds (built on the meta device, so nothing is allocated), and the weights fit in the
memory of the device asked for. Each problem is one `CheckpointError` line.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from diffusionforge.errors import CheckpointError, UserError
from diffusionforge.limits import limit

EXTRA = "pip install 'diffusionforge[diffusers]'"
# network classes we build (diffusers' names) -> how they are called (see _net)
NETWORKS = (
    "UNet2DModel",
    "UNet2DConditionModel",
    "DiTTransformer2DModel",
    "Transformer2DModel",
    "SD3Transformer2DModel",
)
_SD = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
PIPELINES = {  # pipeline class -> the components it needs
    "DDPMPipeline": ("unet", "scheduler"),
    "DDIMPipeline": ("unet", "scheduler"),
    "DiTPipeline": ("transformer", "vae", "scheduler"),
    "StableDiffusionPipeline": _SD,
    "StableDiffusionImg2ImgPipeline": _SD,
    "StableDiffusionInpaintPipeline": _SD,
}
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def require_extra() -> None:
    """One line naming the extra when diffusers or transformers is missing."""
    for name in ("diffusers", "transformers"):
        try:
            __import__(name)
        except ImportError:
            raise UserError(
                f"diffusers folders need the optional packages diffusers and transformers "
                f"({name} is missing): {EXTRA}"
            ) from None


_MAX_JSON_BYTES = 64 * 2**20  # a config, index or scheduler file; never a device or a giant


def read_json(path: Path) -> dict:
    try:
        if path.exists() and (not path.is_file() or path.stat().st_size > _MAX_JSON_BYTES):
            raise CheckpointError(f"{path}: not a regular JSON file under 64 MiB")
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({type(e).__name__})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return raw


def is_diffusers_folder(path: str | Path) -> bool:
    """A folder with model_index.json, or a config.json naming a diffusers `_class_name`
    (our own checkpoints' config.json has a "diffusionforge" header instead)."""
    p = Path(path).expanduser()
    if (p / "model_index.json").is_file():
        return True
    if not (p / "config.json").is_file():
        return False
    try:
        if (p / "config.json").stat().st_size > _MAX_JSON_BYTES:
            return False
        raw = json.loads((p / "config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return False
    return isinstance(raw, dict) and "_class_name" in raw and "diffusionforge" not in raw


# --- weights files: safetensors only, headers read without touching the data ---------------


def weight_files(folder: Path, class_name: str = "diffusers.DiffusionPipeline") -> list[Path]:
    """The safetensors files of one component (sharded ones through their index), or one line
    saying why the folder cannot be loaded."""
    for stem in ("diffusion_pytorch_model", "model"):
        if (folder / f"{stem}.safetensors").is_file():
            return [folder / f"{stem}.safetensors"]
        index = folder / f"{stem}.safetensors.index.json"
        if index.is_file():
            shards = sorted(set(read_json(index).get("weight_map", {}).values()))
            missing = [s for s in shards if not (folder / s).is_file()]
            if not shards or missing:
                raise CheckpointError(f"{index}: shard {missing[0] if missing else '?'} missing")
            return [folder / s for s in shards]
    pickles = sorted(p.name for p in folder.glob("*") if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise CheckpointError(
            f"{folder}: only pickle weights ({pickles[0]}); diffusionforge loads safetensors "
            "only, because unpickling can run code. Convert once where you trust the file: "
            f'python -c "import {class_name.split(".")[0]}; '
            f"{class_name}.from_pretrained('{folder}').save_pretrained('{folder}-safetensors')\""
        )
    raise CheckpointError(f"{folder}: no diffusion_pytorch_model.safetensors or model.safetensors")


_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1}
_DTYPE_BYTES |= {"U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def header_shapes(files: list[Path]) -> dict[str, tuple[tuple[int, ...], str]]:
    """name -> (shape, dtype) from the safetensors headers (8-byte length + JSON)."""
    out: dict[str, tuple[tuple[int, ...], str]] = {}
    for f in files:
        try:
            with f.open("rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                if n > 100_000_000 or n > f.stat().st_size:
                    raise ValueError("header length")
                header = json.loads(fh.read(n))
        except (OSError, ValueError, struct.error, UnicodeDecodeError, RecursionError):
            raise CheckpointError(f"{f}: not a safetensors file (unreadable header)") from None
        if not isinstance(header, dict):
            raise CheckpointError(f"{f}: not a safetensors file (header is not an object)")
        for name, info in header.items():
            if name == "__metadata__":
                continue
            shape = info.get("shape") if isinstance(info, dict) else None
            ok = isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)
            if not ok or not isinstance(info.get("dtype"), str):
                raise CheckpointError(f"{f}: not a safetensors file (tensor {name!r} malformed)")
            out[name] = (tuple(info["shape"]), info.get("dtype"))
    return out


def weight_bytes(shapes: dict[str, tuple[tuple[int, ...], str]], dtype: torch.dtype) -> int:
    """Bytes the weights take once loaded in `dtype` (floating tensors are cast to it)."""
    size = torch.empty((), dtype=dtype).element_size()
    total = 0
    for shape, dt in shapes.values():
        n = 1
        for s in shape:
            n *= s
        total += n * (size if dt.startswith(("F", "BF")) else _DTYPE_BYTES.get(dt, 4))
    return total


def available_memory(device: torch.device) -> int:
    """Free bytes on the device: CUDA's free memory, or MemAvailable of /proc/meminfo."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def check_shapes(model: torch.nn.Module, shapes: dict, where: Path) -> None:
    """The network built from config.json (on the meta device) against the file's header."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    ignore = ("position_ids",)  # a buffer older transformers checkpoints store and newer rebuild
    for name, shape in expected.items():
        if name not in shapes:
            if not name.endswith(ignore):
                raise CheckpointError(
                    f"{where}: config.json builds weight {name} {list(shape)}, absent from the "
                    "safetensors file (config and weights do not match)"
                )
        elif shapes[name][0] != shape:
            raise CheckpointError(
                f"{where}: weight {name} has shape {list(shapes[name][0])} in the safetensors "
                f"file but {list(shape)} in the network config.json builds (config and weights "
                "do not match)"
            )
    extra = [k for k in shapes if k not in expected and not k.endswith(ignore)]
    if extra:
        raise CheckpointError(
            f"{where}: the safetensors file holds {len(extra)} weights the config does not "
            f"build, e.g. {extra[0]} (config and weights do not match)"
        )


# --- components ----------------------------------------------------------------------------


@dataclass
class Component:
    """One checked component folder: its config, class and safetensors header."""

    folder: Path
    class_name: str
    config: dict
    files: list[Path]
    shapes: dict


def _library_class(class_name: str) -> Any:
    import diffusers
    import transformers

    if class_name in NETWORKS or class_name == "AutoencoderKL":
        return getattr(diffusers, class_name)
    if class_name in ("CLIPTextModel", "CLIPTextModelWithProjection"):
        return getattr(transformers, class_name)
    raise CheckpointError(f"unknown class {class_name!r}")


def inspect_component(folder: Path, allowed: tuple[str, ...], what: str) -> Component:
    """Read and check a component folder without building anything of real size."""
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: the {what} folder is missing (a pipeline needs it)")
    cfg = read_json(folder / "config.json")
    name = cfg.get("_class_name") or (cfg.get("architectures") or [None])[0]
    if name not in allowed:
        raise CheckpointError(
            f"{folder / 'config.json'}: unknown _class_name {name!r} for the {what} "
            f"(expected one of {', '.join(allowed)})"
        )
    for key, v in cfg.items():  # layer counts: 10**6 layers would take hours to build on meta
        counts = v if isinstance(v, list) else [v]
        if "layers" in key and any(type(c) is int and c > limit("depth") for c in counts):
            raise CheckpointError(
                f"{folder / 'config.json'}: {key} {v!r} is above the limit of {limit('depth')} "
                "(raise with DIFFUSIONFORGE_MAX_DEPTH)"
            )
    lib = f"transformers.{name}" if name.startswith("CLIP") else f"diffusers.{name}"
    files = weight_files(folder, lib)
    return Component(folder, name, cfg, files, header_shapes(files))


def _build_meta(comp: Component) -> torch.nn.Module:
    cls = _library_class(comp.class_name)
    with torch.device("meta"):
        try:
            if comp.class_name.startswith("CLIP"):
                import transformers

                config = transformers.CLIPTextConfig.from_pretrained(comp.folder)
                return cls(config)
            return cls.from_config(cls.load_config(comp.folder))
        except (TypeError, ValueError, KeyError, AttributeError, RuntimeError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise CheckpointError(
                f"{comp.folder / 'config.json'}: cannot build it ({msg})"
            ) from None


def check_components(comps: list[Component], dtype: torch.dtype, device: torch.device) -> None:
    """Shapes of every component against its config, then the total size against memory."""
    for comp in comps:
        check_shapes(_build_meta(comp), comp.shapes, comp.folder)
    need = sum(weight_bytes(c.shapes, dtype) for c in comps)
    free = available_memory(device)
    if need > free:
        raise CheckpointError(
            f"{comps[0].folder.parent}: the weights need {need / 2**30:.2f} GiB in {dtype} but "
            f"{device} has {free / 2**30:.2f} GiB free; try --dtype float16 or another device"
        )


def load_component(comp: Component, dtype: torch.dtype, device: torch.device) -> torch.nn.Module:
    """The real network, through its library's from_pretrained (safetensors, local files)."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()  # one line per problem, no progress noise
    transformers.utils.logging.disable_progress_bar()
    cls = _library_class(comp.class_name)
    kw: dict[str, Any] = {"use_safetensors": True, "local_files_only": True}
    if comp.class_name.startswith("CLIP"):  # transformers 5 renamed torch_dtype to dtype
        new = int(transformers.__version__.split(".")[0]) >= 5
        kw["dtype" if new else "torch_dtype"] = dtype
    else:
        kw["torch_dtype"] = dtype
    model = cls.from_pretrained(comp.folder, **kw)
    return model.to(device).eval().requires_grad_(False)


def load_tokenizer(folder: Path, max_length: int) -> Any:
    import transformers

    if not folder.is_dir():
        raise CheckpointError(f"{folder}: the tokenizer folder is missing (a pipeline needs it)")
    if not ((folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()):
        if not (folder / "tokenizer.json").is_file():
            raise CheckpointError(
                f"{folder}: no tokenizer files (vocab.json + merges.txt or tokenizer.json)"
            )
    try:
        tok = transformers.CLIPTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, TypeError) as e:
        raise CheckpointError(f"{folder}: cannot read the tokenizer ({type(e).__name__})") from None
    if tok.model_max_length > max_length:
        tok.model_max_length = max_length
    return tok
