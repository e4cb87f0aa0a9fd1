"""Text models end to end: train through the engine's presets, the tokenizer in the checkpoint,
`generate-text` with infilling, `eval` on a text checkpoint, and the one-line bad-input errors."""

import json

import pytest
import torch

from diffusionforge.cli import main
from diffusionforge.modalities import make_trainer
from diffusionforge.pipelines.text import load_text_pipeline
from diffusionforge.train.config import apply_overrides, load_preset

TINY = [
    "model.transformer.preset=tiny",
    "data.text.tokenizer=char",
    "data.text.length=32",
    "data.text.sentences=1500",
    "train.batch_size=32",
    "train.tensorboard=false",
    "train.progress=false",
    "optim.lr=3e-3",
    "optim.warmup_steps=5",
    "ema.decay=0.9",
]


def tiny_run(tmp, kind: str, steps: int):
    cfg = apply_overrides(
        load_preset("grammar"),
        [*TINY, f"formulation.kind={kind}", f"train.steps={steps}", f"train.ckpt_every={steps}"],
    )
    return make_trainer(cfg, tmp / kind, log=lambda m: None).fit()


@pytest.fixture(scope="module")
def masked_ckpt(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("text"), "masked", 40).checkpoint


def test_training_lowers_the_loss_and_saves_the_tokenizer(masked_ckpt):
    pipe = load_text_pipeline(masked_ckpt)
    assert (masked_ckpt / "tokenizer.json").is_file()
    manifest = json.loads((masked_ckpt / "manifest.json").read_text())
    assert "tokenizer.json" in manifest["files"]  # verified like the weights
    vocab = pipe.tokenizer.vocab_size
    assert pipe.cfg.model.transformer.vocab_size == vocab and pipe.context == 32
    # the initial loss is log(V - 1) (tests/test_text_models.py); 40 tiny steps reach about the
    # unigram entropy of the characters (2.9 nats), well below it
    from diffusionforge.pipelines.text_eval import heldout, nll_per_token
    from diffusionforge.train.builders_text import load_corpus

    data = heldout(pipe, load_corpus(pipe.cfg), 64)
    assert nll_per_token(pipe, data, steps=8) < 0.93 * torch.tensor(vocab - 1.0).log()


def test_infilling_keeps_the_given_text_and_fills_every_hole(masked_ckpt, capsys):
    code = main(
        ["generate-text", str(masked_ckpt), "--prompt", "the cat [____:6] mat.", "--nfe", "8"]
    )
    text = capsys.readouterr().out.strip()
    assert code == 0 and text.startswith("the cat ") and text.endswith(" mat.")
    assert len(text) == len("the cat ") + 6 + len(" mat.")
    pipe = load_text_pipeline(masked_ckpt)
    t = pipe.template("[__:3]dog[__:4]", 1)  # a suffix and a prefix hole around given text
    out = pipe.generate(2, 40, template=t, nfe=8, seed=3)  # 40 > context: semi-AR blocks
    assert (out != pipe.mask_id).all() and (out[:, 3:6] == t[3:6]).all()
    again = pipe.generate(1, 40, template=t, nfe=8, seed=4)  # seed per sample, any batch
    assert torch.equal(again[0], out[1])


def test_bad_prompts_are_one_line_errors(masked_ckpt, capsys):
    long = "the cat sleeps. " * 3  # 48 characters > the context of 32
    assert main(["generate-text", str(masked_ckpt), "--prompt", long]) == 2
    err = capsys.readouterr().err
    assert "longer than the model's context of 32" in err and err.count("\n") == 1
    assert main(["generate-text", str(masked_ckpt), "--prompt", "The Cat [____]"]) == 2
    err = capsys.readouterr().err
    assert "unknown character 'T'" in err and err.count("\n") == 1
    assert main(["generate-text", str(masked_ckpt), "--prompt", "the [__]", "--length", "3"]) == 2
    assert "shorter than the prompt" in capsys.readouterr().err
    assert main(["sample", str(masked_ckpt), "--n", "2"]) == 2
    assert "use `diffusionforge generate-text`" in capsys.readouterr().err


def test_bad_corpora_are_one_line_errors(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"good text\n" * 3 + b"\xc3\x28 broken")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_text("")
    for path, words in ((bad, ["bad.txt", "byte offset 30"]), (empty, ["empty corpus"])):
        code = main(
            ["train", "--preset", "grammar", "--set", "data.kind=text", "--set",
             f"data.path={path}", "--run-dir", str(tmp_path / "run"), "--no-progress"]
        )  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and all(w in err for w in words), err


@pytest.mark.slow
def test_eval_on_text_checkpoints_reports_every_metric(tmp_path, masked_ckpt, capsys):
    ar = tiny_run(tmp_path, "ar", 20).checkpoint
    code = main(
        ["eval", str(masked_ckpt), "--ar", str(ar), "--n", "8", "--nfe", "8", "--elbo-steps",
         "4", "--max-windows", "16", "--infill", "8", "--out", str(tmp_path / "ev")]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    keys = ["heldout_ppl_bound", "gen_ppl", "unigram_entropy", "copied_span_mean"]
    keys += ["grammar_parse_fraction", "grammar_parse_fraction_heldout", "infill_parse_rate"]
    assert all(key in m for key in keys), m
    assert 0 <= m["infill_parse_rate"] <= 1 and m["heldout_windows"] == 16
    assert (
        main(["eval", str(ar), "--n", "4", "--max-windows", "8", "--out", str(tmp_path / "e2")])
        == 0
    )
    assert "heldout_ppl" in json.loads((tmp_path / "e2" / "metrics.json").read_text())
