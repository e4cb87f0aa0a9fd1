"""`diffusionforge eval-prompts CHECKPOINT`: prompt faithfulness of a text-to-image model.

Generates one image per prompt (seen and held-out compositions of the procedural scenes, or the
prompts of `--prompts FILE`) for every `--guidance` x `--nfe` setting, judges each image with
the scene judge (eval/judge.py) and writes, in `--out`: `table.md` (also printed),
`summary.csv`, `summary.json`, `results.csv` (one row per image with its verdicts) and
`samples-g<G>-nfe<N>.png` (images with prompt, what the judge saw, and the verdict).
CHECKPOINT `oracle` (or `oracle64`) draws the true scene of each prompt instead of a model: the
judge's ceiling. Scoring is in eval/prompts.py; this module only validates and orchestrates.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

from diffusionforge.cli.common import add_device_flags
from diffusionforge.errors import UserError

ORACLES = {"oracle": 32, "oracle64": 64}


def _numbers(text: str, flag: str, kind: type) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{flag}: expected comma-separated numbers, got {text!r}") from None
    if not values or any(v < 0 or (kind is int and v == 0) for v in values):
        raise UserError(f"{flag}: expected {'positive' if kind is int else '>= 0'} numbers")
    if not all(math.isfinite(v) for v in values):
        raise UserError(f"{flag}: expected finite numbers, got {text!r}")
    if kind is int:
        # deferred: loaded only when this command runs, so `--help` stays fast
        from diffusionforge.limits import check_list

        check_list(values, flag, bound="nfe")
    return values


def _read_prompts(path: str) -> list[str]:
    p = Path(path).expanduser()
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(
            f"--prompts {p}: cannot read ({getattr(e, 'strerror', None) or e})"
        ) from None
    prompts = [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise UserError(f"--prompts {p}: no prompts (one per line)")
    return prompts


def _cmd_eval_prompts(args) -> int:
    # deferred: loaded only when this command runs, so `--help` stays fast
    import torch

    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.cli.common import place, precision, resolve_device
    from diffusionforge.core.samplers import SAMPLERS
    from diffusionforge.core.schedules import SCHEDULES
    from diffusionforge.eval import prompts as ev
    from diffusionforge.eval.judge import load_judge
    from diffusionforge.plot import save_png

    guidances = _numbers(args.guidance, "--guidance", float)
    nfes = _numbers(args.nfe, "--nfe", int)
    for flag, value in (
        ("--n", args.n),
        ("--batch-size", args.batch_size),
        ("--threads", args.threads),
    ):
        if value <= 0:
            raise UserError(f"{flag}: expected a positive number, got {value}")
    if args.show < 0:
        raise UserError(f"--show: expected 0 or more, got {args.show}")
    if args.sampler and args.sampler not in SAMPLERS:
        raise UserError(f"--sampler {args.sampler}: expected one of {', '.join(SAMPLERS)}")
    if args.schedule and args.schedule not in SCHEDULES:
        raise UserError(f"--schedule {args.schedule}: expected one of {', '.join(SCHEDULES)}")
    if args.judge and not (Path(args.judge) / "judge.json").is_file():
        raise UserError(f"--judge {args.judge}: no judge.json in that folder")
    device = resolve_device(args)
    torch.set_num_threads(args.threads)
    if args.prompts:
        cases, outside = ev.cases_from_prompts(_read_prompts(args.prompts))
        for text in outside:
            print(f"skipping prompt outside the scene grammar: {text!r}", file=sys.stderr)
        if not cases:
            raise UserError(f"--prompts {args.prompts}: no prompt is in the scene grammar")
    else:
        cases = ev.prompt_cases(args.n, args.n, seed=args.seed)
    out = Path(
        args.out or f"eval-prompts-{re.sub(r'[^A-Za-z0-9]+', '-', Path(args.checkpoint).name)}"
    )
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / ".write-test").write_text("")
        (out / ".write-test").unlink()
    except OSError as e:
        raise UserError(f"--out {out}: not writable ({e.strerror or e})") from None

    if args.checkpoint in ORACLES and not Path(args.checkpoint).exists():
        pipe = ev.RenderPipeline(ORACLES[args.checkpoint])
    else:
        # deferred: loaded only when this command runs, so `--help` stays fast
        from diffusionforge.pipelines.text2image import load_text2image

        pipe = load_text2image(args.checkpoint, use_ema=not args.no_ema)
        place(pipe, device)  # the network (and decoder); the judge runs on the cpu
    judge = load_judge(args.judge, log=lambda s: print(s, file=sys.stderr))
    val = judge.info.get("validation", {})
    if val:
        worst = min(acc[a] for acc in val.values() for a in ("layout", "shape", "colour", "count"))
        print(f"judge: worst per-attribute accuracy on fresh renders {100 * worst:.1f}%")

    show = _show_indices(cases, args.show)

    def report(setting: dict, images) -> None:
        g, nfe = setting["guidance"], setting["nfe"]
        if show:
            picture = ev.verdict_picture(images[show], [setting["rows"][i] for i in show])
            save_png(picture, out / f"samples-g{g:g}-nfe{nfe}.png")
        summary = setting["summary"]
        overall = ", ".join(f"{k} {100 * v['overall']:.1f}%" for k, v in summary.items())
        print(
            f"guidance {g:g}, nfe {nfe}: overall {overall} ({setting['seconds']:.0f}s)",
            file=sys.stderr,
        )

    with precision(args):
        settings = _sweep(ev, pipe, judge, cases, guidances, nfes, args, report)
    ev.write_reports(settings, out)
    print(ev.table(settings))
    pictures = ", samples-*.png" if show else ""
    print(f"wrote {out}/table.md, summary.csv, summary.json, results.csv{pictures}")
    return 0


def _sweep(ev, pipe, judge, cases, guidances, nfes, args, report):
    return ev.sweep(
        pipe,
        judge,
        cases,
        guidances=guidances,
        nfes=nfes,
        seed=args.seed,
        batch_size=args.batch_size,
        sampler=args.sampler,
        schedule=args.schedule,
        on_setting=report,
    )


def _show_indices(cases, n: int) -> list[int]:
    """Up to n prompts for the picture, alternating seen and held-out ones."""
    by_split = [[i for i, c in enumerate(cases) if c.split == s] for s in ("seen", "heldout")]
    out = []
    for k in range(n):
        for idx in by_split:
            if k < len(idx) and len(out) < n:
                out.append(idx[k])
    return sorted(out)


def add_commands(sub) -> None:
    p = sub.add_parser(
        "eval-prompts", help="prompt faithfulness (kind/colour/count/size/relation) on scenes"
    )
    p.add_argument(
        "checkpoint", help="text-to-image checkpoint or run folder, a bundled name, or 'oracle'"
    )
    p.add_argument("--n", type=int, default=100, help="prompts per split (seen, held-out)")
    p.add_argument("--prompts", help="a text file of prompts, one per line, instead of --n")
    p.add_argument("--guidance", default="4", help="comma-separated scales, e.g. 1,2,4")
    p.add_argument("--nfe", default="20", help="comma-separated NFE values, e.g. 10,20")
    p.add_argument("--sampler", help="sampler name (default: recommended for the NFE)")
    p.add_argument("--schedule", help="noise schedule name (default: recommended)")
    p.add_argument("--seed", type=int, default=0, help="prompt i is drawn from seed + i")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--show", type=int, default=24, help="images in each samples PNG (0: none)")
    p.add_argument("--judge", help="judge folder (default: bundled, else cached, else trained)")
    p.add_argument("--out", help="output folder (default ./eval-prompts-<checkpoint name>)")
    p.add_argument("--no-ema", action="store_true", help="use raw weights, not the EMA")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    add_device_flags(p)
    p.set_defaults(func=_cmd_eval_prompts)
