"""Bundle a checkpoint compactly: `python -m diffusionforge.assets.half CHECKPOINT NAME`.

Only the EMA weights (what pipelines sample with), stored in float16 as the folder's
`model.safetensors`: a quarter of the bytes of `python -m diffusionforge.assets`, which keeps raw
and EMA weights in float32. Loading casts them
back to float32 (load_state_dict copies into the float32 model). Files a model needs besides
its weights (a latent model's autoencoder/, a layout model's planner/, a text model's
tokenizer.json) are copied as they are.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from diffusionforge.train.checkpoint import (
    bytes_to_tensors,
    resolve_checkpoint,
    tensors_to_bytes,
    write_folder,
)


def bundle_half(checkpoint: str | Path, name: str, dest: Path | None = None) -> Path:

    ckpt = resolve_checkpoint(checkpoint)
    files = {"config.json": ckpt.files["config.json"]}
    for rel in ("model.safetensors",):
        src = "ema.safetensors" if ckpt.has("ema.safetensors") else rel
        tensors = bytes_to_tensors(ckpt.files[src], src)
        # Fourier frequencies stay float32: rounding them shifts every noise embedding.
        half = {
            k: v.half() if v.is_floating_point() and not k.endswith("freqs") else v
            for k, v in tensors.items()
        }
        files[rel] = tensors_to_bytes({k: v.contiguous() for k, v in half.items()})
    files |= {
        rel: b
        for rel, b in ckpt.files.items()
        if rel.startswith(("autoencoder/", "planner/")) or rel == "tokenizer.json"
    }
    dest = dest or Path(__file__).parent / name
    return write_folder(dest, files, step=ckpt.step)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m diffusionforge.assets.half CHECKPOINT NAME", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    print(f"bundled {args[0]} as {bundle_half(args[0], args[1])} (float16 weights)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
