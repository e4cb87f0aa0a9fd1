"""Block diffusion (core/block_diffusion.py, BD3-LM): the vectorised training pass against the
block-by-block computation it replaces, the NELBO against closed forms (exact at block size 1
and for a model that ignores its input), the loss against a hand computation, the sampler's
order and given tokens, and a tiny model end to end (config errors, generate-text, eval)."""

import math

import pytest
import torch

from diffusionforge.cli import main
from diffusionforge.core.block_diffusion import BlockDiffusion, sample_blocks
from diffusionforge.core.discrete_samplers import sample_ancestral, sample_confidence
from diffusionforge.errors import ConfigError
from diffusionforge.modalities import make_trainer
from diffusionforge.nets.kv_cache import KVCache
from diffusionforge.nets.transformer import TransformerLM
from diffusionforge.pipelines.text import load_text_pipeline
from diffusionforge.train.builders import build_formulation
from diffusionforge.train.config import apply_overrides, load_preset
from tests.test_text_cli import TINY

V, MASK = 7, 0


def _net(block: int, positions: str = "rope", length: int = 12) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(V, length, dim=32, depth=2, heads=2, block=block, positions=positions)


@pytest.mark.parametrize("positions", ["rope", "learned"])
def test_pair_pass_equals_each_block_run_after_its_clean_prefix(positions):
    net = _net(4, positions).eval()
    g = torch.Generator().manual_seed(1)
    x0 = torch.randint(1, V, (3, 12), generator=g)
    z = x0.masked_fill(torch.rand(3, 12, generator=g) < 0.5, MASK)
    pair = net(z, None, None, clean=x0)  # (B, L, V)
    for start in range(0, 12, 4):
        seq = torch.cat([x0[:, :start], z[:, start : start + 4]], 1)
        torch.testing.assert_close(pair[:, start : start + 4], net(seq)[:, start:], atol=1e-5,
                                   rtol=1e-5)  # fmt: skip


def test_block_attention_sees_its_block_and_the_blocks_before():
    net = _net(4).eval()
    x = torch.randint(1, V, (1, 12))
    y = x.clone()
    y[0, 6] = (x[0, 6] % (V - 1)) + 1  # change one token of the second block
    changed = (net(x) - net(y)).abs().amax(-1)[0] > 1e-6  # (L,)
    assert not changed[:4].any()  # the first block does not see the second
    assert changed[4:].all()  # its own block (both sides of 6) and later blocks do


def test_kv_cache_of_a_block_network_gives_the_full_pass_logits():
    net = _net(4).eval()
    x = torch.randint(1, V, (2, 12))
    z = x[:, 8:].masked_fill(torch.tensor([True, False, True, True]), MASK)
    cache = KVCache(net)
    first = cache.step(x[:, :4])  # whole blocks: a block's keys depend on all of its tokens
    cache.step(x[:, 4:8])
    full = net(torch.cat([x[:, :8], z], 1))
    torch.testing.assert_close(first, full[:, :4], atol=1e-5, rtol=1e-5)
    for _ in range(2):  # a look ahead leaves the cache as it was
        torch.testing.assert_close(cache.step(z, keep=False), full[:, 8:], atol=1e-5, rtol=1e-5)
        assert cache.pos == 8


class PositionOnly:
    """A network whose logits depend on the position only: a factorised model, whose NELBO is
    tight: its expectation is -log p(x) = sum_l -log p_l(x^l)."""

    def __init__(self, length: int) -> None:
        self.table = torch.randn(length, V, generator=torch.Generator().manual_seed(2))

    def __call__(self, tokens, t, cond=None, clean=None):
        return self.table.expand(tokens.shape[0], -1, -1).clone()

    def nll(self, x):  # exact -log p(x) / L (B,)
        logp = self.table.clone()
        logp[:, MASK] = -math.inf
        return -logp.log_softmax(-1).gather(-1, x.T).T.mean(1)


def test_nelbo_of_a_factorised_model_averages_to_its_exact_nll():
    net = PositionOnly(12)
    x = torch.randint(1, V, (1, 12), generator=torch.Generator().manual_seed(3))
    exact = float(net.nll(x)[0])
    for block, steps, seed in [(4, None, 0), (4, 2, 1), (3, 3, 5), (12, 5, 7)]:
        f = BlockDiffusion(mask_id=MASK, block=block)
        g = torch.Generator().manual_seed(seed)
        draws = f.elbo_nll(net, x.repeat(2048, 1), steps=steps, generator=g)  # (2048,)
        # fixed seeds, so not flaky: the bound is 6 standard errors of the mean
        assert abs(float(draws.mean()) - exact) < 6 * float(draws.std()) / 2048**0.5 + 1e-6
    # k = b masks (all of a block) is the same for every draw: one-token blocks are exact
    f = BlockDiffusion(mask_id=MASK, block=1)
    torch.testing.assert_close(f.elbo_nll(net, x, generator=torch.Generator()), net.nll(x))


