"""Numerical parity of the Inception-v3 port (eval/inception.py, used for real FID) with the
reference implementations, with the SAME random weights in both (no downloaded weights exist
here): torchvision's Inception3 for the 1000-way ImageNet weights and pytorch-fid's TF-graph
blocks (FIDInceptionA/C/E_1/E_2) for the 1008-way FID weights, pool3 features compared on
random images through the whole extractor (weights file, resize, [-1, 1] scaling).

The references come from tests/reference_inception.py (their code, copied verbatim), so the
test runs everywhere; where torchvision itself imports, the live package is compared too.
"""

from __future__ import annotations

import pytest
import torch
from reference_inception import Inception3Trunk
from safetensors.torch import save_file

from diffusionforge.eval.inception import InceptionFeatures


def _randomise(net: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Random weights and batch-norm statistics that keep activations O(1) through the 94
    conv layers (He-scaled convs, running stats near the unit), so every layer matters."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, t in net.state_dict().items():
        if name.endswith("conv.weight"):
            fan_in = t[0].numel()
            state[name] = torch.randn(t.shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif name.endswith("bn.weight"):
            state[name] = 0.5 + torch.rand(t.shape, generator=g)
        elif name.endswith(("bn.bias", "bn.running_mean")):
            state[name] = 0.2 * torch.randn(t.shape, generator=g)
        elif name.endswith("bn.running_var"):
            state[name] = 0.5 + torch.rand(t.shape, generator=g)
        else:  # num_batches_tracked
            state[name] = t.clone()
    net.load_state_dict(state)
    return state


@pytest.mark.parametrize("fid", [True, False], ids=["pytorch-fid", "torchvision"])
def test_pool3_features_match_the_reference_with_the_same_weights(tmp_path, fid):
    torch.manual_seed(0)
    ref = Inception3Trunk(fid=fid).eval()
    state = _randomise(ref, seed=1)
    classes = 1008 if fid else 1000  # the fc size is how the port picks its variant
    state |= {"fc.weight": torch.zeros(classes, 2048), "fc.bias": torch.zeros(classes)}
    save_file(state, tmp_path / "inception.safetensors")
    ours = InceptionFeatures(tmp_path / "inception.safetensors")
    assert ours.model.Mixed_7c.pool == ("max" if fid else "avg")
    images = torch.rand(2, 3, 48, 40, generator=torch.Generator().manual_seed(2))  # [0, 1]
    with torch.no_grad():
        expected = ref(images)
    got = ours(images * 2 - 1)  # ours takes [-1, 1]
    assert got.shape == expected.shape == (2, 2048)
    scale = expected.abs().max().item()
    assert 0.1 < scale < 100 and expected.std().item() > 0.01  # features neither dead nor huge
    err = (got - expected).abs().max().item()
    assert err <= 1e-5 * scale, f"max |ours - reference| = {err:.3g} (features up to {scale:.3g})"
    # and the variants differ enough that a swapped block would be caught
    other = Inception3Trunk(fid=not fid).eval()
    other.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")})
    with torch.no_grad():
        assert (other(images) - expected).abs().max().item() > 1e3 * err + 1e-4 * scale


def _torchvision_inception():
    try:  # a torchvision built for another torch (CUDA wheel on CPU torch) fails at import
        from torchvision.models import inception_v3
    except Exception as e:
        pytest.skip(f"torchvision does not import here ({type(e).__name__}); the copied code ran")
    return inception_v3


def test_the_live_torchvision_package_agrees_when_it_imports(tmp_path):
    inception_v3 = _torchvision_inception()
    tv = inception_v3(weights=None, aux_logits=False, init_weights=False).eval()
    tv.fc, tv.dropout = torch.nn.Identity(), torch.nn.Identity()  # pool3 features out
    ref = Inception3Trunk(fid=False).eval()
    state = _randomise(ref, seed=3)
    tv.load_state_dict(state)
    state |= {"fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}
    save_file(state, tmp_path / "tv.safetensors")
    images = torch.rand(2, 3, 299, 299, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = tv(images * 2 - 1)  # at 299x299 no resize: the trunk alone
    got = InceptionFeatures(tmp_path / "tv.safetensors")(images * 2 - 1)
    assert (got - expected).abs().max().item() <= 1e-5 * expected.abs().max().item()
