import torch

from diffusionforge.nets import DIT_PRESETS, DiT


def _randomise(net: torch.nn.Module) -> torch.nn.Module:
    # adaLN-Zero makes the untrained DiT output exactly 0; fill every parameter to test paths.
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return net


def _tiny(**kw) -> DiT:
    return DiT(8, 1, **{**DIT_PRESETS["tiny"], "num_classes": 10, **kw}).eval()


def test_shape_and_adaln_zero_output_at_init():
    net = _tiny()
    x = torch.randn(3, 1, 8, 8)
    out = net(x, torch.randn(3), torch.tensor([0, 4, 10]))
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(x))


def test_conditioning_and_null_label():
    net = _randomise(_tiny())
    x, c = torch.randn(2, 1, 8, 8), torch.zeros(2)
    assert torch.equal(net(x, c, None), net(x, c, torch.full((2,), 10)))
    assert not torch.allclose(net(x, c, torch.tensor([1, 1])), net(x, c, torch.tensor([7, 7])))
    assert not torch.allclose(net(x, c, None), net(x, c + 0.5, None))


def test_unpatchify_is_inverse_of_patch_layout():
    # With no blocks nothing mixes tokens, so one input pixel may only change its own patch:
    # a wrong unpatchify permutation would move the change elsewhere.
    net = _randomise(DiT(8, 1, patch_size=2, dim=32, depth=0, heads=2))
    x = torch.randn(1, 1, 8, 8)
    base = net(x, torch.zeros(1))
    x2 = x.clone()
    x2[0, 0, 5, 2] += 1.0
    changed = (net(x2, torch.zeros(1)) - base).abs()[0, 0] > 0
    # depth 0: only the 2x2 patch containing (5, 2) can change.
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[4:6, 2:4] = True
    assert torch.equal(changed, expected)


def test_checkpointing_matches_and_batch_invariance():
    ref = _randomise(_tiny()).train()
    ckpt = _randomise(_tiny(gradient_checkpointing=True)).train()
    x, c, y = torch.randn(3, 1, 8, 8), torch.randn(3), torch.tensor([1, 2, 10])
    a, b = ref(x, c, y), ckpt(x, c, y)
    torch.testing.assert_close(a, b)
    a.square().mean().backward()
    b.square().mean().backward()
    for p, q in zip(ref.parameters(), ckpt.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6)
    ref.eval()
    torch.testing.assert_close(ref(x, c, y)[1:2], ref(x[1:2], c[1:2], y[1:2]), rtol=1e-4, atol=1e-5)
