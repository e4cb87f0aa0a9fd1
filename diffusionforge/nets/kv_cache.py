"""A key/value cache for the causal TransformerLM: incremental decoding for the AR baseline.

`KVCache(net).step(tokens)` runs the network on the next n input tokens (B, n) only, attending
to the keys and values of every token fed before, and returns their logits (B, n, V): exactly
what `net` gives at those positions of the whole sequence (same weights, same RoPE angles, the
same causal mask), at O(n * L) attention cost instead of O(L^2) per call. Used by
core/autoregressive.sample_autoregressive(kv_cache=...). Each step is one call of the network
object, `net(tokens, None, None, cache=self)`, so wrappers that count or cancel calls (the
server's progress counter) see it.

A block-diffusion network (`block=b`, core/block_diffusion.py) is cached the same way: a token
attends to every key of its own and earlier blocks (block-causal), and `step(tokens,
keep=False)` runs the block being drawn against the cached prefix without storing its keys
(its tokens are still changing); the finished block is fed once more with keep=True. Feed whole
blocks only: a token's keys depend on every token of its block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from diffusionforge.nets.transformer import TransformerLM, apply_rope


class KVCache:
    def __init__(self, net: TransformerLM) -> None:  # or a wrapper that forwards attributes
        if not (net.causal or net.block):
            raise ValueError(
                "KVCache: the network is bidirectional; a cache needs causal or block attention"
            )
        self.net = net
        self.keys: list[Tensor | None] = [None] * len(net.blocks)
        self.values: list[Tensor | None] = [None] * len(net.blocks)
        self.pos = 0  # tokens fed so far
        self.keep = True

    def step(self, tokens: Tensor, keep: bool = True) -> Tensor:
        """Logits (B, n, V) of the next n input tokens (B, n); keep=False: a look ahead that
        leaves the cache as it was."""
        self.keep = keep
        try:
            return self.net(tokens, None, None, cache=self)
        finally:
            self.keep = True

    @torch.no_grad()
    def run(self, net: TransformerLM, tokens: Tensor) -> Tensor:
        """TransformerLM.forward with this cache (called by it)."""
        start = self.pos
        b, n = tokens.shape
        if start + n > net.length:
            raise ValueError(f"KVCache: {start + n} tokens exceed the context of {net.length}")
        # query i (absolute start + i) sees keys 0..start + i, or (block) every key of its
        # own and earlier blocks
        qpos = torch.arange(start, start + n, device=tokens.device)[:, None]
        kpos = torch.arange(start + n, device=tokens.device)[None, :]
        allowed = kpos // net.block <= qpos // net.block if net.block else kpos <= qpos
        x, cos, sin = net.embed_positions(tokens, start)
        for i, block in enumerate(net.blocks):
            attn = block.attn
            h = block.norm1(x)
            q, k, v = attn.qkv(h).view(b, n, 3, attn.heads, -1).permute(2, 0, 3, 1, 4)
            if cos is not None:  # RoPE (learned positions are in x already)
                q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            if self.keys[i] is not None:
                k = torch.cat([self.keys[i], k], dim=2)
                v = torch.cat([self.values[i], v], dim=2)
            if self.keep:
                self.keys[i], self.values[i] = k, v
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
            x = x + attn.out(y.transpose(1, 2).reshape(b, n, -1))
            x = x + block.mlp(block.norm2(x))
        self.pos = start + n if self.keep else start
        return net.head(net.norm(x))
