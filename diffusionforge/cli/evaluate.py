"""`eval`: FID/KID/precision-recall, the NFE sweep and memorization for image models
(text models and autoencoders go to their own evaluations)."""

from __future__ import annotations

from pathlib import Path

from diffusionforge.cli.common import (
    _check_writable_dir,
    _int_list,
    _log,
    precision,
    resolve_device,
)
from diffusionforge.errors import UserError


def _cmd_eval(args) -> int:
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.cli import diffusers as cli_diffusers

    if cli_diffusers.handles(args.checkpoint):  # a folder made with diffusers
        return cli_diffusers.cmd_eval(args)
    # deferred: loaded only when this command runs, so `--help` stays fast
    import torch

    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.cli import text as cli_text
    from diffusionforge.modalities import MODALITIES, modality_at

    modality = modality_at(args.checkpoint)
    if modality is MODALITIES["text"]:
        return cli_text.cmd_eval_text(args)
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.cli import latent as cli_latent

    if modality is MODALITIES["autoencoder"]:
        return cli_latent.cmd_eval_autoencoder(args)
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.core.samplers import SAMPLERS
    from diffusionforge.limits import check_list
    from diffusionforge.modalities import build_dataset
    from diffusionforge.pipelines.evaluate import EvalSettings, evaluate, extractor_for
    from diffusionforge.pipelines.pipeline import load_pipeline

    for flag, value in (("--n", args.n), ("--sweep-n", args.sweep_n), ("--threads", args.threads)):
        if value <= 0:
            raise UserError(f"{flag}: expected a positive number, got {value}")
    if args.n < 2 or args.sweep_n < 2:
        raise UserError("--n / --sweep-n: statistics need at least 2 samples")
    if args.nfe is not None and args.nfe <= 0:
        raise UserError(f"--nfe: expected a positive number of steps, got {args.nfe}")
    if args.guidance is not None and not 0 <= args.guidance <= 100:
        raise UserError(f"--guidance: expected a number in [0, 100], got {args.guidance}")
    if not 0 < args.alpha < 1:
        raise UserError(f"--alpha: expected a number in (0, 1), got {args.alpha}")
    samplers = [v.strip() for v in args.sweep_samplers.split(",") if v.strip()]
    for name in samplers + ([args.sampler] if args.sampler else []):
        if name not in SAMPLERS and not (name == "recommended" and name in samplers):
            raise UserError(
                f"--sampler / --sweep-samplers: unknown sampler {name!r} "
                f"(expected one of {', '.join(SAMPLERS)})"
            )
    nfes = _int_list(args.sweep_nfe, "--sweep-nfe") if samplers else []
    check_list(nfes, "--sweep-nfe", bound="nfe")
    if args.inception_weights and not Path(args.inception_weights).is_file():
        raise UserError(f"--inception-weights {args.inception_weights}: no such file")
    resolve_device(args)
    torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.checkpoint, use_ema=not args.no_ema)
    if not pipe.makes_images:
        raise UserError(f"{args.checkpoint}: eval is for image models; this one makes {pipe.shape}")
    data = build_dataset(cli_latent.pixel_config(pipe.cfg))  # a latent model's data as pixels
    # a folder too large to cache streams in training (data/stream.py); eval's features and
    # nearest neighbours read every training image, so it is decoded whole here
    real = data.data if isinstance(data.data, torch.Tensor) else data.data[:]
    if not args.inception_weights and data.labels is None:
        raise UserError(
            f"{args.checkpoint}: its data has no labels to train the classifier features on; "
            "give --inception-weights FILE"
        )
    ckpt_path = pipe.checkpoint.path
    default = (  # <run>/eval for a run's checkpoint; eval-<name> here for any other folder
        ckpt_path.parent.parent / "eval"
        if ckpt_path.parent.name == "checkpoints"
        else Path(f"eval-{ckpt_path.name}")
    )
    out = Path(args.out) if args.out else default
    _check_writable_dir(out, f"--out {out}")
    try:
        extractor = extractor_for(real, data.labels, args.inception_weights, _log)
    except (ValueError, FileNotFoundError) as e:
        raise UserError(f"--inception-weights: {str(e).splitlines()[0]}") from None
    settings = EvalSettings(
        n=args.n,
        nfe=args.nfe or pipe.cfg.sample.nfe,
        sampler=args.sampler,
        guidance=pipe.cfg.sample.guidance if args.guidance is None else args.guidance,
        seed=args.seed,
        sweep_samplers=samplers,
        sweep_nfe=nfes,
        sweep_n=args.sweep_n,
        alpha=args.alpha,
        device=args.device,
    )
    with precision(args):
        evaluate(pipe, real, extractor, settings, out, _log)
    print(f"wrote metrics.json, sweep.csv, sweep.png, samples.png, memorization.png to {out}")
    return 0
