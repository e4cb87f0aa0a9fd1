"""Text-to-image through the engine and the pipeline (issue 5): scenes data with caption
dropout, load_text2image, guidance with negative prompts, prompt and editing errors, the CLI."""

from __future__ import annotations

import warnings

import pytest
import torch

from diffusionforge.errors import ConfigError
from diffusionforge.modalities import build_dataset, make_trainer
from diffusionforge.pipelines.text2image import PromptError, load_text2image
from diffusionforge.train.config import apply_overrides, load_preset

from trainkit import TWO_STEPS, run_cli

TINY_T2I = [
    "data.size=64",
    "model.dit.dim=32",
    "model.dit.depth=1",
    "model.dit.heads=2",
    "model.text_encoder.dim=16",
    "model.text_encoder.depth=1",
    "model.text_encoder.heads=2",
    "model.text_encoder.max_tokens=12",
    *TWO_STEPS,
    "optim.warmup_steps=1",
]


def t2i_cfg(*overrides: str):
    return apply_overrides(load_preset("t2i-scenes"), [*TINY_T2I, *overrides])


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    run = tmp_path_factory.mktemp("t2i")
    make_trainer(t2i_cfg(), run_dir=run, log=lambda *_: None).fit()
    return run


def test_scenes_dataset_has_caption_ids_and_the_empty_caption_as_null():
    cfg = t2i_cfg()
    data = build_dataset(cfg)
    assert data.data.shape == (64, 3, 32, 32) and -1 <= data.data.min() < data.data.max() <= 1
    assert data.cond.shape == (64, 12) and data.labels is None
    assert data.null_cond.tolist() == [2] + [0] * 11  # <cls> alone
    vocab = cfg.model.text_encoder.vocab  # filled in from the captions and the scene grammar
    assert {"red", "circles", "left", "beneath"} <= set(vocab) and vocab == sorted(vocab)
    with pytest.raises(ConfigError, match="model.text_encoder.kind"):
        build_dataset(t2i_cfg("model.text_encoder.kind=bert"))


def test_captions_dataset_from_a_folder_with_sidecars(tmp_path):
    from PIL import Image

    for i, (colour, text) in enumerate([((255, 0, 0), "a red square"), ((0, 0, 255), "Blue!")]):
        Image.new("RGB", (20, 20), colour).save(tmp_path / f"{i}.png")
        (tmp_path / f"{i}.txt").write_text(text)
    cfg = t2i_cfg("data.kind=captions", f"data.path={tmp_path}", "data.image_size=16")
    data = build_dataset(cfg)
    assert data.data.shape == (2, 3, 16, 16) and cfg.model.text_encoder.vocab == [
        "a",
        "blue",
        "red",
        "square",
    ]
    assert data.cond[1, :2].tolist() == [2, 3 + 1]  # <cls> blue


def test_generate_is_seeded_guided_and_batch_invariant(tiny_checkpoint):
    pipe = load_text2image(tiny_checkpoint)
    assert pipe.resolution == 32 and pipe.max_prompt_tokens == 12
    prompts = ["two red circles left of a blue square", "a green cross"]
    a = pipe.generate(prompts, nfe=4, guidance=3.0, seeds=[1, 2])
    assert a.shape == (2, 3, 32, 32) and a.min() >= -1 and a.max() <= 1
    alone = pipe.generate(prompts[1:], nfe=4, guidance=3.0, seeds=[2])
    torch.testing.assert_close(alone[0], a[1], rtol=0, atol=1e-5)  # its own generator
    # guidance 1 never evaluates the negative branch; other scales do
    g1 = pipe.generate(prompts[:1], nfe=4, guidance=1.0, seeds=[1])
    g1n = pipe.generate(prompts[:1], nfe=4, guidance=1.0, seeds=[1], negative_prompt="a red circle")
    assert torch.equal(g1, g1n)
    neg = pipe.generate(prompts[:1], nfe=4, guidance=3.0, seeds=[1], negative_prompt="a red circle")
    assert not torch.equal(neg[0], a[0])


def test_prompt_errors_and_warnings(tiny_checkpoint):
    pipe = load_text2image(tiny_checkpoint)
    with pytest.raises(PromptError, match="prompt 1: empty"):
        pipe.generate(["a red circle", "  "], nfe=2, guidance=2.0, seeds=[0, 1])
    with pytest.raises(PromptError, match="seeds"):
        pipe.generate(["a red circle"], nfe=2, guidance=2.0, seeds=[0, 1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe.generate(["a purple circle " + "and " * 20], nfe=2, guidance=2.0, seeds=[0])
    lines = [str(w.message) for w in caught]
    assert any("cut to 12" in w for w in lines)
    assert any("unknown word(s) and, purple" in w for w in lines)


def test_editing_input_errors(tiny_checkpoint):
    pytest.importorskip("diffusionforge.core.editing")  # worker B's img2img/inpainting
    pipe = load_text2image(tiny_checkpoint)
    init = torch.zeros(3, 32, 32)
    kw = dict(nfe=4, guidance=2.0, seeds=[0])
    with pytest.raises(PromptError, match="init image: 16x16 pixels"):
        pipe.generate(["a red circle"], init_image=torch.zeros(3, 16, 16), **kw)
    with pytest.raises(PromptError, match="mask: expected 32x32"):
        pipe.generate(["a red circle"], init_image=init, mask=torch.ones(8, 8), **kw)
    with pytest.raises(PromptError, match="mask: all zero"):
        pipe.generate(["a red circle"], init_image=init, mask=torch.zeros(32, 32), **kw)
    mask = torch.zeros(32, 32)
    mask[:, 16:] = 1  # generate the right half, keep the left
    out = pipe.generate(["a red circle"], init_image=init - 1, mask=mask, **kw)
    assert torch.equal(out[0, :, :, :16], torch.full((3, 32, 16), -1.0))
    img2img = pipe.generate(["a red circle"], init_image=init, strength=0.5, **kw)
    assert img2img.shape == (1, 3, 32, 32)


@pytest.mark.slow
def test_generate_cli_writes_pngs_and_refuses_bad_prompts(tiny_checkpoint, tmp_path):
    out = tmp_path / "gen"
    args = ["generate", "a red circle", "two blue zebras above a green cross"]
    r = run_cli(
        [*args, "--checkpoint", str(tiny_checkpoint), "--nfe", "3", "--n", "2", "--out", str(out)]
    )
    assert r.returncode == 0, r.stderr
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == 5 and "grid.png" in pngs and pngs[0] == "generate-0-a-red-circle.png"
    # one warning line for the unknown word, although its prompt is drawn twice
    assert r.stderr.count("warning: prompt: unknown word(s) zebras") == 1
    r = run_cli(["generate", "", "--checkpoint", str(tiny_checkpoint), "--out", str(out)])
    assert r.returncode == 2 and r.stderr.strip().startswith("error: prompt 1: empty")
    r = run_cli(["generate", "a red circle", "--mask", "m.png", "--out", str(out)])
    assert r.returncode == 2 and "--mask: inpainting needs --init-image" in r.stderr
