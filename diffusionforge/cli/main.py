"""Command line: `diffusionforge COMMAND ...`; `diffusionforge --help` says which command is for
what. Each command lives in its own module of this package (cli/sample.py, cli/text2image.py,
...); this one builds the parser and turns errors into one line.

Parses and validates arguments, then calls train/ and pipelines/; no math here. Every problem a
person can cause ends in one line on stderr, `error: ...`, and exit code 2 (3 when training
diverged); tracebacks are kept for bugs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from diffusionforge.cli import audio as cli_audio
from diffusionforge.cli import prompts as cli_prompts
from diffusionforge.cli import schedule as cli_schedule
from diffusionforge.cli import serve as cli_serve
from diffusionforge.cli import text as cli_text
from diffusionforge.cli import text2image as cli_generate
from diffusionforge.cli.common import (
    EXIT_DIVERGED,
    EXIT_USAGE,
    OUT_HELP,
    _check_writable_dir,
    _flag_spellings,
    _Parser,
    add_device_flags,
    add_nfe_flag,
    sampler_help,
    schedule_help,
    steps_alias,
)
from diffusionforge.cli.evaluate import _cmd_eval
from diffusionforge.cli.info import _cmd_info
from diffusionforge.cli.sample import _cmd_sample
from diffusionforge.cli.train import _cmd_ema, _cmd_train
from diffusionforge.errors import TrainingDiverged, UserError
from diffusionforge.modalities import MODALITIES


def _cmd_demo(args) -> int:
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.demo import SECTIONS, run_demo

    for name in args.section or []:
        if name not in SECTIONS:
            raise UserError(f"--section: expected one of {', '.join(SECTIONS)}, got {name!r}")
    _check_writable_dir(Path(args.out), f"--out {args.out}")
    return run_demo(Path(args.out), sections=args.section or list(SECTIONS), quick=args.quick)


def overview() -> str:
    """The help screen's map: which command draws from which kind of checkpoint (the
    modality table), then the rest."""
    verbs: dict[str, list[str]] = {}
    for m in MODALITIES.values():
        if m.verb != "eval":
            verbs.setdefault(m.verb, []).append(m.summary)
    draw = "\n".join(f"  {verb:15s} {'; '.join(what)}" for verb, what in verbs.items())
    return (
        "Train and sample diffusion models.\n\n"
        "Draw samples (the command follows the kind of checkpoint; `info` says which):\n"
        f"{draw}\n"
        "Train and inspect:  train, ema (post-hoc EMA), info, eval (FID/KID, sweeps; text and\n"
        "                    autoencoder checkpoints too), eval-prompts, fit-schedule\n"
        "Other:              demo (a tour on the bundled models), serve (HTTP API), data\n"
        "`diffusionforge COMMAND --help` lists a command's options."
    )


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="diffusionforge",
        description=overview(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # deferred: the package itself, loaded when the parser is built (no torch)
    from diffusionforge import __version__

    p.add_argument("--version", action="version", version=f"diffusionforge {__version__}")
    sub = p.add_subparsers(
        dest="command", required=True, parser_class=_Parser, metavar="COMMAND", title="commands"
    )

    t = sub.add_parser("train", help="train a model from a preset or config file")
    t.add_argument("--preset", help="named preset (see --list-presets)")
    t.add_argument("--config", help="TOML or JSON config file")
    t.add_argument(
        "--data",
        help=".npy file of shape (N, ...), an image folder, digits, glyphs or a toy set name",
    )
    t.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override, e.g. optim.lr=2e-4"
    )
    t.add_argument(
        "--run-dir", help="run folder (default: runs/<preset>, or runs/<preset>-<data> with --data)"
    )
    t.add_argument(
        "--resume",
        help="'auto' (newest complete checkpoint of the run) or a checkpoint path; with no "
        "--preset/--config the run's own config.json is used",
    )
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the run already in --run-dir (checkpoints, logs, samples) and start over",
    )
    t.add_argument("--max-time", help="wall-clock budget of this invocation, e.g. 10m or 1h30m")
    t.add_argument(
        "--max-cpu-time",
        help="CPU-time budget of the training process, e.g. 10m (comparable on a busy machine)",
    )
    t.add_argument("--steps", type=int, help="total steps (same as --set train.steps=N)")
    t.add_argument("--until-step", type=int, help="save and stop after this step")
    t.add_argument("--seed", type=int, help="same as --set train.seed=N")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--list-presets", action="store_true", help="print preset names and exit")
    t.set_defaults(func=_cmd_train)

    s = sub.add_parser("sample", help="draw samples from a checkpoint")
    s.add_argument("checkpoint", help="checkpoint folder, or a run folder (its newest)")
    s.add_argument(
        "--n",
        type=int,
        help="samples per class for class models (--class 3,7 --n 2: 4 images; default 10), "
        "else in all (default: 64 images, 1000 vectors)",
    )
    s.add_argument(
        "--class",
        dest="cls",
        help="image models: class names or indices, comma-separated, or 'all' (default)",
    )
    s.add_argument(
        "--guidance", type=float, help="classifier-free guidance scale (default: the config's)"
    )
    s.add_argument(
        "--like", help="a PNG written by `sample`: regenerate it from its metadata, bit for bit"
    )
    s.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (results depend on it)"
    )
    s.add_argument("--sampler", help=sampler_help())
    s.add_argument("--schedule", help=schedule_help())
    add_nfe_flag(s, None, "network evaluations per sample (default: the checkpoint's)")
    s.add_argument("--seed", type=int, default=0, help="image i is drawn from seed + i")
    s.add_argument("--out", default="samples", help=OUT_HELP + "; .png: one grid, .npy: an array")
    s.add_argument("--no-ema", action="store_true", help="use raw weights, not the EMA")
    add_device_flags(s)
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.cli import latent as cli_latent

    cli_latent.add_sample_flags(s)  # --init-image, --strength, --mask
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.cli import diffusers as cli_diffusers

    s.set_defaults(func=_cmd_sample)

    v = sub.add_parser("eval", help="FID/KID/precision-recall, NFE sweep, memorization")
    v.add_argument("checkpoint", help="image model checkpoint folder, or a run folder")
    v.add_argument("--n", type=int, default=1000, help="samples for the headline metrics")
    v.add_argument("--nfe", type=int, help="NFE for the headline metrics (default: config's)")
    v.add_argument("--sampler", help="sampler for the headline metrics (default: recommended)")
    v.add_argument("--guidance", type=float, help="guidance scale (default: config's)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument(
        "--sweep-samplers",
        default="recommended,euler,heun,dpmpp_2m",
        help="comma-separated; 'recommended' is the default pair per NFE; each named sampler "
        "runs its own default schedule; empty: none (default: %(default)s)",
    )
    v.add_argument("--sweep-nfe", default="4,8,16,32", help="comma-separated NFE values")
    v.add_argument("--sweep-n", type=int, default=500, help="samples per sweep point")
    v.add_argument("--alpha", type=float, default=1 / 3, help="memorization: d1 < alpha * d2")
    v.add_argument("--inception-weights", help="Inception-v3 .pth/.safetensors (else classifier)")
    v.add_argument("--out", help="output folder (default: <run>/eval, or ./eval-<folder name>)")
    v.add_argument("--no-ema", action="store_true", help="use raw weights, not the EMA")
    v.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    v.add_argument("--data", help="diffusers folders: the data to compare with (digits, glyphs)")
    add_device_flags(v)
    v.set_defaults(func=_cmd_eval)

    i = sub.add_parser("info", help="describe a checkpoint")
    i.add_argument("checkpoint", help="checkpoint folder, or a run folder (its newest)")
    i.add_argument("--json", action="store_true", help="print the full config as JSON")
    cli_diffusers.add_dtype_flag(i)
    i.set_defaults(func=_cmd_info)

    e = sub.add_parser("ema", help="rebuild an EMA of any width from power-EMA snapshots")
    e.add_argument("run", help="run folder trained with ema.kind=power")
    e.add_argument("--sigma-rel", type=float, required=True, help="EMA width, e.g. 0.08")
    e.add_argument("--step", type=int, help="reconstruct at this step (default: last snapshot)")
    e.add_argument("--out", required=True, help="new checkpoint folder")
    e.set_defaults(func=_cmd_ema)

    d = sub.add_parser("demo", help="train and sample built-in models; write pictures")
    d.add_argument("--out", default="runs/demo", help="output folder")
    d.add_argument("--section", action="append", help="run only this section")
    d.add_argument("--quick", action="store_true", help="a few seconds per section (for tests)")
    d.set_defaults(func=_cmd_demo)
    # The other modalities' commands live in their own modules, each adding its subcommands.
    for module in (cli_generate, cli_prompts, cli_text, cli_audio, cli_serve, cli_schedule):
        module.add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.limits import check_cli_args

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        note = steps_alias(args)  # a drawing verb's --steps: --nfe, with one line saying so
        check_cli_args(args, _flag_spellings(parser, args.command))
        if note:
            print(note, file=sys.stderr)
        return args.func(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # the disk, permissions, a vanished file: the machine, not a bug
        # deferred: loaded only when this command runs, so `--help` stays fast
        from diffusionforge.train.checkpoint import describe

        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{describe(e)}", file=sys.stderr)
        return EXIT_USAGE
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
