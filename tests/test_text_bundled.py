"""The bundled grammar model: small, loads from its folder alone, and writes valid English."""

import torch

from diffusionforge.assets import bundled_path
from diffusionforge.data.grammar import parses
from diffusionforge.pipelines.text import load_text_pipeline
from diffusionforge.pipelines.text_eval import infill_parse_rate
from diffusionforge.train.builders_text import load_corpus


def test_bundled_grammar_model_is_small_and_complete():
    folder = bundled_path("grammar")
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert size < 4_000_000
    pipe = load_text_pipeline(folder)
    assert pipe.tokenizer.kind == "bpe" and not pipe.is_ar
    assert next(pipe.net.parameters()).dtype == torch.float32  # fp16 on disk, fp32 in memory


def test_bundled_grammar_model_infills_held_out_sentences():
    """A deterministic slice of the benchmark (benchmarks/text_grammar.py, >= 95% bar there)."""
    pipe = load_text_pipeline(bundled_path("grammar"))
    held = load_corpus(pipe.cfg).heldout[:32]
    rate, _ = infill_parse_rate(pipe, held, nfe=16, sampler="confidence", seed=0)
    assert rate >= 0.9
    t = pipe.template("the old cat [____:3] sleeps.", 1)
    out = pipe.generate(4, len(t), template=t, nfe=16, seed=0)
    assert sum(parses(pipe.decode(x)) for x in out) >= 3


def test_bundled_sudoku_model_solves_a_puzzle_it_never_saw():
    """The bundled `sudoku` model (float16 EMA weights) answers by its name with its defaults
    (margin order, up to 24 verified draws): a classic 30-given puzzle, deterministic seeds."""
    from diffusionforge.data import sudoku
    from diffusionforge.pipelines.text_pairs import answer

    folder = bundled_path("grammar").parent / "sudoku"
    assert sum(p.stat().st_size for p in folder.iterdir()) < 2_000_000
    torch.set_num_threads(1)
    pipe = load_text_pipeline("sudoku")
    puzzle = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"
    (text,) = answer(pipe, [puzzle])
    assert sudoku.is_solution(puzzle, text), text
