"""`train` (a preset or config file -> a run folder) and `ema` (post-hoc EMA)."""

from __future__ import annotations

from pathlib import Path

from diffusionforge.cli.common import _log, _one_run_per_folder, launcher_precision
from diffusionforge.errors import ConfigError, UserError


def _cmd_train(args) -> int:
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.data.toy import TOY_SETS
    from diffusionforge.modalities import MODALITIES, make_trainer
    from diffusionforge.train.config import (
        apply_overrides,
        load_config_file,
        load_preset,
        parse_duration,
        preset_names,
    )

    if args.list_presets:
        print("\n".join(preset_names()))
        return 0
    if args.preset and args.config:
        raise ConfigError("give --preset or --config, not both")
    if args.resume and args.overwrite:
        raise UserError("give --resume or --overwrite, not both")
    if not args.preset and not args.config and args.resume:
        # resuming needs nothing but the run: its own config.json (written when it started)
        run_cfg = Path(args.run_dir or "") / "config.json"
        if args.resume != "auto":  # a checkpoint folder: its run is two levels up
            run_cfg = Path(args.resume).parent.parent / "config.json"
            args.run_dir = args.run_dir or str(run_cfg.parent)
        if not args.run_dir and args.resume == "auto":
            raise ConfigError("--resume auto: give --run-dir DIR (the run to continue)")
        if not run_cfg.is_file():
            raise ConfigError(f"--resume: {run_cfg} not found (is this a run folder?)")
        args.config = str(run_cfg)
    if not args.preset and not args.config and args.data and Path(args.data).is_dir():
        args.preset = "images"  # one's own images, sized from the data (train/auto_size.py)
    if not args.preset and not args.config:
        raise ConfigError(
            f"give --preset NAME or --config FILE (presets: {', '.join(preset_names())})"
        )
    cfg = load_preset(args.preset) if args.preset else load_config_file(args.config)
    overrides = list(args.set or [])
    if args.data:
        images = cfg.data.kind in MODALITIES["image"].data_kinds
        if args.data in TOY_SETS and not Path(args.data).exists():
            overrides += ["data.kind=toy", f"data.name={args.data}"]
        elif args.data in ("digits", "glyphs") and not Path(args.data).exists():
            overrides += [f"data.kind={args.data}"]
        else:
            if not Path(args.data).exists():
                raise UserError(f"--data {args.data}: no such file or folder")
            # a folder is an image folder; a .npy is images when the preset trains on images;
            # an audio or text-to-image preset reads a folder of clips or captioned images
            kind = "images" if Path(args.data).is_dir() or images else "npy"
            if cfg.data.kind in MODALITIES["audio"].data_kinds:
                kind = "audio"
            if cfg.data.kind in MODALITIES["text2image"].data_kinds:
                kind = "captions"
            overrides += [f"data.kind={kind}", f"data.path={args.data}"]
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    cfg = launcher_precision(apply_overrides(cfg, overrides), overrides)
    if args.max_time:
        parse_duration(args.max_time)
    if args.max_cpu_time:
        parse_duration(args.max_cpu_time, "--max-cpu-time")
    if args.until_step is not None and args.until_step <= 0:
        raise ConfigError(f"--until-step: expected a positive step, got {args.until_step}")
    if args.no_progress:
        cfg.train.progress = False
    name = cfg.preset or Path(args.config).stem
    if args.data and not args.run_dir:  # runs/<preset>-<data>: other data, another run
        name = f"{name}-{Path(str(args.data).rstrip('/')).stem or 'data'}"
    run_dir = Path(args.run_dir or Path("runs") / name)
    if args.resume and args.resume != "auto" and not Path(args.resume).exists():
        raise UserError(f"--resume {args.resume}: no such checkpoint (use a path or 'auto')")
    _one_run_per_folder(run_dir, args)
    trainer = make_trainer(
        cfg,
        run_dir,
        resume=args.resume,
        until_step=args.until_step,
        max_time=args.max_time,
        max_cpu_time=args.max_cpu_time,
        log=_log,
    )
    result = trainer.fit()
    if trainer.acc.is_main_process:
        words = {
            "done": "finished",
            "stopped": "stopped at --until-step",
            "time": "stopped by the time budget",
            "interrupted": "interrupted",
        }[result.status]
        print(
            f"{words} at step {result.step}/{cfg.train.steps} in {result.seconds:.1f}s, "
            f"loss {result.loss:.4f}; checkpoint: {result.checkpoint}"
        )
        # deferred: loaded only when this command runs, so `--help` stays fast
        from diffusionforge.cli.latent import train_summary

        if summary := train_summary(result.checkpoint):
            print(summary)
    return 0


def _cmd_ema(args) -> int:
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.train.checkpoint import (
        resolve_checkpoint,
        tensors_to_bytes,
        write_folder,
    )
    from diffusionforge.train.ema import posthoc_ema

    if not 0 < args.sigma_rel < 0.2887:
        raise UserError(f"--sigma-rel: expected a number in (0, 0.2887), got {args.sigma_rel}")
    if args.step is not None and args.step <= 0:
        raise UserError(f"--step: expected a positive step, got {args.step}")
    target = Path(args.out)
    if target.exists() and not (
        target.is_dir() and ((target / "manifest.json").is_file() or not any(target.iterdir()))
    ):  # never replace a file or a folder of other things by a checkpoint
        raise UserError(f"--out {target}: exists and is not a checkpoint folder; name a new one")
    run = Path(args.run)
    snapshots = run / "phema"
    if not snapshots.is_dir() or not any(snapshots.glob("phema-*.safetensors")):
        raise UserError(
            f"{run}: no post-hoc EMA snapshots; train with ema.kind=power and "
            "ema.snapshot_every > 0"
        )
    ckpt = resolve_checkpoint(run)
    state = posthoc_ema(snapshots, args.sigma_rel, step=args.step)
    out = Path(args.out)
    files = {rel: ckpt.files[rel] for rel in ("model.safetensors", "config.json")}
    files["ema.safetensors"] = tensors_to_bytes(state, {"sigma_rel": args.sigma_rel})
    write_folder(out, files, step=args.step or ckpt.step)
    print(f"wrote post-hoc EMA (sigma_rel {args.sigma_rel}) to {out}")
    return 0