def test_block_size_one_nelbo_is_the_exact_left_to_right_nll():
    net, f = _net(1).eval(), BlockDiffusion(mask_id=MASK, block=1)
    x = torch.randint(1, V, (2, 12))
    want = torch.zeros(2)
    for pos in range(12):  # -log p(x^pos | x^<pos) with pos masked, the prefix clean
        seq = torch.cat([x[:, :pos], torch.full((2, 1), MASK)], 1)
        logits = net(seq)[:, pos].clone()
        logits[:, MASK] = -math.inf
        want -= logits.log_softmax(-1).gather(-1, x[:, pos : pos + 1])[:, 0]
    torch.testing.assert_close(f.elbo_nll(net, x), want / 12, atol=1e-5, rtol=1e-5)


def test_loss_at_is_the_weighted_masked_cross_entropy_by_hand():
    net, f = PositionOnly(4), BlockDiffusion(mask_id=MASK, block=2)
    x = torch.tensor([[3, 1, 4, 2]])
    z = torch.tensor([[MASK, 1, MASK, MASK]])
    t = torch.tensor([[0.5, 0.25]])
    logits = net.table.clone()
    logits[:, MASK] = -math.inf
    nll = -logits.log_softmax(-1)[torch.arange(4), x[0]]
    want = (nll[0] / 0.5 + (nll[2] + nll[3]) / 0.25) / 4  # weight 1/t (log-linear) per block
    torch.testing.assert_close(f.loss_at(net, x, t, z), want[None])


def test_training_loss_averages_to_the_nelbo():
    net, f = PositionOnly(8), BlockDiffusion(mask_id=MASK, block=4)
    x = torch.randint(1, V, (1, 8), generator=torch.Generator().manual_seed(3)).repeat(16384, 1)
    exact = float(net.nll(x[:1])[0])
    g = torch.Generator().manual_seed(4)  # fixed: not flaky
    mean = f.loss(net, x, generator=g).mean()  # 16384 draws, low-discrepancy times
    # the standard error of this mean is about 0.015 nats (the 1/t weight's heavy tail)
    assert abs(float(mean) - exact) < 0.06


def test_noise_levels_are_per_block_and_stratified():
    f = BlockDiffusion(mask_id=MASK, block=4)
    t = f.sample_noise_level(8, 16, generator=torch.Generator().manual_seed(0))
    assert t.shape == (8, 4)
    counts = torch.histc(t.flatten(), bins=32, min=0, max=1)  # one time in each 1/32 stratum
    assert torch.equal(counts, torch.ones(32))
    z = f.add_noise(torch.ones(8, 16, dtype=torch.long), torch.tensor([[1.0, 0.0, 1.0, 0.0]] * 8))
    assert (z.view(8, 4, 4)[:, [0, 2]] == MASK).all() and (z.view(8, 4, 4)[:, [1, 3]] == 1).all()


@pytest.mark.parametrize("inner", [sample_confidence, sample_ancestral])
def test_sampler_fills_blocks_left_to_right_and_keeps_the_prompt(inner):
    seen = []

    def denoise(tokens, t, cond=None):  # records how far the text reaches, and its masks
        seen.append((tokens.shape[1], int((tokens == MASK).sum())))
        assert not (tokens[:, : tokens.shape[1] - 4] == MASK).any()  # earlier blocks are done
        logp = torch.full((*tokens.shape, V), -math.inf)
        logp[..., 5] = 0.0
        return torch.where((tokens == MASK)[..., None], logp, logp.scatter(-1, tokens[..., None],
                                                                           0.0))  # fmt: skip

    x = torch.full((2, 12), MASK)
    x[:, :5] = 3  # a prompt ending inside the second block
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    y = sample_blocks(denoise, x, 8, mask_id=MASK, block=4, inner=inner, generator=gens)
    assert (y[:, :5] == 3).all() and (y[:, 5:] == 5).all()
    lengths = [n for n, _ in seen]
    assert lengths == sorted(lengths) and set(lengths) == {8, 12}  # blocks 2 and 3 only
    # past a window of 8 tokens each block sees the one whole block before it
    seen.clear()
    y = sample_blocks(denoise, x, 8, mask_id=MASK, block=4, inner=inner, window=8, generator=gens)
    assert (y[:, :5] == 3).all() and (y[:, 5:] == 5).all()
    assert {n for n, _ in seen} == {8}


