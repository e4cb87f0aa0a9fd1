"""Layout-grounded text-to-image (issue 5): box painting against exact areas, the layout
encoder, the caption word tags, the prompt -> layout planner on held-out combinations, and a
tiny model trained and sampled end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffusionforge.data import layouts, scene_captions, scene_drawing, scene_specs
from diffusionforge.data.word_tokenizer import WordTokenizer
from diffusionforge.modalities import build_dataset, make_trainer
from diffusionforge.nets.layout import SLOT, LayoutEncoder, box_coverage, paint
from diffusionforge.nets.unet import UNet
from diffusionforge.pipelines.text2image import load_text2image
from diffusionforge.train.config import apply_overrides, load_preset

from trainkit import TWO_STEPS

TOKENIZER = WordTokenizer(list(scene_captions.VOCABULARY), 24)


def test_box_coverage_is_the_exact_area_of_each_box():
    boxes = torch.tensor([[[0.1, 0.2, 0.35, 0.9], [0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 0.5, 0.7]]])
    cover = box_coverage(boxes, 16, 32)
    areas = cover.sum((-1, -2)) / (16 * 32)
    assert torch.allclose(areas[0], torch.tensor([0.25 * 0.7, 1.0, 0.0]), atol=1e-6)
    # a box edge between pixel centres covers that pixel partially: x0 = 0.1 at width 32
    assert cover[0, 0, 8, 3].item() == pytest.approx(1 - (0.1 * 32 - 3), abs=1e-5)
    assert cover[0, 0, 0].sum() == 0  # rows above y0 = 0.2


def test_paint_puts_each_phrase_in_its_box_and_the_null_layout_paints_nothing():
    boxes = torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]])
    values = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    m = paint((boxes, values), 4, 4)
    assert m.shape == (1, 3, 4, 4)
    assert m[0, 0, :2, :2].eq(1).all() and m[0, 1, 2:, 2:].eq(2).all()
    assert m[0, :2, :2, 2:].eq(0).all() and m[0, 2].sum() == 8  # occupancy
    enc = LayoutEncoder(len(TOKENIZER.words) + 3, dim=16, spatial_channels=4)
    f = enc(torch.zeros(2, scene_specs.MAX_OBJECTS, SLOT))
    assert f.mask.tolist() == [[True] + [False] * 4] * 2  # the always-present token only
    assert paint(f.spatial, 8, 8).abs().sum() == 0
    assert torch.isfinite(f.tokens).all() and f.pooled.shape == (2, 16)


def test_layout_unet_reads_the_boxes():
    enc = LayoutEncoder(len(TOKENIZER.words) + 3, dim=16, spatial_channels=4)
    net = UNet(
        16,
        channels=16,
        channel_mult=(1, 2),
        num_res_blocks=1,
        text=enc,
        cross_attn_resolutions=(8,),
    )
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)  # zero-initialised: make output move
    spec = scene_captions.parse_prompt("two red circles left of a blue square")
    objs = scene_drawing.layout(spec, np.random.default_rng(0))
    cond = layouts.pack_objects(objs, TOKENIZER)[None]
    x = torch.randn(1, 3, 16, 16)
    a = net(x, torch.zeros(1), cond)
    b = net(x, torch.zeros(1), torch.zeros_like(cond))
    assert a.shape == x.shape and (a - b).abs().max() > 1e-4


def test_layout_dit_reads_the_boxes():
    from diffusionforge.nets.dit import DiT

    enc = LayoutEncoder(len(TOKENIZER.words) + 3, dim=16, spatial_channels=4)
    net = DiT(8, in_channels=4, patch_size=2, dim=32, depth=1, heads=2, text=enc)
    torch.nn.init.normal_(net.out.weight, std=0.1)  # zero-initialised: make output move
    torch.nn.init.normal_(net.ada_out.weight, std=0.1)
    spec = scene_captions.parse_prompt("a red circle above a blue square")
    cond = layouts.pack_objects(scene_drawing.layout(spec, np.random.default_rng(1)), TOKENIZER)[
        None
    ]
    x = torch.randn(1, 4, 8, 8)
    a, b = net(x, torch.zeros(1), cond), net(x, torch.zeros(1), torch.zeros_like(cond))
    assert a.shape == x.shape and (a - b).abs().max() > 1e-4


def test_tags_follow_the_caption_and_captions_are_unchanged():
    rng = np.random.default_rng(3)
    for _ in range(200):
        spec = scene_specs.sample_spec(rng)
        state = rng.bit_generator.state
        caption, tags = scene_captions.describe_tagged(spec, rng)
        rng.bit_generator.state = state
        assert caption == scene_captions.describe(spec, rng)
        words = caption.split()
        assert len(tags) == len(words)
        for g, grp in enumerate(spec.groups):  # a group's colour word is tagged with it
            assert tags[words.index(grp.colour, words.index(grp.colour))] in (g, 1 - g)
            tagged = [w for w, t in zip(words, tags, strict=True) if t == g]
            assert grp.colour in tagged and tagged[-1] in (
                grp.shape,
                scene_specs.PLURALS[grp.shape],
            )


def test_pack_objects_stores_phrase_ids_and_boxes():
    objs = [scene_drawing.Placed(0.3, 0.5, 0.1, "triangle", "red", 0)]
    rows = layouts.pack_objects(objs, TOKENIZER)
    assert rows.shape == (scene_specs.MAX_OBJECTS, SLOT) and rows[1:].eq(0).all()
    assert TOKENIZER.decode(rows[0, 1:3].long().tolist()) == "red triangle"
    assert torch.allclose(rows[0, 3:], torch.tensor([0.2, 0.4, 0.4, 0.6]))


@pytest.mark.slow
def test_planner_reads_held_out_combinations_it_never_saw():
    planner, report = layouts.fit_planner(TOKENIZER, n=8000, steps=300)
    assert report["exact_train"] >= 0.99
    assert report["exact_heldout"] >= 0.97, report  # red triangle, three ... left of, ...
    caps, specs, _ = layouts.caption_set(300, "heldout", 5)
    assert layouts.planner_accuracy(planner, TOKENIZER, caps, specs) >= 0.97


TINY = [
    "data.size=64",
    "model.unet.channels=16",
    "model.unet.channel_mult=[1, 2]",
    "model.text_encoder.dim=16",
    "model.text_encoder.spatial_channels=4",
    "model.text_encoder.cross_attn_resolutions=[16]",
    "model.text_encoder.planner_steps=20",
    *TWO_STEPS,
    "optim.warmup_steps=1",
]


def test_layout_model_trains_saves_its_planner_and_places_objects_by_seed(tmp_path):
    cfg = apply_overrides(load_preset("t2i-layout"), TINY)
    data = build_dataset(cfg)
    assert data.cond.shape == (64, scene_specs.MAX_OBJECTS, SLOT) and data.null_cond.eq(0).all()
    assert data.cond[:, :, 0].sum(1).ge(1).all()  # every scene has an object
    assert "planner/planner.safetensors" in data.extra_files
    make_trainer(cfg, run_dir=tmp_path, dataset=data, log=lambda *_: None).fit()
    pipe = load_text2image(tmp_path)
    prompts = ["three red circles above a blue square"] * 2
    enc = pipe.prompts.encode_batch(prompts, [1, 2])
    assert not torch.equal(enc.cond[0], enc.cond[1])  # another seed, another arrangement
    assert torch.equal(pipe.prompts.encode_batch(prompts, [1, 1]).cond[0], enc.cond[0])
    # retraining the planner in place keeps the network and swaps planner/ atomically
    from diffusionforge.train.builders_layout import replan
    from diffusionforge.train.checkpoint import resolve_checkpoint

    before = resolve_checkpoint(tmp_path)
    assert replan(str(tmp_path), steps=3)["steps"] == 3
    after = resolve_checkpoint(tmp_path)
    assert after.files["model.safetensors"] == before.files["model.safetensors"]
    assert after.json("planner/planner.json")["report"]["steps"] == 3
    a = pipe.generate(prompts, nfe=2, guidance=2.0, seeds=[1, 2])
    b = pipe.generate(prompts[:1], nfe=2, guidance=2.0, seeds=[1])
    assert a.shape == (2, 3, 32, 32) and torch.allclose(a[0], b[0], atol=1e-5)


def test_layout_model_on_captioned_images_is_a_one_line_error():
    from diffusionforge.errors import ConfigError

    cfg = apply_overrides(load_preset("t2i-layout"), [*TINY, "data.kind=captions"])
    with pytest.raises(ConfigError, match="only data.kind = scenes provides"):
        build_dataset(cfg)


def test_replanning_a_model_without_layouts_is_a_one_line_error(tmp_path):
    from diffusionforge.errors import CheckpointError
    from diffusionforge.train.builders_layout import replan

    with pytest.raises(CheckpointError, match="not a layout-grounded model"):
        replan("digits")
