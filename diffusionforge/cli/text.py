"""Text commands: `diffusionforge generate-text`, and `eval` on a text checkpoint.

    diffusionforge generate-text CHECKPOINT --length 256 --nfe 64
    diffusionforge generate-text CHECKPOINT --prompt "the cat [____] the mat." --hole 12
    diffusionforge generate-text CHECKPOINT --prompt "[____:30] under the tree."  # a suffix
    diffusionforge generate-text SFT_CHECKPOINT --prompt "question"   # a prompt/response model
    diffusionforge eval CHECKPOINT --ar AR_CHECKPOINT       # text metrics (metrics.json)

Arguments are validated here; the work is in pipelines/text.py and pipelines/text_eval.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

from diffusionforge.cli.common import OUT_HELP, add_device_flags, add_nfe_flag
from diffusionforge.errors import UserError


def _cmd_generate_text(args) -> int:
    # deferred: loaded only when this command runs, so `--help` stays fast
    import torch

    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.cli.common import precision, resolve_device
    from diffusionforge.cli.outputs import resolve_out
    from diffusionforge.core.discrete_samplers import TOKEN_SAMPLERS
    from diffusionforge.pipelines.text import DEFAULT_SAMPLER, load_text_pipeline

    for flag, value in (("--n", args.n), ("--nfe", args.nfe), ("--hole", args.hole)):
        if value is not None and value <= 0:
            raise UserError(f"{flag}: expected a positive number, got {value}")
    if args.length is not None and args.length <= 0:
        raise UserError(f"--length: expected a positive number of tokens, got {args.length}")
    if args.sampler is not None and (
        args.sampler not in TOKEN_SAMPLERS or args.sampler == "semi_ar"
    ):
        raise UserError(
            f"--sampler: expected ancestral, confidence or margin, got {args.sampler!r} (longer"
            " outputs than the model's context switch to semi-autoregressive blocks by themselves)"
        )
    if args.temperature is not None and args.temperature < 0:
        raise UserError(f"--temperature: expected 0 or more, got {args.temperature}")
    if args.draws is not None and args.draws <= 0:
        raise UserError(f"--draws: expected a positive number, got {args.draws}")
    if not 0 < args.accept <= 1:
        raise UserError(f"--accept: expected a probability in (0, 1], got {args.accept}")
    if args.top_k is not None and args.top_k <= 0:
        raise UserError(f"--top-k: expected a positive number, got {args.top_k}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise UserError(f"--top-p: expected a number in (0, 1], got {args.top_p}")
    torch.set_num_threads(args.threads)
    pipe = load_text_pipeline(args.checkpoint, use_ema=not args.no_ema)
    pairs = _is_pairs(pipe)
    cpu_only = (
        "a prompt/response model" if pairs else "an autoregressive model" if pipe.is_ar else None
    )
    resolve_device(args, cpu_only=cpu_only)
    out = resolve_out(args.out, "generate-text", (".txt",), "") if args.out else None
    if pairs:
        return _answer_prompt(pipe, args, out)
    if args.draws not in (None, 1):
        raise UserError("--draws: only prompt/response models verify and redraw their answers")
    args.sampler = args.sampler or DEFAULT_SAMPLER
    args.nfe = args.nfe or 64
    args.temperature = 1.0 if args.temperature is None else args.temperature
    template = pipe.template(args.prompt, args.hole) if args.prompt else None
    holes = template is not None and bool((template == pipe.mask_id).any())
    if template is not None and len(template) > pipe.context:
        raise UserError(
            f"--prompt: {len(template)} tokens (holes included) is longer than the model's "
            f"context of {pipe.context} tokens"
        )
    length = args.length or (len(template) if holes else pipe.context)
    if template is not None and length < len(template):
        raise UserError(f"--length {length}: shorter than the prompt ({len(template)} tokens)")
    with precision(args):
        ids_all = pipe.generate(
            args.n,
            length,
            template=template,
            nfe=args.nfe,
            sampler=args.sampler,
            seed=args.seed,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            device=args.device,
        )
    texts = []
    for ids in ids_all:
        mark = None
        if args.mark and template is not None:
            mark = torch.zeros(length, dtype=torch.bool)
            mark[: len(template)] = template == pipe.mask_id
            mark[len(template) :] = True
        texts.append(pipe.decode(ids, mark=mark))
    return _show(args, pipe, texts, out)


def _show(args, pipe, texts: list[str], out) -> int:
    """Print the samples; with --out, also one .txt per sample (+ samples.json) or one .txt."""
    lines = []
    for i, text in enumerate(texts):
        if len(texts) > 1:
            lines.append(f"--- sample {i} (seed {args.seed + i})")
        lines.append(text)
    print("\n".join(lines))
    if out is None:
        return 0
    with out.writing():
        if out.single:
            out.path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        for i, text in enumerate([] if out.single else texts):
            out.name(args.seed + i, "txt").write_text(text + "\n", encoding="utf-8")
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.pipelines.images import weights_sha256

    where = out.finish({
        "checkpoint": str(pipe.checkpoint.path), "weights": pipe.weights,
        "checkpoint_sha256": weights_sha256(pipe),
        "sampler": args.sampler, "nfe": args.nfe, "seed": args.seed, "prompt": args.prompt,
        "temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p,
        "draws": args.draws or 1, "accept": args.accept, "device": args.device, "dtype": args.dtype,
    })  # fmt: skip
    print(f"wrote {len(texts)} sample(s) to {where}", file=sys.stderr)
    return 0


def _is_pairs(pipe) -> bool:
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.pipelines.text_pairs import is_pairs

    return is_pairs(pipe)


def _answer_prompt(pipe, args, out) -> int:
    """A (prompt, response) model: the response to --prompt (greedy unless --temperature)."""
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.pipelines.text_pairs import answer, answer_defaults, show_sudoku

    if not args.prompt:
        raise UserError("--prompt: this model answers prompts (trained on prompt/response pairs)")
    args.temperature = 0.0 if args.temperature is None else args.temperature
    defaults = answer_defaults(pipe)
    args.sampler = args.sampler or defaults["sampler"]
    args.draws = args.draws or defaults["draws"]
    texts = []
    for i in range(args.n):
        (text,) = answer(
            pipe, [args.prompt], nfe=args.nfe, sampler=args.sampler, seed=args.seed + i,
            temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
            draws=args.draws, accept=args.accept,
        )  # fmt: skip
        texts.append(show_sudoku(args.prompt, text) if pipe.cfg.data.kind == "sudoku" else text)
    return _show(args, pipe, texts, out)


def cmd_eval_text(args) -> int:
    """`eval` on a text checkpoint (called by cli._cmd_eval)."""
    # deferred: loaded only when this command runs, so `--help` stays fast
    import torch

    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.core.discrete_samplers import TOKEN_SAMPLERS
    from diffusionforge.pipelines.text import DEFAULT_SAMPLER, load_text_pipeline
    from diffusionforge.pipelines.text_eval import TextEvalSettings, evaluate_text

    sampler = args.sampler or DEFAULT_SAMPLER
    if sampler not in TOKEN_SAMPLERS or sampler == "semi_ar":
        raise UserError(f"--sampler: expected ancestral or confidence, got {sampler!r}")
    for flag, value in (("--n", args.n), ("--elbo-steps", args.elbo_steps)):
        if value <= 0:
            raise UserError(f"{flag}: expected a positive number, got {value}")
    if args.ar and not Path(args.ar).exists():
        raise UserError(f"--ar {args.ar}: no such checkpoint")
    # deferred: loaded only when this command runs, so `--help` stays fast
    from diffusionforge.cli.common import resolve_device

    resolve_device(args, cpu_only="text evaluation")
    torch.set_num_threads(args.threads)
    pipe = load_text_pipeline(args.checkpoint, use_ema=not args.no_ema)
    if _is_pairs(pipe):
        raise UserError(
            "eval: a prompt/response model is scored on its task (Sudoku: python "
            "benchmarks/sudoku.py --skip-train); held-out text metrics do not apply"
        )
    ckpt = pipe.checkpoint.path
    run_eval = ckpt.parent.parent / "eval"  # <run>/eval for a run's checkpoint
    default = run_eval if ckpt.parent.name == "checkpoints" else Path(f"eval-{ckpt.name}")
    out = Path(args.out) if args.out else default
    settings = TextEvalSettings(
        n=args.n,
        nfe=args.nfe or pipe.cfg.sample.nfe,
        sampler=sampler,
        seed=args.seed,
        elbo_steps=args.elbo_steps,
        max_windows=args.max_windows,
        ar=args.ar,
        infill=args.infill,
    )
    metrics = evaluate_text(pipe, settings, out, lambda m: print(m, file=sys.stderr))
    for key, value in metrics.items():
        if not isinstance(value, list):
            print(f"{key:28s} {value:.4g}" if isinstance(value, float) else f"{key:28s} {value}")
    for line in metrics.get("infill_examples", []):
        print(f"infill: {line}")
    print(f"wrote metrics.json and samples.txt to {out}")
    return 0


def add_commands(sub) -> None:
    g = sub.add_parser("generate-text", help="generate or infill text with a text checkpoint")
    g.add_argument("checkpoint", help="text checkpoint folder, or a run folder (its newest)")
    g.add_argument(
        "--prompt",
        help='text with holes: "the cat [____] the mat." ([____:8] is a hole of 8 tokens)',
    )
    g.add_argument("--hole", type=int, default=8, help="tokens per [____] hole (default 8)")
    g.add_argument(
        "--length",
        type=int,
        help="tokens in all (default: the prompt's with holes, else the model's context); "
        "longer than the context: semi-autoregressive blocks",
    )
    add_nfe_flag(
        g, None, "denoising steps (default 64; prompt/response models: one per response token)"
    )
    g.add_argument(
        "--sampler",
        help="confidence (LLaDA), margin or ancestral (default: confidence; Sudoku models: margin)",
    )
    g.add_argument(
        "--draws", type=int,
        help="prompt/response models: draw again, up to this many draws in all, while the model "
        "doubts its answer (a written token's probability with the rest filled in below --accept)"
        "; keeps the answer it scores highest (default 1; Sudoku models: 24)",
    )  # fmt: skip
    g.add_argument(
        "--accept", type=float, default=0.9,
        help="with --draws: the probability every written token must reach (default 0.9)",
    )  # fmt: skip
    g.add_argument(
        "--temperature", type=float,
        help="0: most probable tokens (default 1; prompt/response models: 0)",
    )  # fmt: skip
    g.add_argument("--top-k", type=int, help="keep the k most probable tokens")
    g.add_argument("--top-p", type=float, help="nucleus sampling mass")
    g.add_argument("--n", type=int, default=1, help="number of samples (seeds seed, seed+1...)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--mark", action="store_true", help="bracket the generated spans")
    g.add_argument("--no-ema", action="store_true", help="use raw weights, not the EMA")
    g.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    g.add_argument(
        "--out",
        help="also write the samples: "
        + OUT_HELP
        + "; .txt: all in one file (default: print only)",
    )
    add_device_flags(g)
    g.set_defaults(func=_cmd_generate_text)

    # text-only options of the shared `eval` command (image models ignore them)
    v = sub.choices["eval"]
    v.add_argument("--ar", help="text models: an AR checkpoint that scores the samples")
    v.add_argument("--elbo-steps", type=int, default=32, help="text: strata of the NELBO")
    v.add_argument("--max-windows", type=int, default=512, help="text: held-out windows scored")
    v.add_argument("--infill", type=int, default=200, help="grammar: sentences to infill")
