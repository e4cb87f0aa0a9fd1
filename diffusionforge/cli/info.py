"""`info`: what a checkpoint is."""

from __future__ import annotations

import json


def _cmd_info(args) -> int:
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.cli import diffusers as cli_diffusers

    if cli_diffusers.handles(args.checkpoint):  # a folder made with diffusers
        return cli_diffusers.cmd_info(args)
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.train.checkpoint import list_checkpoints, resolve_checkpoint
    from diffusionforge.train.loading import split_config

    ckpt = resolve_checkpoint(args.checkpoint)
    cfg, shape = split_config(ckpt.config, str(ckpt.path))
    header = ckpt.config["diffusionforge"]
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.train.builders import check_weights_fit

    rel = "model.safetensors"  # a forged config that its weights cannot fill is refused here too
    counted = check_weights_fit(cfg, shape, ckpt.files[rel], str(ckpt.path / rel))
    if args.json:
        print(json.dumps({"path": str(ckpt.path), "step": ckpt.step, **ckpt.config}, indent=2))
        return 0
    d, f, m = cfg.data, cfg.formulation, cfg.model
    data = {
        "toy": f"toy set {d.name!r} ({d.size} points)",
        "digits": "built-in digits (8x8)",
        "glyphs": "built-in glyphs (32x32)",
    }.get(d.kind, d.path)
    if m.num_classes > 0:
        data += f", {m.num_classes} classes"
    state = "yes" if ckpt.has("training_state/state.json") else "no"
    n_params = header.get("parameters")
    if not isinstance(n_params, int) or isinstance(n_params, bool):  # count them instead
        n_params = counted
    lines = [
        f"checkpoint   {ckpt.path}",
        f"step         {ckpt.step} of {cfg.train.steps}   (training state for resume: {state})",
        f"model        {m.kind}, {n_params:,} parameters, example shape {tuple(shape)}",
        f"data         {data}, {header.get('examples', '?')} examples, augment={d.augment}",
        f"formulation  {f.kind}"
        + (f" (sigma_data={f.sigma_data})" if f.kind == "edm" else "")
        + (f" (blocks of {f.block_size} tokens)" if f.kind == "block" else ""),
        f"ema          {cfg.ema.kind}"
        + (f" (decay {cfg.ema.decay})" if cfg.ema.kind == "classic" else "")
        + (f" (sigma_rel {cfg.ema.stds})" if cfg.ema.kind == "power" else ""),
        f"optimizer    {cfg.optim.name}, lr {cfg.optim.lr:g}, batch {cfg.train.batch_size}",
        f"sampling     sampler={cfg.sample.sampler}, nfe={cfg.sample.nfe}",
        f"preset       {cfg.preset or '(config file)'}",
    ]
    run = ckpt.path.parent.parent
    others = list_checkpoints(run) if ckpt.path.parent.name == "checkpoints" else []
    if others:
        lines.append(f"in this run  {', '.join(p.name for p in others)}")
    print("\n".join(lines))
    return 0
