"""`sample`: vectors and images from a checkpoint (images: PNGs whose metadata
regenerates them; --init-image/--mask edit an image instead)."""

from __future__ import annotations

import math
from pathlib import Path

from diffusionforge.cli.common import _parse_classes
from diffusionforge.errors import UserError


def _cmd_sample(args) -> int:
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.cli import diffusers as cli_diffusers

    if cli_diffusers.handles(args.checkpoint):  # a folder made with diffusers
        return cli_diffusers.cmd_sample(args)
    # deferred: loaded only when this command runs, so `--help` stays fast
    import numpy as np

    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.core.samplers import SAMPLERS
    from diffusionforge.core.schedules import SCHEDULES
    from diffusionforge.limits import check_values
    from diffusionforge.modalities import MODALITIES, modality_at
    from diffusionforge.pipelines.outputs import (
        atomic_write,
        check_finite_output,
    )
    from diffusionforge.pipelines.pipeline import load_pipeline
    from diffusionforge.plot import picture, save_png

    modality = modality_at(args.checkpoint)
    if modality is MODALITIES["text"]:  # drawn by its own verb
        raise UserError(f"{args.checkpoint}: a text model; use `diffusionforge {modality.verb}`")
    if args.n is not None and args.n <= 0:
        raise UserError(f"--n: expected a positive number of samples, got {args.n}")
    if args.threads <= 0:
        raise UserError(f"--threads: expected a positive number, got {args.threads}")
    if args.nfe is not None and args.nfe <= 0:
        raise UserError(f"--nfe: expected a positive number of steps, got {args.nfe}")
    if args.sampler and args.sampler not in SAMPLERS:
        raise UserError(f"--sampler: expected one of {', '.join(SAMPLERS)}, got {args.sampler!r}")
    if args.schedule and args.schedule not in SCHEDULES:
        raise UserError(
            f"--schedule: expected one of {', '.join(SCHEDULES)}, got {args.schedule!r}"
        )
    # deferred: loaded only when this command runs, so `--help` stays fast
    import torch

    from diffusionforge.cli.common import precision, resolve_device
    from diffusionforge.cli.outputs import resolve_out

    resolve_device(args)
    if args.like is not None:
        _apply_like(args)
    out = resolve_out(args.out, "sample", (".png", ".npy"), "samples")
    torch.set_num_threads(args.threads)  # CPU results depend on it; recorded in image metadata
    pipe = load_pipeline(args.checkpoint, use_ema=not args.no_ema)
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.cli.latent import check_samplable, edit_inputs

    check_samplable(pipe, args)
    args.edit = edit_inputs(args, pipe)
    if pipe.makes_images:
        with precision(args):
            return _sample_images(args, pipe, out)
    if args.cls is not None or args.guidance is not None or args.like is not None:
        raise UserError(
            f"--class/--guidance/--like: {args.checkpoint} is not an image model "
            f"(examples of shape {pipe.shape})"
        )
    args.n = args.n or 1000
    check_values(args.n, math.prod(pipe.shape))
    plan = pipe.plan(args.nfe, args.sampler, args.schedule)
    with precision(args):
        samples = pipe.generate(
            args.n, nfe=args.nfe, sampler=args.sampler, schedule=args.schedule, seed=args.seed,
            device=args.device,
        ).float().cpu()  # fmt: skip
    check_finite_output(samples, str(pipe.checkpoint.path))
    # vectors come from one generator seeded --seed: one file per seed, row i sample i
    target = out.path if out.single else out.name(args.seed, "npy", count=args.n)
    with out.writing():
        if target.suffix == ".npy":
            atomic_write(target, lambda f: np.save(f, samples.numpy()), f"--out {target}")
        else:
            image = picture([(f"samples, step {pipe.checkpoint.step}", samples)])
            if image is None:
                raise UserError(
                    f"--out {target}: examples of shape {pipe.shape} have no picture; use .npy"
                )
            save_png(image, target)
    settings = _settings(args, pipe, plan) | {"n": args.n, "shape": list(pipe.shape)}
    print(
        f"wrote {args.n} samples of shape {pipe.shape} from {pipe.checkpoint.path} "
        f"({pipe.weights} weights, {plan.sampler}, {plan.schedule}, NFE {plan.nfe}) to "
        f"{out.finish(settings)}"
    )
    return 0


def _settings(args, pipe, plan) -> dict:
    """What samples.json records for every drawing verb: resolved names, never "auto"."""
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.pipelines.images import weights_sha256

    return {
        "checkpoint": str(pipe.checkpoint.path),
        "weights": pipe.weights,
        "checkpoint_sha256": weights_sha256(pipe),
        "sampler": plan.sampler,
        "schedule": plan.schedule,
        "nfe": plan.nfe,
        "seed": args.seed,
        "device": args.device,
        "dtype": args.dtype,
        "threads": args.threads,
    }