def _cfg(*extra):
    return apply_overrides(
        load_preset("grammar"),
        [*TINY, "formulation.kind=block", "train.steps=30", "train.ckpt_every=30", *extra],
    )


def test_bad_block_configs_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="block_size: expected a positive divisor of data"):
        build_formulation(_cfg("formulation.block_size=5"))
    cfg = apply_overrides(load_preset("sudoku"), ["formulation.kind=block"])
    with pytest.raises(ConfigError, match="block diffusion trains on plain text"):
        build_formulation(cfg)


@pytest.fixture(scope="module")
def block_ckpt(tmp_path_factory):
    run = make_trainer(_cfg(), tmp_path_factory.mktemp("block") / "run", log=lambda m: None)
    return run.fit().checkpoint


def test_a_tiny_block_model_trains_generates_and_evaluates(block_ckpt, tmp_path, capsys):
    pipe = load_text_pipeline(block_ckpt)
    assert pipe.is_block and pipe.net.block == 4 and pipe.kind == "block"
    from diffusionforge.pipelines.text_eval import heldout, nll_per_token
    from diffusionforge.train.builders_text import load_corpus

    data = heldout(pipe, load_corpus(pipe.cfg), 64)
    assert nll_per_token(pipe, data, steps=4) < 0.93 * math.log(pipe.tokenizer.vocab_size - 1)
    # the pipeline's cached prefix draws what rerunning the prefix at every step draws
    x = torch.full((3, 20), pipe.mask_id)
    x[:, :2] = data[0, :2]
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    plain = sample_blocks(pipe.objective.precondition(pipe.net), x, 10, mask_id=pipe.mask_id,
                          block=4, generator=gens)  # fmt: skip
    assert torch.equal(pipe.generate(3, 20, template=x[0, :2], nfe=10), plain)
    # past its context of 32 tokens the window slides (the cache is rebuilt as it moves)
    x = torch.full((2, 44), pipe.mask_id)
    gens = [torch.Generator().manual_seed(i) for i in range(2)]  # as generate seeds them
    plain = sample_blocks(pipe.objective.precondition(pipe.net), x, 11, mask_id=pipe.mask_id,
                          block=4, window=32, generator=gens)  # fmt: skip
    assert torch.equal(pipe.generate(2, 44, nfe=11), plain) and (plain != pipe.mask_id).all()
    assert main(["generate-text", str(block_ckpt), "--prompt", "the cat", "--nfe", "8",
                 "--length", "20"]) == 0  # fmt: skip
    assert capsys.readouterr().out.startswith("the cat")
    assert main(["generate-text", str(block_ckpt), "--prompt", "the [____:3] sat"]) == 2
    assert "block-diffusion model continues a prefix" in capsys.readouterr().err
    out = tmp_path / "eval"
    assert main(["eval", str(block_ckpt), "--out", str(out), "--n", "4", "--nfe", "8"]) == 0
    assert '"objective": "block"' in (out / "metrics.json").read_text()


def test_the_server_writes_past_the_context_and_refuses_holes(block_ckpt, tmp_path):
    import httpx
    from serverkit import running_server, settings

    models = tmp_path / "models"
    models.mkdir()
    (models / "bd3").symlink_to(block_ckpt, target_is_directory=True)
    with running_server(settings(models)) as (url, _):
        client = httpx.Client(base_url=url, timeout=60)
        req = {"model": "bd3", "prompt": "the cat", "length": 40, "nfe": 10, "seed": 3}
        job = client.post("/api/generate/text?wait=true", json=req).json()
        assert job["status"] == "done", job
        assert job["progress"]["done"] <= job["progress"]["total"]
        pipe = load_text_pipeline(block_ckpt)
        want = pipe.generate(1, 40, template=pipe.template("the cat", 8), nfe=10, seed=3)
        text = client.get(job["outputs"][0]["url"]).text
        assert text == pipe.decode(want[0]) and text.startswith("the cat")
        bad = client.post("/api/generate/text", json={**req, "prompt": "the [____:3] sat"})
        assert bad.status_code == 422 and "block-diffusion model" in bad.text
