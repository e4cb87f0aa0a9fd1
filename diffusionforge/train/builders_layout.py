"""Builders for layout-grounded text-to-image (nets/layout.py, data/layouts.py): the scenes
dataset with each image's true boxes as its condition, and the prompt -> layout planner that
travels in the checkpoint under ``planner/``.

``python -m diffusionforge.train.builders_layout CHECKPOINT`` retrains a checkpoint's planner
in place: the network only ever sees boxes, so a better planner needs no new diffusion training.
"""

from __future__ import annotations

import json

import torch

from diffusionforge.data import scene_captions, scenes
from diffusionforge.data.arrays import ArrayDataset, to_tensor_images
from diffusionforge.data.layouts import PLANNER_DIR, fit_planner, pack_objects
from diffusionforge.data.word_tokenizer import WordTokenizer
from diffusionforge.errors import CheckpointError
from diffusionforge.nets.layout import LayoutPlanner
from diffusionforge.train.checkpoint import resolve_checkpoint, tensors_to_bytes, write_folder
from diffusionforge.train.config import Config, from_dict


def layout_scenes_dataset(cfg: Config) -> ArrayDataset:
    """Scenes for a layout-grounded model (nets/layout.py): cond rows are the boxes and phrases
    each image was drawn from; the prompt -> layout planner (data/layouts.py) is trained here on
    the same split's captions and travels in every checkpoint under planner/."""
    d, t = cfg.data, cfg.model.text_encoder
    if not t.vocab:
        t.vocab = list(scene_captions.VOCABULARY)
    tok = WordTokenizer(t.vocab, t.max_tokens)
    images, _, _, placed = scenes.make_scenes_with_layouts(d.size, d.image_size, "train", d.seed)
    cond = torch.stack([pack_objects(objs, tok) for objs in placed])
    planner, report = fit_planner(tok, seed=d.seed, steps=t.planner_steps)
    print(f"layout planner: {json.dumps(report)}", flush=True)
    out = ArrayDataset(
        to_tensor_images(images).contiguous(),
        seed=cfg.train.seed,
        augment=d.augment,
        jitter=d.jitter,
        cond=cond,
        null_cond=torch.zeros_like(cond[0]),
    )
    out.extra_files = planner_files(planner, report)
    return out


def planner_files(planner: LayoutPlanner, report: dict) -> dict[str, bytes]:
    meta = {"heads": planner.head_sizes, "dim": planner.encoder.dim}
    meta["depth"] = len(planner.encoder.layers)
    return {
        f"{PLANNER_DIR}/planner.safetensors": tensors_to_bytes(planner.state_dict()),
        f"{PLANNER_DIR}/planner.json": json.dumps({**meta, "report": report}, indent=2).encode(),
    }


def load_planner(checkpoint, tokenizer: WordTokenizer) -> LayoutPlanner:
    """The planner a layout-grounded checkpoint (train.checkpoint.Checkpoint) carries."""
    rel = f"{PLANNER_DIR}/planner.safetensors"
    if not checkpoint.has(rel):
        raise CheckpointError(f"{checkpoint.path}: layout-grounded model without {rel}")
    meta = checkpoint.json(f"{PLANNER_DIR}/planner.json")
    planner = LayoutPlanner(
        tokenizer.vocab_size, tokenizer.max_tokens, meta["heads"], meta["dim"], meta["depth"]
    )
    planner.load_state_dict(checkpoint.tensors(rel))
    return planner.eval().requires_grad_(False)


def replan(checkpoint: str, steps: int | None = None) -> dict:
    """Retrain the planner of a layout-grounded checkpoint folder in place (atomically), as its
    config's data.seed and model.text_encoder.planner_steps (or ``steps``) say: a better
    planner needs no new diffusion training, since the network only ever sees boxes."""
    ckpt = resolve_checkpoint(checkpoint)
    raw = {k: v for k, v in ckpt.config.items() if k != "diffusionforge"}  # minus the header
    cfg = from_dict(raw, source=f"{ckpt.path}/config.json")
    t = cfg.model.text_encoder
    if t.kind != "layout":
        raise CheckpointError(f"{ckpt.path}: not a layout-grounded model")
    tok = WordTokenizer(t.vocab, t.max_tokens)
    planner, report = fit_planner(tok, seed=cfg.data.seed, steps=steps or t.planner_steps)
    files = {k: v for k, v in ckpt.files.items() if not k.startswith(f"{PLANNER_DIR}/")}
    write_folder(ckpt.path, files | planner_files(planner, report), step=ckpt.step)
    return report


if __name__ == "__main__":  # python -m diffusionforge.train.builders_layout CHECKPOINT
    import sys

    torch.set_num_threads(1)
    if len(sys.argv) != 2:
        print("usage: python -m diffusionforge.train.builders_layout CHECKPOINT", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(replan(sys.argv[1])))
