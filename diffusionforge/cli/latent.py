"""CLI pieces for autoencoders, latent models and image editing (`sample --init-image/--strength/
--mask`); cli/sample.py and cli/evaluate.py call these, so the argument checks live next to
what they check."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from diffusionforge.core.draw import Edit
from diffusionforge.errors import UserError


def add_sample_flags(s) -> None:
    s.add_argument(
        "--init-image",
        help="img2img: start from this image (PNG/JPEG of the model's size), noised to --strength",
    )
    s.add_argument(
        "--strength",
        type=float,
        help="img2img: fraction of the sampling schedule run from the noised image, 0..1 "
        "(0 returns it unchanged, 1 ignores it); default 0.6, or 1 with --mask",
    )
    s.add_argument(
        "--mask",
        help="inpainting: a mask image the size of --init-image; white = generate, black = keep",
    )
    s.add_argument(
        "--resample",
        type=int,
        default=0,
        help="inpainting: RePaint resamplings per step (harmonises the fill; (N+1) x the NFE)",
    )


def check_samplable(pipe, args) -> None:
    """An autoencoder has nothing to sample; editing flags need an image model."""
    if pipe.cfg.model.kind == "autoencoder":
        raise UserError(
            f"{args.checkpoint}: is an autoencoder, it does not sample; train a latent model "
            f"on it with --set data.autoencoder={args.checkpoint} (or `eval` it for its PSNR)"
        )
    editing = args.init_image or args.mask or args.strength is not None
    if editing and not pipe.makes_images:
        raise UserError(
            f"--init-image/--mask/--strength: {args.checkpoint} is not an image model "
            f"(examples of shape {pipe.shape})"
        )


def edit_inputs(args, pipe) -> Edit | None:
    """--init-image/--strength/--mask/--resample -> the Edit to draw with (None: sample)."""
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.pipelines.editing import DEFAULT_STRENGTH, check_edit, load_image, load_mask

    if args.resample < 0 or args.resample > 50:
        raise UserError(f"--resample: expected 0 to 50, got {args.resample}")
    if args.resample and not args.mask:
        raise UserError("--resample: resampling harmonises inpainting; give --mask too")
    if not (args.init_image or args.mask or args.strength is not None):
        return None
    if not args.init_image:
        raise UserError("--mask/--strength: give the image to edit with --init-image")
    shape = pipe.image_shape
    init = load_image(args.init_image, shape[0])
    mask = load_mask(args.mask) if args.mask else None
    default = 1.0 if mask is not None else DEFAULT_STRENGTH
    strength = default if args.strength is None else args.strength
    check_edit(shape, init, mask, strength)
    return Edit(init, strength, mask, args.resample)


def is_autoencoder(checkpoint: str) -> bool:
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.train.checkpoint import resolve_checkpoint

    return resolve_checkpoint(checkpoint).config.get("model", {}).get("kind") == "autoencoder"


def pixel_config(cfg):
    """The config of a latent model with its data back in pixels (eval compares pictures)."""
    cfg = copy.deepcopy(cfg)
    cfg.data.autoencoder = ""
    return cfg


def train_summary(checkpoint: Path | None) -> str | None:
    """The line `train` prints after an autoencoder run: PSNR and latent scale."""
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.train.builders_latent import LATENT_FILE

    if checkpoint is None or not (Path(checkpoint) / LATENT_FILE).is_file():
        return None
    s = json.loads((Path(checkpoint) / LATENT_FILE).read_text())
    return (
        f"autoencoder: reconstruction PSNR {s['psnr_db']:.2f} dB on {s['examples']} training "
        f"images; latents {tuple(s['latent_shape'])}, std {s['std']:.4g} -> scale "
        f"{s['scale']:.4g}, shift {s['shift']:.4g} (in {LATENT_FILE})"
    )


def cmd_eval_autoencoder(args) -> int:
    """`eval` on an autoencoder: reconstruction PSNR on its training data (+ held-out scenes),
    metrics.json and reconstructions.png."""
    # deferred: loaded only when this command runs, so `--help` stays fast
    import torch

    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.cli.common import resolve_device

    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.eval.psnr import psnr
    from diffusionforge.modalities import build_dataset
    from diffusionforge.plot import image_panels, save_png

    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.train.latent import load_autoencoder

    resolve_device(args, cpu_only="autoencoder evaluation")
    torch.set_num_threads(args.threads)
    ae = load_autoencoder(args.checkpoint, what=str(args.checkpoint))
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.train.loading import split_config

    cfg, _ = split_config(json.loads(ae.files["config.json"]), str(args.checkpoint))
    cfg.data.size = min(cfg.data.size, args.n)  # generated sets: example i depends on i only
    sets = {"train": build_dataset(cfg).data[: args.n]}
    if cfg.data.kind == "scenes":
        # deferred: loaded only when this command runs, so `--help` stays fast
        from diffusionforge.data.arrays import to_tensor_images
        from diffusionforge.data.scenes import make_scenes

        images, _, _ = make_scenes(args.n, cfg.data.image_size, "heldout", cfg.data.seed)
        sets["heldout"] = to_tensor_images(images)
    out = Path(args.out) if args.out else Path(f"eval-{Path(args.checkpoint).name}")
    out.mkdir(parents=True, exist_ok=True)
    metrics, panels = {}, []
    for name, x in sets.items():
        recon = ae.decode(ae.encode(x))
        metrics[f"psnr_db_{name}"] = float(psnr(recon, x.clamp(-1, 1)).mean())
        metrics[f"images_{name}"] = len(x)
        print(f"reconstruction PSNR ({name}, {len(x)} images): {metrics[f'psnr_db_{name}']:.2f} dB")
        panels += [(f"{name} data", x[:32]), (f"{name} reconstructions", recon[:32])]
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    save_png(image_panels(panels, cols=8), out / "reconstructions.png")
    print(f"wrote metrics.json and reconstructions.png to {out}")
    return 0