def _apply_like(args) -> None:
    """--like IMAGE.png: take seed, class, guidance, sampler, schedule, NFE and threads from the
    PNG's metadata (flags given explicitly must agree), to regenerate that image."""
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.pipelines.images import read_metadata

    if not Path(args.like).is_file():
        raise UserError(f"--like {args.like}: no such file")
    try:
        rec = read_metadata(args.like)
    except ValueError as e:
        raise UserError(f"--like {e}") from None
    if rec.get("count", 1) > 1:
        raise UserError(
            f"--like {args.like}: a grid of {rec['count']} images; use one of the single PNGs "
            "(--out FOLDER writes one per image)"
        )
    wanted = {
        "seed": rec["seed"],
        "cls": None if rec["class"] is None else str(rec["class"]),
        "guidance": rec["guidance"],
        "sampler": rec["sampler"],
        "schedule": rec["schedule"],
        "nfe": rec["nfe"],
    }
    for key, value in wanted.items():
        setattr(args, key, value)
    args.n, args.threads = 1, int(rec.get("threads", args.threads))
    args.like_sha = rec.get("checkpoint_sha256")
    if rec.get("edited"):
        raise UserError(
            f"--like {args.like}: made by img2img/inpainting; rerun its command with the same "
            f"--init-image/--mask and --strength {rec.get('strength')}"
        )


def _sample_images(args, pipe, out) -> int:
    # deferred: loaded only when this command runs, so `--help` stays fast
    import numpy as np

    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.limits import check_values
    from diffusionforge.pipelines.images import (
        ImageRequest,
        draw,
        grid_record,
        image_record,
        save_with_metadata,
        weights_sha256,
    )
    from diffusionforge.pipelines.outputs import (
        atomic_write,
        check_finite_output,
    )
    from diffusionforge.plot import image_grid, to_pil

    guidance = pipe.cfg.sample.guidance if args.guidance is None else args.guidance
    if not guidance >= 0 or guidance > 100:
        raise UserError(f"--guidance: expected a number in [0, 100], got {guidance}")
    if pipe.num_classes == 0 and args.guidance is not None and guidance != 1:
        raise UserError(
            f"--guidance: {pipe.checkpoint.path} is unconditional; guidance needs labels"
        )
    if pipe.num_classes == 0:
        guidance = 1.0
    sha = getattr(args, "like_sha", None)
    if sha and sha != weights_sha256(pipe):
        raise UserError(
            f"--like {args.like}: made by other weights (sha256 {sha[:12]}...), not by "
            f"{pipe.checkpoint.path} ({pipe.weights})"
        )
    edit = getattr(args, "edit", None)  # img2img / inpainting inputs (cli_latent)
    plan = pipe.plan(
        args.nfe, args.sampler, args.schedule, inpainting=bool(edit and edit.mask is not None),
        guidance=guidance,
    )  # fmt: skip
    nfe, sampler, schedule = plan.nfe, plan.sampler, plan.schedule
    if pipe.num_classes:  # --n counts per class, as in generate (per prompt), generate-audio
        classes = _parse_classes(args.cls or "all", pipe)
        per = args.n or 10
        n = per * len(classes)
        labels = [c for c in classes for _ in range(per)]
        cols = per
    else:
        if args.cls is not None:
            _parse_classes(args.cls, pipe)  # raises: unconditional
        n, labels = args.n or 64, None
        cols = min(n, int(n**0.5 + 0.999))
    req = ImageRequest(args.seed, labels, guidance, plan, args.device, edit)
    check_values(n, math.prod(pipe.image_shape))
    images = draw(pipe, req, n).float().cpu()
    check_finite_output(images, str(pipe.checkpoint.path))
    grid_rec = grid_record(image_record(pipe, req, 0), req, n, pipe.classes) | {"dtype": args.dtype}
    with out.writing():
        if out.single and out.suffix == ".npy":
            atomic_write(out.path, lambda f: np.save(f, images.numpy()), f"--out {out.path}")
        elif out.single:
            grid = image_grid(images, cols, value_range=(-1, 1))
            save_with_metadata(grid, out.path, grid_rec)
        else:
            for i, image in enumerate(images):
                rec = image_record(pipe, req, i) | {"dtype": args.dtype}
                path = out.name(rec["seed"], "png", rec["class_name"], **{"class": rec["class"]})
                save_with_metadata(to_pil(image), path, rec)
            grid = image_grid(images, cols, value_range=(-1, 1))
            save_with_metadata(grid, out.overview("grid.png"), grid_rec)
    settings = _settings(args, pipe, plan) | {"n": n, "guidance": guidance}
    where = out.finish(settings | {"classes": grid_rec["class"]})
    print(
        f"wrote {n} images to {where}{'' if out.single else '/ (one PNG each, grid.png)'} "
        f"({sampler}, {schedule}, NFE {nfe}, guidance {guidance:g}, seeds "
        f"{args.seed}..{args.seed + n - 1}, {pipe.weights} weights of {pipe.checkpoint.path})"
    )
    return 0
