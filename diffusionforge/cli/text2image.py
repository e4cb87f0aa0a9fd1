"""`diffusionforge generate "two red circles left of a blue square" --nfe 20 --guidance 4`.

Text-to-image from the command line, with the bundled scenes model by default (works right
after install) or any text-to-image checkpoint (`--checkpoint`). Writes one PNG per image (and a
grid when there are several) whose text chunks record the prompt, seed and settings. img2img
(`--init-image --strength`) and inpainting (`--mask`, white = generate) go through
core/editing.py. Arguments are validated here; the work is in pipelines/text2image.py.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import warnings

from diffusionforge.cli.common import OUT_HELP, _load_png, add_device_flags, add_nfe_flag
from diffusionforge.errors import UserError

DEFAULT_MODEL = "t2i-scenes"  # bundled in diffusionforge/assets/


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit] or "prompt"


def _cmd_generate(args) -> int:
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.cli import diffusers as cli_diffusers

    if cli_diffusers.handles(args.checkpoint):  # a Stable-Diffusion-layout diffusers folder
        return cli_diffusers.cmd_generate(args)
    # deferred: loaded only when this command runs, so `--help` stays fast
    import numpy as np
    import torch
    from PIL import PngImagePlugin

    from diffusionforge.cli.common import place, precision, resolve_device
    from diffusionforge.cli.outputs import resolve_out

    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.core.samplers import SAMPLERS
    from diffusionforge.core.schedules import SCHEDULES
    from diffusionforge.pipelines.images import save_with_metadata
    from diffusionforge.pipelines.outputs import atomic_write
    from diffusionforge.pipelines.text2image import load_text2image
    from diffusionforge.plot import image_grid, to_pil

    for flag, value in (("--n", args.n), ("--nfe", args.nfe), ("--threads", args.threads)):
        if value <= 0:
            raise UserError(f"{flag}: expected a positive number, got {value}")
    if args.guidance < 0:
        raise UserError(f"--guidance: expected 0 or more, got {args.guidance}")
    if args.strength is None:  # inpainting regenerates the masked region from pure noise
        args.strength = 1.0 if args.mask else 0.6
    if not 0 < args.strength <= 1:
        raise UserError(f"--strength: expected a number in (0, 1], got {args.strength}")
    if args.sampler and args.sampler not in SAMPLERS:
        raise UserError(f"--sampler: expected one of {', '.join(SAMPLERS)}, got {args.sampler!r}")
    if args.schedule and args.schedule not in SCHEDULES:
        raise UserError(
            f"--schedule: expected one of {', '.join(SCHEDULES)}, got {args.schedule!r}"
        )
    if args.mask and not args.init_image:
        raise UserError("--mask: inpainting needs --init-image (the pixels to keep)")
    for i, p in enumerate(args.prompt):
        if not p.strip():
            raise UserError(f"prompt {i + 1}: empty; describe the image, e.g. 'a red circle'")
    device = resolve_device(args)
    out = resolve_out(args.out, "generate", (".png", ".npy"), "generated")
    torch.set_num_threads(args.threads)
    pipe = load_text2image(args.checkpoint or DEFAULT_MODEL, use_ema=not args.no_ema)
    place(pipe, device)  # the network (and decoder); prompts are encoded on the cpu
    init = _load_png(args.init_image, "--init-image", "RGB") if args.init_image else None
    mask = _load_png(args.mask, "--mask", "L") if args.mask else None
    prompts = [p for p in args.prompt for _ in range(args.n)]
    seeds = [args.seed + i for _ in args.prompt for i in range(args.n)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with precision(args):
            images = pipe.generate(
                prompts,
                nfe=args.nfe,
                guidance=args.guidance,
                seeds=seeds,
                sampler=args.sampler,
                schedule=args.schedule,
                negative_prompt=args.negative,
                init_image=init,
                strength=args.strength,
                mask=mask,
            )
    images = images.float().cpu()
    seen = set()
    for w in caught:  # one line per distinct warning (the same prompt repeats --n times)
        line = re.sub(r"^prompt \d+", "prompt", str(w.message))
        if line not in seen:
            seen.add(line)
            print(f"warning: {line}", file=sys.stderr)
    # the resolved names and the weights' hash, as `sample` records them (never "auto")
    # with no --schedule, the checkpoint's fitted one for this NFE (fit-schedule) if it has one
    ran = pipe.plan(
        args.nfe, args.sampler, args.schedule, inpainting=mask is not None, guidance=args.guidance
    )
    ck = pipe.checkpoint
    ema = not args.no_ema and ck.has("ema.safetensors")
    wfile = "ema.safetensors" if ema else "model.safetensors"
    sha = hashlib.sha256(ck.files[wfile]).hexdigest() if ck.has(wfile) else None
    layouts = getattr(pipe.prompts, "layouts", None)  # layout-grounded models plan boxes
    planned = layouts(prompts, seeds) if layouts is not None else [None] * len(prompts)
    for prompt, plan in zip(args.prompt, planned[:: args.n], strict=True):
        if plan is not None:
            print(f"planned layout for {prompt!r}: {json.dumps(plan[0].to_dict())}")
    records = []
    for k, (prompt, seed) in enumerate(zip(prompts, seeds, strict=True)):
        record = {
            "prompt": prompt,
            "negative_prompt": args.negative,
            "seed": seed,
            "guidance": args.guidance,
            "nfe": ran.nfe,
            "sampler": ran.sampler,
            "schedule": ran.schedule,
            "model": str(args.checkpoint or DEFAULT_MODEL),
            "checkpoint_sha256": sha,
            "strength": args.strength if init is not None else None,
            "device": args.device,
            "dtype": args.dtype,
        }
        if planned[k] is not None:  # the scene the planner read and the boxes it placed
            spec, objects = planned[k]
            record["layout"] = {
                "scene": spec.to_dict(),
                "boxes": [
                    [
                        o.colour,
                        o.shape,
                        *(round(v, 4) for v in (o.x - o.r, o.y - o.r, o.x + o.r, o.y + o.r)),
                    ]
                    for o in objects
                ],
            }
        records.append(record)
    grid_rec = {k: v for k, v in records[0].items() if k not in ("prompt", "seed", "layout")}
    grid_rec |= {"prompts": args.prompt, "seeds": seeds, "count": len(prompts)}
    with out.writing():
        for k, record in enumerate([] if out.single else records):
            info = PngImagePlugin.PngInfo()
            info.add_text("diffusionforge", json.dumps(record))
            info.add_text("prompt", record["prompt"])
            name = out.name(record["seed"], "png", _slug(record["prompt"]))
            to_pil(images[k]).save(name, pnginfo=info)
        if out.single and out.suffix == ".npy":
            atomic_write(out.path, lambda f: np.save(f, images.numpy()), f"--out {out.path}")
        elif out.single or len(prompts) > 1:
            grid = image_grid(images, cols=args.n, value_range=(-1, 1))
            save_with_metadata(grid, out.path if out.single else out.overview("grid.png"), grid_rec)
    where = out.finish(grid_rec)
    print(
        f"wrote {len(prompts)} image(s) of {pipe.resolution}x{pipe.resolution} "
        f"({ran.sampler}, {ran.schedule}, NFE {ran.nfe}) to {where}"
    )
    return 0


def add_commands(sub) -> None:
    g = sub.add_parser(
        "generate",
        help="text-to-image: write PNGs for a prompt (bundled scenes model by default)",
    )
    g.add_argument(
        "prompt", nargs="+", help='what to draw, e.g. "two red circles left of a blue square"'
    )
    g.add_argument(
        "--checkpoint", help=f"text-to-image checkpoint (default: bundled {DEFAULT_MODEL})"
    )
    g.add_argument("--n", type=int, default=1, help="images per prompt (seeds seed, seed+1, ...)")
    add_nfe_flag(g, 20, "network evaluations per image (default: 20)")
    g.add_argument(
        "--guidance",
        type=float,
        default=1.0,
        help="classifier-free guidance scale (default 1, i.e. none: the bundled layout-grounded "
        "model needs none; caption-only models do best near 2)",
    )
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--negative", default="", help="negative prompt (the unguided branch)")
    g.add_argument("--sampler", help="a sampler name (default: recommended for the NFE)")
    g.add_argument("--schedule", help="a schedule name (default: recommended for the NFE)")
    g.add_argument("--init-image", help="img2img: start from this PNG (the model's size)")
    g.add_argument(
        "--strength",
        type=float,
        help="img2img: how much to change, (0, 1] (default 0.6; 1 with --mask)",
    )
    g.add_argument("--mask", help="inpainting: grayscale PNG, white = generate, black = keep")
    g.add_argument("--out", default="generated", help=OUT_HELP + "; .png: one grid, .npy: an array")
    g.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    g.add_argument("--no-ema", action="store_true", help="use the raw weights, not the EMA")
    add_device_flags(g)
    g.set_defaults(func=_cmd_generate)
