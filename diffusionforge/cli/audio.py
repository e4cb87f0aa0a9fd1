"""Audio commands: `generate-audio` (WAVs + a spectrogram PNG) and `data spoken-digits`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from diffusionforge.cli.common import OUT_HELP, add_device_flags, add_nfe_flag
from diffusionforge.errors import ConfigError, DataError, UserError

BUNDLED_AUDIO = "audio-digits"


def _parse_classes(text: str | None, classes: list[str], n: int) -> list[int] | None:
    """--class '7' / 'seven' / '3,7' / 'all' -> one label per clip (n per named class)."""
    if not classes:
        if text:
            raise ConfigError("--class: this model is unconditional (it has no classes)")
        return None
    names = classes if not text or text == "all" else [t.strip() for t in text.split(",")]
    labels = []
    for name in names:
        if name in classes:
            labels.append(classes.index(name))
        elif name.isdigit() and int(name) < len(classes):
            labels.append(int(name))
        else:
            raise ConfigError(
                f"--class: unknown class {name!r} (expected 0..{len(classes) - 1} or one of "
                f"{', '.join(classes)})"
            )
    return [lab for lab in labels for _ in range(n)]


def _cmd_generate_audio(args: argparse.Namespace) -> int:
    # deferred: loaded only when this command runs, so `--help` stays fast
    import numpy as np

    from diffusionforge.cli.common import precision, resolve_device
    from diffusionforge.cli.outputs import resolve_out
    from diffusionforge.data.audio import save_wav
    from diffusionforge.pipelines.audio import load_audio_pipeline
    from diffusionforge.pipelines.images import weights_sha256
    from diffusionforge.pipelines.outputs import atomic_write
    from diffusionforge.plot import spectrogram_image

    if args.n < 1 or args.nfe < 1:
        raise ConfigError("--n and --nfe must be 1 or more")
    if not 0 <= args.guidance <= 100:
        raise UserError(f"--guidance: expected a number in [0, 100], got {args.guidance}")
    device = resolve_device(args)
    out = resolve_out(args.out, "generate-audio", (".wav", ".npy"), "audio")
    torch.set_num_threads(max(1, args.threads))
    pipe = load_audio_pipeline(args.checkpoint, use_ema=not args.no_ema)
    labels = _parse_classes(args.cls, pipe.classes, args.n)
    count = len(labels) if labels is not None else args.n
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.limits import check_count

    check_count(count, "--n (clips of every class requested)", bound="n")
    seeds = [args.seed + i for i in range(count)]
    plan = pipe.pipe.plan(args.nfe, args.sampler, args.schedule)
    wall = time.perf_counter()
    with precision(args):
        waves = pipe.generate(
            seeds,
            labels=None if labels is None else torch.tensor(labels),
            guidance=args.guidance,
            plan=plan,
            device=device,
        )
    waves = waves.float().cpu()
    wall = time.perf_counter() - wall
    names = [pipe.classes[lab] for lab in labels] if labels is not None else [None] * count
    titles = [f"{name or 'sample'} (seed {seed})" for name, seed in zip(names, seeds, strict=True)]
    with out.writing():
        if out.single and out.suffix == ".npy":
            atomic_write(out.path, lambda f: np.save(f, waves.numpy()), f"--out {out.path}")
        elif out.single:  # the clips one after another, in the order of the manifest's titles
            save_wav(out.path, waves.reshape(-1), pipe.rate)
        else:
            for wave, name, seed in zip(waves, names, seeds, strict=True):
                save_wav(out.name(seed, "wav", name, **{"class": name}), wave, pipe.rate)
            spectrogram_image(waves, pipe.rate, titles, cols=min(8, count)).save(
                out.overview("spectrograms.png")
            )
    audio_seconds = count * pipe.length / pipe.rate
    info = {
        "checkpoint": str(pipe.pipe.checkpoint.path),
        "weights": pipe.pipe.weights,
        "checkpoint_sha256": weights_sha256(pipe.pipe),
        "route": pipe.route,
        "sampler": plan.sampler,
        "schedule": plan.schedule,
        "nfe": plan.nfe,
        "guidance": args.guidance,
        "seeds": seeds,
        "classes": titles,
        "device": args.device,
        "dtype": args.dtype,
        "cpu_seconds": pipe.timings,
        "real_time_factor_wall": wall / audio_seconds,
        "threads": torch.get_num_threads(),
    }
    where = out.finish(info)
    print(
        f"wrote {count} clip(s) ({audio_seconds:g} s of audio at {pipe.rate} Hz, {pipe.route} "
        f"route, {plan.sampler}, {plan.schedule}, NFE {plan.nfe}) to {where}"
        f"{'' if out.single else '/ (with spectrograms.png)'} in {wall:.1f}s "
        f"(real-time factor {wall / audio_seconds:.2f}, {torch.get_num_threads()} thread(s))"
    )
    return 0


def _cmd_spoken_digits(args: argparse.Namespace) -> int:
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.data.spoken_digits import export_folder, load_spoken_digits

    if args.rate not in (8000, 16000):
        raise DataError(f"--rate: 8000 or 16000 expected, got {args.rate}")
    torch.set_num_threads(1)
    waves, labels, _ = load_spoken_digits(args.rate, args.per_voice, args.seed)
    out = Path(args.out)
    try:
        export_folder(out, waves, labels, args.rate)
    except OSError as e:
        raise UserError(f"{out}: cannot write there ({e.strerror or e})") from None
    print(f"wrote {len(waves)} one-second clips at {args.rate} Hz to {out}/ (0-zero ... 9-nine)")
    return 0


def add_commands(sub) -> None:
    g = sub.add_parser("generate-audio", help="audio models: write WAV files and spectrograms")
    g.add_argument(
        "checkpoint", help=f"audio checkpoint or run folder, or '{BUNDLED_AUDIO}' (bundled)"
    )
    g.add_argument("--class", dest="cls", help="class names or indices, comma-separated, 'all'")
    g.add_argument("--n", type=int, default=4, help="clips per class (unconditional: clips)")
    add_nfe_flag(g, 16, "network evaluations per clip (default: 16)")
    g.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance scale")
    g.add_argument("--seed", type=int, default=0, help="clip i is drawn from seed + i")
    g.add_argument("--sampler", help="a sampler name (default: recommended for the NFE)")
    g.add_argument("--schedule", help="a schedule name (default: recommended for the NFE)")
    g.add_argument(
        "--out", default="audio", help=OUT_HELP + "; .wav: the clips end to end, .npy: an array"
    )
    g.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    g.add_argument("--no-ema", action="store_true", help="use the raw weights, not the EMA")
    add_device_flags(g)
    g.set_defaults(func=_cmd_generate_audio)

    d = sub.add_parser("data", help="build the built-in data sets as files")
    dsub = d.add_subparsers(dest="dataset", required=True, parser_class=sub._parser_class)
    s = dsub.add_parser("spoken-digits", help="'zero'..'nine' spoken by espeak-ng, as WAVs")
    s.add_argument("--out", required=True, help="folder (class sub-folders 0-zero .. 9-nine)")
    s.add_argument("--rate", type=int, default=8000, help="sample rate: 8000 or 16000")
    s.add_argument("--per-voice", type=int, default=2, help="clips per (accent, voice, digit)")
    s.add_argument("--seed", type=int, default=0, help="draws the speeds and pitches")
    s.set_defaults(func=_cmd_spoken_digits)
