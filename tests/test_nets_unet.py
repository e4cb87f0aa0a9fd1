import pytest
import torch

from diffusionforge.nets import UNET_PRESETS, UNet
from diffusionforge.nets.unet import Attention


def _randomise(net: torch.nn.Module) -> torch.nn.Module:
    # Zero-initialised layers make an untrained net output 0 for any input; give every
    # parameter a value so the tests can see conditioning and gradients flow.
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return net


def _tiny(**kw) -> UNet:
    args = {**UNET_PRESETS["tiny"], "num_classes": 10, **kw}
    return UNet(8, 1, **args).eval()


def test_shape_and_zero_output_at_init():
    net = _tiny()
    x = torch.randn(3, 1, 8, 8)
    out = net(x, torch.randn(3), torch.tensor([0, 5, 9]))
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(x))  # zero-initialised output conv


def test_conditioning_null_label_and_noise_level_matter():
    net = _randomise(_tiny())
    x, c = torch.randn(2, 1, 8, 8), torch.zeros(2)
    null = torch.full((2,), 10)
    assert torch.equal(net(x, c, None), net(x, c, null))  # None means the null label
    assert not torch.allclose(net(x, c, torch.tensor([1, 1])), net(x, c, torch.tensor([2, 2])))
    assert not torch.allclose(net(x, c, None), net(x, c + 1.0, None))


def test_attention_placed_at_requested_resolutions():
    net = UNet(16, 3, channels=16, channel_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(8,))
    n_attn = sum(isinstance(m, Attention) for m in net.modules())
    # one down and two up stages at 8x8, plus the bottleneck's.
    assert n_attn == 4


def test_batch_invariance_and_channels_last():
    net = _randomise(_tiny())
    x, c, y = torch.randn(4, 1, 8, 8), torch.randn(4), torch.tensor([1, 2, 3, 10])
    full = net(x, c, y)
    one = net(x[2:3], c[2:3], y[2:3])
    torch.testing.assert_close(full[2:3], one, rtol=1e-4, atol=1e-5)
    cl = net.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last), c, y)
    torch.testing.assert_close(cl, full, rtol=1e-4, atol=1e-5)


def test_gradient_checkpointing_matches_and_all_params_get_gradients():
    torch.manual_seed(0)
    ref = _randomise(_tiny()).train()
    ckpt = _randomise(_tiny(gradient_checkpointing=True)).train()
    x, c, y = torch.randn(2, 1, 8, 8), torch.randn(2), torch.tensor([3, 10])
    ref(x, c, y).square().mean().backward()
    ckpt(x, c, y).square().mean().backward()
    for (name, a), b in zip(ref.named_parameters(), ckpt.parameters(), strict=True):
        assert a.grad is not None, name
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6)


def test_unconditional_and_rgb_32():
    net = UNet(32, 3, **UNET_PRESETS["tiny"])
    out = net(torch.randn(2, 3, 32, 32), torch.randn(2), None)
    assert out.shape == (2, 3, 32, 32)
    assert 2e5 < sum(p.numel() for p in net.parameters()) < 4e5  # "a few hundred thousand"


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_dropout_only_in_train_mode(dropout):
    net = _randomise(_tiny(dropout=dropout))
    x, c = torch.randn(2, 1, 8, 8), torch.randn(2)
    torch.testing.assert_close(net(x, c, None), net(x, c, None))
    net.train()
    differs = not torch.allclose(net(x, c, None), net(x, c, None))
    assert differs == (dropout > 0)
