"""Sudoku as infilling (#19): learned and grid positions in the text transformer (exact KV cache,
old RoPE checkpoints still load), the grid format's data, and a grid model's sampling, which
fills the blanks and never changes a given."""

from __future__ import annotations

import pytest
import torch

from diffusionforge.core.discrete import MaskedDiffusion
from diffusionforge.data import sudoku
from diffusionforge.data.tokenizers import CharTokenizer
from diffusionforge.errors import ConfigError, UserError
from diffusionforge.nets.kv_cache import KVCache
from diffusionforge.nets.transformer import TransformerLM
from diffusionforge.pipelines.text import TextPipeline
from diffusionforge.pipelines.text_pairs import answer, fill, prompt_window
from diffusionforge.train import builders_text
from diffusionforge.train.config import from_dict, load_preset, to_dict

CLASSIC = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"


def _net(**kw) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(7, 12, dim=16, depth=2, heads=2, **kw).eval()


def test_learned_positions_are_the_only_position_signal():
    """With the position table zeroed, bidirectional attention is permutation-equivariant (the
    closed-form property of attention without positions); with it, a permutation changes the
    outputs beyond the permutation. RoPE nets have no table."""
    net = _net(positions="learned")
    assert net.pos.shape == (12, 16) and "pos" not in dict(_net().named_parameters())
    x = torch.randint(2, 7, (3, 12), generator=torch.Generator().manual_seed(1))
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        moved = net(x[:, perm])
        assert not torch.allclose(moved, net(x)[:, perm], atol=1e-4)
        net.pos.zero_()
        torch.testing.assert_close(net(x[:, perm]), net(x)[:, perm], atol=1e-5, rtol=1e-5)


