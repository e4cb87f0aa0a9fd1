"""`info`, `sample`, `generate` and `eval` on a diffusers folder (pipelines/diffusers_model.py).

The `sample`, `eval`, `info` and `generate` commands come here when the checkpoint is a
diffusers folder (`handles`); flags mean what they mean for our own checkpoints, plus `--dtype` and
`--schedule scheduler` (the timesteps of the folder's own scheduler). No math here.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from diffusionforge.errors import UserError

DTYPE_CHOICES = ("float32", "float16", "bfloat16")


def handles(path: str | None) -> bool:
    if not path:
        return False
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.pipelines.diffusers_import import is_diffusers_folder

    return is_diffusers_folder(path)


def add_dtype_flag(parser) -> None:
    parser.add_argument(
        "--dtype",
        default="float32",
        help="diffusers folders: load the weights in float32 (default), float16 or bfloat16",
    )


def _device(text: str):
    # deferred: loaded only when this command runs, so `--help` stays fast
    import torch

    if text == "auto":  # sample's default: the GPU when there is one
        text = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except RuntimeError:
        raise UserError(f"--device: expected cpu, cuda or cuda:N, got {text!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {text}: no CUDA device is available here")
    return device


def _load(args):
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.cli.common import resolve_device
    from diffusionforge.pipelines.diffusers_model import load

    dtype = getattr(args, "dtype", "float32")
    if dtype not in DTYPE_CHOICES:
        raise UserError(f"--dtype: expected one of {', '.join(DTYPE_CHOICES)}, got {dtype!r}")
    if not hasattr(args, "device"):  # `info`: no --device flag
        return load(args.checkpoint, dtype=dtype, device=_device("cpu"))
    device = resolve_device(args)  # the weights are loaded in --dtype (no autocast)
    return load(args.checkpoint, dtype=dtype, device=device)


def _settings(args, model, nfe: int, *, inpainting: bool = False) -> dict:
    """samples.json's settings: the names generate resolves, the network's weights hash."""
    # deferred: loaded only when this command runs, so `--help` stays fast
    import hashlib

    sampler, schedule = model.names(nfe, args.sampler, args.schedule, inpainting=inpainting)
    h = hashlib.sha256()
    net_dir = next((model.path / d for d in ("unet", "transformer") if (model.path / d).is_dir()),
                   model.path)  # fmt: skip
    for f in sorted(net_dir.glob("*.safetensors")):
        with open(f, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(block)
    return {
        "model": str(model.path), "checkpoint_sha256": h.hexdigest(), "sampler": sampler,
        "schedule": schedule, "nfe": nfe, "seed": args.seed, "device": args.device,
        "dtype": str(model.dtype).split(".")[-1],
    }  # fmt: skip


def _check_sampling(args) -> None:
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.core.samplers import SAMPLERS
    from diffusionforge.core.schedules import SCHEDULES

    if args.nfe is not None and args.nfe <= 0:
        raise UserError(f"--nfe: expected a positive number of steps, got {args.nfe}")
    if args.sampler and args.sampler not in SAMPLERS:
        raise UserError(f"--sampler: expected one of {', '.join(SAMPLERS)}, got {args.sampler!r}")
    if args.schedule and args.schedule not in (*SCHEDULES, "scheduler"):
        raise UserError(
            f"--schedule: expected one of {', '.join(SCHEDULES)} or scheduler (the folder's "
            f"own timesteps), got {args.schedule!r}"
        )


def describe(model) -> list[str]:
    p = model.process
    c = p.config or {}
    if p.table is None:
        noise = f"flow matching, shift {p.shift:g}, {p.num_train_timesteps} train steps"
    else:
        betas = "trained_betas" if c.get("trained_betas") else c.get("beta_schedule", "linear")
        noise = (
            f"discrete VP, {p.num_train_timesteps} steps, {betas} betas, predicts {p.prediction}"
            f"{', clip_sample' if c.get('clip_sample') else ''}"
        )
    parts = ", ".join(f"{k}: {v}" for k, v in model.components.items())
    lines = [
        f"diffusers    {model.path} ({model.class_name}; {parts})",
        f"model        {model.parameters:,} parameters in {str(model.dtype).split('.')[-1]}, "
        f"samples {tuple(model.shape)}"
        + (f", images {tuple(model.image_shape)}" if model.vae is not None else ""),
        f"noise        {noise}; sigma {p.sigma_min:.4g} .. {p.sigma_max:.4g}",
        f"scheduler    {c.get('_class_name', '?')}, spacing {c.get('timestep_spacing', 'leading')}"
        + (f"; {model.scheduler_note}" if model.scheduler_note else ""),
        "conditioning "
        + (
            "text (CLIP), negative prompt, classifier-free guidance"
            if model.is_text_to_image
            else f"{model.num_classes} classes"
            if model.num_classes
            else "none"
        ),
    ]
    return lines


def cmd_info(args) -> int:
    model = _load(args)
    if getattr(args, "json", False):
        rec = {
            "path": str(model.path),
            "class_name": model.class_name,
            "components": model.components,
            "parameters": model.parameters,
            "shape": list(model.shape),
            "scheduler": model.process.config,
        }
        print(json.dumps(rec, indent=2))
        return 0
    print("\n".join(describe(model)))
    return 0


def _edit_inputs(args, model):
    """--init-image / --mask / --strength for img2img and inpainting, as the other commands."""
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.cli.common import _load_png

    init = mask = None
    if getattr(args, "init_image", None):
        init = _load_png(args.init_image, "--init-image", "RGB")
        c, h, w = model.image_shape
        if c == 1:
            init = init.mean(0, keepdim=True)
        if tuple(init.shape[1:]) != (h, w):
            raise UserError(
                f"--init-image: expected {w}x{h} pixels, got {init.shape[2]}x{init.shape[1]}"
            )
        init = init[None]
    if getattr(args, "mask", None):
        if init is None:
            raise UserError("--mask: inpainting needs --init-image (the pixels to keep)")
        mask = _load_png(args.mask, "--mask", "L")[None, None]
        if tuple(mask.shape[2:]) != tuple(init.shape[2:]):
            raise UserError("--mask: expected the --init-image's size")
    strength = getattr(args, "strength", None)
    if strength is None:
        strength = 1.0 if mask is not None else 0.6
    if not 0 < strength <= 1:
        raise UserError(f"--strength: expected a number in (0, 1], got {strength}")
    return init, mask, strength


def _save(images, out, cols: int, record: dict, labels=None, names=None) -> Path:
    """The --out rule (cli/outputs.py): one grid / array file, or one PNG per image."""
    # deferred: loaded only when this command runs, so `--help` stays fast
    import numpy as np

    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.pipelines.images import save_with_metadata
    from diffusionforge.plot import image_grid, to_pil

    images = images.float().clamp(-1, 1)
    with out.writing():
        if out.single and out.suffix == ".npy":
            tmp = out.path.with_name(f".tmp-{out.path.name}")
            np.save(tmp, images.numpy())
            os.replace(tmp, out.path)
        elif out.single:
            save_with_metadata(image_grid(images, cols, value_range=(-1, 1)), out.path, record)
        else:
            for i, image in enumerate(images):
                seed = record["seed"] + i if names is None else record["seeds"][i]
                label = None if labels is None else str(labels[i])
                label = names[i] if names is not None else label
                rec = {k: v for k, v in record.items() if k != "seeds"} | {"seed": seed}
                rec |= {"class": None if labels is None else int(labels[i])}
                if names is not None:
                    rec["prompt"] = names[i]
                save_with_metadata(to_pil(image), out.name(seed, "png", label), rec)
            if len(images) > 1:
                grid = image_grid(images, cols, value_range=(-1, 1))
                save_with_metadata(grid, out.overview("grid.png"), record)
    return out.finish(record)


def cmd_sample(args) -> int:
    # deferred: loaded only when this command runs, so `--help` stays fast
    import torch

    from diffusionforge.cli.outputs import resolve_out

    _check_sampling(args)
    if args.n is not None and args.n <= 0:
        raise UserError(f"--n: expected a positive number of samples, got {args.n}")
    out = resolve_out(args.out, "sample", (".png", ".npy"), "samples")
    torch.set_num_threads(args.threads)
    model = _load(args)
    if model.is_text_to_image:
        raise UserError(
            f"{args.checkpoint}: a text-to-image pipeline; use `diffusionforge "
            "generate PROMPT --checkpoint` with it"
        )
    labels, per = None, args.n or 16
    if args.cls is not None:  # --n per class, as for our own checkpoints
        if not model.num_classes:
            raise UserError(f"--class: {args.checkpoint} is an unconditional model")
        try:
            wanted = (
                list(range(model.num_classes))
                if args.cls == "all"
                else [int(c) for c in args.cls.split(",")]
            )
        except ValueError:
            raise UserError(f"--class {args.cls!r}: expected indices, e.g. 3,7, or 'all'") from None
        if any(not 0 <= c < model.num_classes for c in wanted):
            raise UserError(f"--class: expected indices below {model.num_classes}")
        labels = torch.tensor([c for c in wanted for _ in range(per)])
    elif model.num_classes and model.null_class is None:
        labels = torch.arange(per) % model.num_classes
    n = per if labels is None else len(labels)
    guidance = 1.0 if args.guidance is None else args.guidance
    if guidance != 1.0 and model.null_class is None:
        raise UserError(f"--guidance: {args.checkpoint} has no 'no class' label to guide against")
    init, mask, strength = _edit_inputs(args, model)
    nfe = args.nfe or 20
    seeds = list(range(args.seed, args.seed + n))
    images = model.generate(
        seeds,
        nfe=nfe,
        sampler=args.sampler,
        schedule=args.schedule,
        guidance=guidance,
        labels=labels,
        init=None if init is None else init.expand(n, -1, -1, -1),
        strength=strength,
        mask=mask,
    ).cpu()
    record = _settings(args, model, nfe, inpainting=mask is not None) | {
        "count": n,
        "guidance": guidance,
        "class": None if labels is None else list(dict.fromkeys(labels.tolist())),
        "torch": torch.__version__,
    }
    cols = per if args.cls is not None else min(n, int(n**0.5 + 0.999))
    where = _save(images, out, cols, record, labels=None if labels is None else labels.tolist())
    ran = f"{record['sampler']}, {record['schedule']}, NFE {nfe}"  # "fitted": the folder's
    print(
        f"wrote {n} images of shape {tuple(images.shape[1:])} ({ran}) from {model.path} to {where}"
    )
    return 0


def cmd_generate(args) -> int:
    """Stable-Diffusion-layout folders: prompt(s), negative prompt, CFG, img2img, inpainting."""
    # deferred: loaded only when this command runs, so `--help` stays fast
    import torch

    from diffusionforge.cli.outputs import resolve_out

    _check_sampling(args)
    for flag, value in (("--n", args.n), ("--threads", args.threads)):
        if value <= 0:
            raise UserError(f"{flag}: expected a positive number, got {value}")
    if not args.guidance >= 0:
        raise UserError(f"--guidance: expected 0 or more, got {args.guidance}")
    for i, p in enumerate(args.prompt):
        if not p.strip():
            raise UserError(f"prompt {i + 1}: empty; describe the image")
    out = resolve_out(args.out, "generate", (".png", ".npy"), "generated")
    torch.set_num_threads(args.threads)
    model = _load(args)
    if not model.is_text_to_image:
        raise UserError(
            f"--checkpoint {args.checkpoint}: not a text-to-image pipeline; use "
            "`diffusionforge sample` with it"
        )
    init, mask, strength = _edit_inputs(args, model)
    batches, prompts, seeds = [], [], []
    for prompt in args.prompt:  # --n images per prompt, seeds seed..seed+n-1 for each
        batch = list(range(args.seed, args.seed + args.n))
        batches.append(
            model.generate(
                batch,
                nfe=args.nfe,
                sampler=args.sampler,
                schedule=args.schedule,
                guidance=args.guidance,
                prompts=[prompt] * args.n,
                negative_prompt=args.negative,
                init=None if init is None else init.expand(args.n, -1, -1, -1),
                strength=strength,
                mask=mask,
            ).cpu()
        )
        prompts += [prompt] * args.n
        seeds += batch
    record = _settings(args, model, args.nfe, inpainting=mask is not None) | {
        "prompts": args.prompt,
        "negative_prompt": args.negative,
        "guidance": args.guidance,
        "strength": strength if init is not None else None,
        "seeds": seeds,
    }
    where = _save(torch.cat(batches), out, args.n, record, names=prompts)
    ran = f"{record['sampler']}, {record['schedule']}, NFE {args.nfe}"
    print(f"wrote {len(prompts)} images ({ran}) to {where}", file=sys.stdout)
    return 0


class _EvalModel:
    """What pipelines.evaluate asks of a pipeline, for an imported model."""

    def __init__(self, model, nfe: int) -> None:
        # deferred: loaded only when this command runs, so `--help` stays fast
        from types import SimpleNamespace

        self.model = model
        self.num_classes = model.num_classes
        self.checkpoint = SimpleNamespace(path=model.path, step=None)

    def generate_images(self, seeds, labels=None, guidance=1.0, nfe=16, sampler=None, **_):
        out = self.model.generate(
            list(seeds), nfe=nfe, sampler=sampler, labels=labels, guidance=guidance
        )
        return out.cpu().clamp(-1, 1)


def cmd_eval(args) -> int:
    """FID/KID/precision-recall/memorization and the NFE sweep, against --data."""
    # deferred: loaded only when this command runs, so `--help` stays fast
    import torch

    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.cli.common import _check_writable_dir, _int_list, _log
    from diffusionforge.core.samplers import SAMPLERS
    from diffusionforge.pipelines.evaluate import EvalSettings, evaluate, extractor_for

    data_name = getattr(args, "data", None)
    if data_name not in ("digits", "glyphs"):
        raise UserError(
            f"--data: a diffusers folder does not name its training data; give --data digits "
            f"or --data glyphs (the set to compare with), got {data_name!r}"
        )
    if args.n < 2 or args.sweep_n < 2:
        raise UserError("--n / --sweep-n: statistics need at least 2 samples")
    samplers = [v.strip() for v in args.sweep_samplers.split(",") if v.strip()]
    for name in samplers + ([args.sampler] if args.sampler else []):
        if name not in SAMPLERS:
            raise UserError(f"--sampler / --sweep-samplers: unknown sampler {name!r}")
    nfes = _int_list(args.sweep_nfe, "--sweep-nfe") if samplers else []
    torch.set_num_threads(args.threads)
    model = _load(args)
    if model.is_text_to_image:
        raise UserError(
            f"{args.checkpoint}: eval is for class-conditional or unconditional "
            "image models; text-to-image folders: use generate"
        )
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.data.builtin import load_digits, load_glyphs

    data = load_digits() if data_name == "digits" else load_glyphs()
    if tuple(data.images.shape[1:]) != tuple(model.image_shape):
        raise UserError(
            f"--data {data_name}: images of shape {tuple(data.images.shape[1:])}, "
            f"but the model draws {tuple(model.image_shape)}"
        )
    out = Path(args.out) if args.out else Path(f"eval-{model.path.name}")
    _check_writable_dir(out, f"--out {out}")
    extractor = extractor_for(data.images, data.labels, args.inception_weights, _log)
    nfe = args.nfe or 16
    settings = EvalSettings(
        n=args.n,
        nfe=nfe,
        sampler=args.sampler,
        guidance=1.0 if args.guidance is None else args.guidance,
        seed=args.seed,
        sweep_samplers=samplers,
        sweep_nfe=nfes,
        sweep_n=args.sweep_n,
        alpha=args.alpha,
    )
    evaluate(_EvalModel(model, nfe), data.images, extractor, settings, out, _log)
    print(f"wrote metrics.json, sweep.csv, sweep.png, samples.png, memorization.png to {out}")
    return 0
