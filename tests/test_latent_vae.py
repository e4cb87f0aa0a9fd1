"""The KL autoencoder (nets/autoencoder.py, core/vae.py), its latent statistics written with every
checkpoint, latent-diffusion datasets and pipelines, and the CLI's editing flags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffusionforge.core.draw import Edit
from diffusionforge.core.samplers import SAMPLERS
from diffusionforge.core.vae import VAEObjective, gaussian_kl, latent_stats
from diffusionforge.errors import ConfigError
from diffusionforge.eval.psnr import psnr
from diffusionforge.modalities import build_dataset, make_trainer
from diffusionforge.nets.autoencoder import KLAutoencoder
from diffusionforge.pipelines.pipeline import load_pipeline
from diffusionforge.train.builders import build_model
from diffusionforge.train.config import apply_overrides, load_preset
from diffusionforge.train.latent import load_autoencoder

from trainkit import assert_one_line_error, digits_cfg

VAE_DIGITS = [
    "data.kind=digits",
    "model.autoencoder.preset=f2-tiny",
    "model.autoencoder.channels=8",
    "train.batch_size=32",
    "train.steps=60",
    "train.ckpt_every=60",
    "train.sample_every=0",
    "train.log_every=10",
    "train.tensorboard=false",
    "train.progress=false",
    "train.threads=1",
    "optim.warmup_steps=5",
]


def vae_cfg(*overrides: str):
    return apply_overrides(load_preset("vae-scenes"), [*VAE_DIGITS, *overrides])


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    """A tiny autoencoder trained 60 steps on the digits."""
    folder = tmp_path_factory.mktemp("vae")
    result = make_trainer(vae_cfg(), folder, log=lambda m: None).fit()
    return folder, result


@pytest.mark.parametrize(
    "preset, size, latent",
    [("f4-small", 32, (4, 8, 8)), ("f8-small", 64, (4, 8, 8)), ("f2-tiny", 8, (4, 4, 4))],
)
def test_encode_decode_shapes(preset, size, latent):
    cfg = apply_overrides(load_preset("vae-scenes"), [f"model.autoencoder.preset={preset}"])
    net = build_model(cfg, (3, size, size))
    mean, logvar = net.encode(torch.randn(2, 3, size, size))
    assert mean.shape == logvar.shape == (2, *latent)
    assert net.decode(mean).shape == (2, 3, size, size)
    assert net.latent_shape((3, size, size)) == latent


def test_bundled_size_preset_stays_small():
    net = KLAutoencoder(3, 4, channels=32, channel_mult=(1, 2), num_res_blocks=1, patch_size=2)
    assert sum(p.numel() for p in net.parameters()) * 4 < 2_000_000  # bytes of float32 weights


def test_kl_and_latent_stats_match_closed_forms():
    g = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(3, 4, 2, 2, generator=g), torch.randn(3, 4, 2, 2, generator=g)
    q = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    expected = torch.distributions.kl_divergence(q, p).flatten(1).sum(1)
    assert torch.allclose(gaussian_kl(mean, logvar), expected, atol=1e-5)
    z = 3.0 + 2.0 * torch.randn(5000, 4, generator=g, dtype=torch.float64)
    shift, scale = latent_stats(z)
    assert shift == pytest.approx(float(z.mean()), abs=1e-12)
    assert scale == pytest.approx(1 / float(z.std()), rel=1e-12)
    assert scale == pytest.approx(0.5, rel=0.03)
    x, y = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.2)  # MSE 0.04, range 2
    assert float(psnr(x, y)) == pytest.approx(10 * np.log10(4 / 0.04))


def test_vae_loss_is_reconstruction_plus_weighted_kl_per_pixel():
    net = KLAutoencoder(1, 2, channels=8, channel_mult=(1, 2), num_res_blocks=1)
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    obj = VAEObjective(kl_weight=0.3)
    loss = obj.loss(net, x, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(4, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    recon, mean, logvar = net(x, noise)
    rec = (recon - x).square().flatten(1).mean(1)
    assert loss.shape == (4,)
    assert torch.allclose(loss, rec + 0.3 * gaussian_kl(mean, logvar) / 64, atol=1e-6)


def test_training_lowers_the_loss_and_writes_the_latent_scale(vae_run):
    folder, result = vae_run
    ckpt = result.checkpoint
    stats = json.loads((ckpt / "latent.json").read_text())
    assert stats["latent_shape"] == [4, 4, 4] and stats["examples"] == 1797
    ae = load_autoencoder(folder)
    data = build_dataset(vae_cfg()).data
    with torch.no_grad():
        raw = ae.net.encode(data)[0]
    assert stats["scale"] == pytest.approx(1 / float(raw.double().std()), rel=1e-5)
    z = ae.encode(data)  # scaled: zero mean, unit variance over the data
    assert float(z.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(z.std()) == pytest.approx(1.0, rel=1e-4)
    assert stats["psnr_db"] == pytest.approx(float(psnr(ae.decode(z), data).mean()), abs=1e-3)
    first = make_trainer(vae_cfg("train.steps=10"), folder / "short", log=lambda m: None).fit()
    assert result.loss < 0.7 * first.loss, (first.loss, result.loss)


def test_latent_dataset_encodes_once_and_keeps_labels_and_flips(vae_run):
    folder, _ = vae_run
    cfg = digits_cfg(f"data.autoencoder={folder}", "data.augment=flip")
    ds = build_dataset(cfg)
    assert ds.shape == (4, 4, 4) and len(ds) == 1797 and ds.num_classes == 10
    assert any(k.startswith("autoencoder/") for k in ds.extra_files)
    idx = torch.arange(64)
    both = torch.stack([ds.batch(idx, e) for e in range(4)])
    flipped = (both == ds.flipped[idx]).flatten(2).all(2)  # (epochs, 64) picked mirrored
    assert 0.3 < flipped.float().mean() < 0.7
    ae = load_autoencoder(folder)
    pixels = build_dataset(digits_cfg()).data[:8]
    assert torch.allclose(ds.flipped[:8], ae.encode(pixels.flip(-1)), atol=1e-5)
    with pytest.raises(ConfigError, match="jitter"):
        build_dataset(digits_cfg(f"data.autoencoder={folder}", "data.augment=jitter"))


@pytest.fixture(scope="module")
def latent_ckpt(vae_run, tmp_path_factory):
    folder, _ = vae_run
    run = tmp_path_factory.mktemp("latent")
    cfg = digits_cfg(f"data.autoencoder={folder}", "model.unet.attn_resolutions=[]")
    return make_trainer(cfg, run, log=lambda m: None).fit().checkpoint


def test_latent_pipeline_decodes_with_every_sampler_and_inpaints_exactly(latent_ckpt):
    pipe = load_pipeline(latent_ckpt)
    assert pipe.autoencoder is not None and pipe.shape == (4, 4, 4)
    assert pipe.image_shape == (1, 8, 8)
    labels = torch.tensor([3, 7])
    for name in SAMPLERS:
        out = pipe.generate_images([0, 1], labels=labels, nfe=4, sampler=name)
        assert out.shape == (2, 1, 8, 8) and out.abs().max() <= 1 and torch.isfinite(out).all()
    init = torch.linspace(-1, 1, 64).view(1, 1, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:5, 2:5] = 1
    out = pipe.generate_images([0, 1], labels=labels, nfe=4, edit=Edit(init, 1.0, mask))
    keep = (mask == 0).expand(2, 1, 8, 8)
    assert torch.equal(out[keep], init.expand(2, 1, 8, 8)[keep])
    same = pipe.generate_images([0], labels=labels[:1], nfe=4, edit=Edit(init, strength=0.0))
    assert torch.allclose(same, pipe.autoencoder.decode(pipe.autoencoder.encode(init)))


def _png(path, array):
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return str(path)


def _cli(args, capsys) -> tuple[int, str]:
    from diffusionforge.cli import main

    code = main(args)
    return code, capsys.readouterr().err


def test_cli_editing_flags_and_their_errors(latent_ckpt, vae_run, tmp_path, capsys):
    init = _png(tmp_path / "init.png", np.tile(np.arange(0, 256, 32), (8, 1)))
    mask = np.zeros((8, 8))
    mask[:, 4:] = 255
    common = ["sample", str(latent_ckpt), "--class", "3", "--n", "2", "--nfe", "4"]
    out = tmp_path / "e"  # a folder: one PNG per image
    code, err = _cli(
        [
            *common,
            "--init-image",
            init,
            "--mask",
            _png(tmp_path / "m.png", mask),
            "--out",
            str(out),
            "--resample",
            "1",
        ],
        capsys,
    )
    assert code == 0, err
    edited = tmp_path / "e" / "sample-0-3.png"
    got = np.asarray(Image.open(edited).convert("L"))
    assert np.array_equal(got[:, :4], np.asarray(Image.open(init).convert("L"))[:, :4])
    bad = {
        "all black": ["--init-image", init, "--mask", _png(tmp_path / "z.png", np.zeros((8, 8)))],
        "16x16 pixels": ["--init-image", _png(tmp_path / "big.png", np.zeros((16, 16)))],
        "mask is 4x4": ["--init-image", init, "--mask", _png(tmp_path / "s.png", np.ones((4, 4)))],
        "--init-image": ["--mask", init],
        "--strength": ["--init-image", init, "--strength", "2"],
        "no such file": ["--init-image", str(tmp_path / "missing.png")],
        "made by img2img/inpainting": ["--like", str(edited)],
        "--resample": ["--init-image", init, "--resample", "2"],
    }
    for words, flags in bad.items():
        code, err = _cli([*common, *flags, "--out", str(out)], capsys)
        assert words in assert_one_line_error(err) and code == 2, err
    code, err = _cli(["sample", str(vae_run[0])], capsys)
    assert "autoencoder" in assert_one_line_error(err) and code == 2


def test_bundled_scenes_autoencoder_is_small_and_reconstructs_held_out_scenes():
    from diffusionforge.assets import bundled_path
    from diffusionforge.data.arrays import to_tensor_images
    from diffusionforge.data.scenes import make_scenes

    folder = bundled_path("vae-scenes")
    assert sum(f.stat().st_size for f in folder.glob("*.safetensors")) < 2 * 2**20
    ae = load_autoencoder("vae-scenes")  # by name; verified against its manifest
    assert ae.latent_shape() == (4, 8, 8) and ae.factor == 4
    images, _, _ = make_scenes(32, 32, "heldout", 123)
    x = to_tensor_images(images)
    assert float(psnr(ae.decode(ae.encode(x)), x).mean()) > 30.0
    z = ae.encode(x)
    assert 0.7 < float(z.std()) < 1.3  # the saved scale fits scenes it never saw


def test_demo_editing_section_writes_its_pictures_and_keeps_pixels(tmp_path):
    from diffusionforge.demo.editing import editing

    section = editing(tmp_path, quick=True)
    assert all(Path(f).is_file() for f in section.files)
    assert "kept pixels unchanged: True" in section.lines[1]
    assert float(section.lines[0].split("):")[1].split("dB")[0]) > 30