def test_grid_positions_are_row_plus_column_embeddings():
    """positions="grid": position p of a 5-wide grid gets row_pos[p // 5] + col_pos[p % 5]."""
    net = _net(positions="grid", grid_width=5)
    assert net.row_pos.shape == (3, 16) and net.col_pos.shape == (5, 16)  # 12 cells: 3 rows
    tokens = torch.tensor([[2, 3, 4, 5, 6]])
    x, cos, sin = net.embed_positions(tokens, 6)  # positions 6..10: (1, 1) .. (2, 0)
    expected = [net.row_pos[p // 5] + net.col_pos[p % 5] for p in range(6, 11)]
    assert cos is None and sin is None
    torch.testing.assert_close(x[0] - net.embed(tokens)[0], torch.stack(expected))
    with pytest.raises(ValueError, match="grid_width: expected at least 1 cell a row, got 0"):
        _net(positions="grid")


@pytest.mark.parametrize("kw", [{"positions": "learned"}, {"positions": "grid", "grid_width": 4}])
def test_kv_cache_is_exact_with_added_positions(kw):
    net = _net(causal=True, **kw)
    x = torch.randint(2, 7, (2, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = net(x)
        cache = KVCache(net)
        parts = [cache.step(x[:, :5])] + [cache.step(x[:, i : i + 1]) for i in range(5, 12)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)


def test_unknown_positions_is_one_line():
    with pytest.raises(ValueError, match="positions: expected one of rope, learned, grid, got 'ab"):
        _net(positions="abs")
    cfg = load_preset("sudoku")
    cfg.model.transformer.positions = "abs"
    cfg.model.transformer.vocab_size = 13
    with pytest.raises(ConfigError, match="model.transformer.positions: expected one of"):
        builders_text.build_transformer(cfg, (81,))
    cfg.model.transformer.positions, cfg.model.transformer.grid_width = "grid", 0
    with pytest.raises(ConfigError, match="grid_width: positions grid needs at least 1 cell"):
        builders_text.build_transformer(cfg, (81,))


def test_a_config_without_positions_builds_the_old_rope_net():
    """Checkpoints written before the option hold no `positions` key: they get RoPE, whose
    parameters are exactly the old ones (no position table), so their weights load strictly."""
    raw = to_dict(load_preset("sudoku"))
    del raw["model"]["transformer"]["positions"], raw["model"]["transformer"]["grid_width"]
    raw["model"]["transformer"].update(vocab_size=13, preset="tiny", dim=0, depth=0, heads=0)
    cfg = from_dict(raw)
    assert cfg.model.transformer.positions == "rope"
    net = builders_text.build_transformer(cfg, (81,))
    old = TransformerLM(13, 81, dim=64, depth=2, heads=4)  # the signature before the option
    net.load_state_dict(old.state_dict(), strict=True)


def test_sudoku_grids_are_valid_distinct_and_seeded():
    grids = sudoku.grids(3, 4, seed=0)
    assert len(grids) == 12 and len(set(grids)) == 12
    assert all(sudoku.is_solution("." * 81, g) for g in grids)
    assert sudoku.grids(3, 4, seed=0) == grids and sudoku.grids(3, 4, seed=1) != grids


def _grid_cfg(**sets):
    cfg = load_preset("sudoku")
    cfg.data.sudoku.bases, cfg.data.sudoku.variants = 3, 2
    for key, value in sets.items():
        obj, *path = key.split("__")
        target = getattr(cfg, obj)
        for name in path[:-1]:
            target = getattr(target, name)
        setattr(target, path[-1], value)
    return cfg


def test_grid_dataset_holds_solution_grids():
    cfg = _grid_cfg(data__text__length=5)
    ds = builders_text.text_dataset(cfg)
    assert cfg.data.text.length == 81 and ds.data.shape == (6, 81) and ds.cond is None
    assert cfg.model.transformer.vocab_size == 13  # pad, mask, separator, ".", 1-9: as pairs
    for row in ds.data:
        assert sudoku.is_solution("." * 81, ds.tokenizer.decode(row.tolist()))
    assert type(builders_text.masked_objective(cfg)) is MaskedDiffusion  # whole grids, no SFT


def test_grid_format_refuses_the_ar_twin_and_unknown_formats():
    with pytest.raises(ConfigError, match="AR twin needs the puzzle as a prompt"):
        builders_text.text_dataset(_grid_cfg(formulation__kind="ar"))
    with pytest.raises(ConfigError, match="data.sudoku.format: expected one of pairs, grid"):
        builders_text.text_dataset(_grid_cfg(data__sudoku__format="rows"))


@pytest.fixture(scope="module")
def grid_pipe():
    cfg = _grid_cfg(model__transformer__vocab_size=13)
    cfg.data.text.length = 81
    torch.manual_seed(0)
    net = builders_text.build_transformer(cfg, (81,)).eval()
    tok = CharTokenizer(sorted("\x1e." + sudoku.DIGITS))
    return TextPipeline(net, builders_text.masked_objective(cfg), tok, cfg, None, "model")


def test_grid_window_masks_the_blanks_in_place(grid_pipe):
    window, start = prompt_window(grid_pipe, CLASSIC.replace(".", "0"))
    assert start == 0 and window.shape == (81,)
    assert grid_pipe.tokenizer.decode(window.tolist(), mask=".") == CLASSIC
    with pytest.raises(UserError, match="--prompt: a Sudoku grid has 81 cells, got 80"):
        prompt_window(grid_pipe, CLASSIC[1:])


@pytest.mark.parametrize("sampler", ["margin", "confidence", "ancestral"])
def test_grid_sampling_fills_every_blank_and_keeps_every_given(grid_pipe, sampler):
    """An untrained network, so nothing but the sampler keeps the givens."""
    window, _ = prompt_window(grid_pipe, CLASSIC)
    x = window.repeat(2, 1)
    blanks = int((window == grid_pipe.mask_id).sum())
    y = fill(grid_pipe, x, nfe=blanks, sampler=sampler, temperature=1.0)
    given = window != grid_pipe.mask_id
    assert torch.equal(y[:, given], x[:, given])
    assert not (y == grid_pipe.mask_id).any()
    (text,) = answer(grid_pipe, [CLASSIC], sampler=sampler, temperature=0.0)
    kept = [text[i] == c for i, c in enumerate(CLASSIC) if c != "." and i < len(text)]
    assert all(kept)
