"""diffusers folders through our samplers: the same numbers as diffusers' own pipelines.

For the same initial noise and the same discrete timesteps, our DDIM / Euler / DPM++ 2M on the
imported denoiser equal diffusers' DDIMScheduler / EulerDiscreteScheduler /
DPMSolverMultistepScheduler run through DDPMPipeline and the Stable Diffusion pipelines
(txt2img with CFG and a negative prompt, img2img, inpainting), for epsilon and v prediction, and
a flow-matching transformer (SD3Transformer2DModel) against FlowMatchEulerDiscreteScheduler, to
max |diff| <= 1e-4 in float32. The tiny random models are made here with save_pretrained.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers", reason="optional extra: pip install 'diffusionforge[diffusers]'")
pytest.importorskip(
    "transformers", reason="optional extra: pip install 'diffusionforge[diffusers]'"
)

sys.path.insert(0, str(Path(__file__).parent))
from diffusers_kit import save_ddpm, scheduler, seeded, tiny_sd, tiny_sd3_transformer  # noqa: E402

from diffusionforge.core.samplers import SAMPLERS  # noqa: E402
from diffusionforge.pipelines.diffusers_model import load  # noqa: E402

TOL = 1e-4
OURS = {
    "DDIMScheduler": "ddim",
    "EulerDiscreteScheduler": "euler",
    "DPMSolverMultistepScheduler": "dpmpp_2m",
}
SD_BETAS = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
# Stable Diffusion's own scheduler settings (v1 model folders): leading spacing, offset 1
SD_SCHED = dict(SD_BETAS, steps_offset=1, timestep_spacing="leading", clip_sample=False)
PRED_BETAS = {"epsilon": SD_BETAS, "v_prediction": {}}  # eps on SD betas keeps x0 moderate


def _noise(seeds, shape):
    return torch.stack([torch.randn(shape, generator=g) for g in seeded(seeds)])


def _capture_last_step(pipe) -> dict:
    """Record the scheduler's last prev_sample (the state before postprocessing)."""
    last, step = {}, pipe.scheduler.step

    def recording(*a, **k):
        out = step(*a, **k)
        last["x"] = out.prev_sample if hasattr(out, "prev_sample") else out[0]
        return out

    pipe.scheduler.step = recording
    return last


# --- pixel-space UNet2DModel through DDPMPipeline ----------------------------------------


@pytest.mark.parametrize("pred", ["epsilon", "v_prediction"])
@pytest.mark.parametrize(
    "cls, kw",
    [
        ("DDIMScheduler", dict(clip_sample=False)),  # leading spacing, its default
        ("DPMSolverMultistepScheduler", {}),  # linspace spacing, its default
        ("DPMSolverMultistepScheduler", dict(timestep_spacing="trailing")),
    ],
)
def test_ddpm_pipeline_matches_our_sampler(tmp_path, pred, cls, kw):
    sched = scheduler(cls, prediction_type=pred, **PRED_BETAS[pred], **kw)
    pipe = save_ddpm(tmp_path / "m", sched)
    model = load(tmp_path / "m")
    last = _capture_last_step(pipe)
    seeds, n = [3, 4], 6
    images = pipe(batch_size=2, generator=seeded(seeds), num_inference_steps=n, output_type="np")
    sigmas = model.scheduler_sigmas(n)
    # DDPMPipeline draws x_vp ~ N(0, I): x = sqrt(1 + sigma^2) n in our variables
    x = _noise(seeds, model.shape) * (1 + float(sigmas[0]) ** 2) ** 0.5
    ours = SAMPLERS[OURS[cls]](model.denoiser, x, sigmas)
    assert (ours - last["x"]).abs().max().item() <= TOL
    ours_np = (ours / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    assert abs(ours_np - images.images).max() <= TOL
    # and the whole recipe: generate() with the folder's own timesteps
    same = model.generate(seeds, nfe=n, sampler=OURS[cls], schedule="scheduler")
    assert (same - last["x"]).abs().max().item() <= TOL


@pytest.mark.parametrize("pred", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("spacing", ["linspace", "leading"])
def test_euler_loop_matches(tmp_path, pred, spacing):
    """EulerDiscreteScheduler in diffusers' documented loop (scale_model_input, unet, step):
    DDPMPipeline itself skips scale_model_input, so it cannot run Euler."""
    sched = scheduler(
        "EulerDiscreteScheduler", prediction_type=pred, timestep_spacing=spacing, **PRED_BETAS[pred]
    )
    pipe = save_ddpm(tmp_path / "m", sched)
    model = load(tmp_path / "m")
    n, seeds = 5, [7, 8]
    noise = _noise(seeds, model.shape)
    sched.set_timesteps(n)
    x = noise * sched.init_noise_sigma
    with torch.no_grad():
        for t in sched.timesteps:
            out = pipe.unet(sched.scale_model_input(x, t), t).sample
            x = sched.step(out, t, x).prev_sample
    sigmas = model.scheduler_sigmas(n)
    assert torch.allclose(sigmas[:-1].float(), sched.sigmas[:-1].float(), rtol=1e-4)
    ours = SAMPLERS["euler"](model.denoiser, noise * sched.init_noise_sigma, sigmas)
    assert (ours - x).abs().max().item() <= TOL


def test_ddim_clip_sample_is_kept(tmp_path):
    """DDIM's clip_sample clamps the x0 estimate; the imported denoiser does the same."""
    from diffusers import DDIMPipeline

    sched = scheduler("DDIMScheduler", clip_sample=True)
    pipe = save_ddpm(tmp_path / "m", sched)
    pipe = DDIMPipeline(unet=pipe.unet, scheduler=pipe.scheduler)
    model = load(tmp_path / "m")
    last = _capture_last_step(pipe)
    # the clipped x0 also gives the noise estimate, as with use_clipped_model_output
    pipe(
        batch_size=1,
        generator=seeded([1]),
        num_inference_steps=4,
        output_type="np",
        use_clipped_model_output=True,
    )
    ours = model.generate([1], nfe=4, sampler="ddim", schedule="scheduler")
    assert (ours - last["x"]).abs().max().item() <= TOL
    assert ours.abs().max() <= 1.0


# --- Stable Diffusion layout: CFG + negative prompt, img2img, inpainting -----------------


@pytest.fixture(scope="module", params=["epsilon", "v_prediction"])
def sd(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sd") / request.param
    ddim = scheduler(
        "DDIMScheduler", prediction_type=request.param, set_alpha_to_one=False, **SD_SCHED
    )
    pipe = tiny_sd(folder, ddim)
    return pipe, load(folder)


def _with_scheduler(pipe, cls):
    import diffusers

    pipe.scheduler = getattr(diffusers, cls).from_config(pipe.scheduler.config)
    return pipe


@pytest.mark.parametrize("cls", list(OURS))
def test_stable_diffusion_txt2img_with_cfg_matches(sd, cls):
    pipe, model = sd
    pipe = _with_scheduler(pipe, cls)
    prompts, seeds, n, g = ["a red circle", "two squares"], [11, 12], 5, 4.0
    latents = pipe(
        prompts,
        negative_prompt=["blurry"] * 2,
        num_inference_steps=n,
        guidance_scale=g,
        generator=seeded(seeds),
        output_type="latent",
        height=16,
        width=16,
    ).images
    sigmas = model.scheduler_sigmas(n, cls)
    init = (1 + float(sigmas[0]) ** 2) ** 0.5  # x_vp ~ N(0, I)
    if cls == "EulerDiscreteScheduler":  # Euler draws x ~ N(0, init_noise_sigma^2)
        init = float(pipe.scheduler.init_noise_sigma)
    x = _noise(seeds, model.shape) * init
    from diffusionforge.core.guidance import cfg

    cond, uncond = model.encode_prompt(prompts), model.encode_prompt(["blurry"] * 2)
    denoise = cfg(model.denoiser, g, uncond)
    ours = SAMPLERS[OURS[cls]](denoise, x, sigmas, cond=cond)
    end = float(sigmas[-1])
    ours = ours / (1 + end**2) ** 0.5  # DDIM without set_alpha_to_one ends at sigma(t=0)
    assert (ours - latents).abs().max().item() <= TOL
    if cls != "EulerDiscreteScheduler":  # whole recipe incl. decoding
        images = model.generate(
            seeds,
            nfe=n,
            sampler=OURS[cls],
            schedule="scheduler" if cls == "DDIMScheduler" else None,
            sigmas=None if cls == "DDIMScheduler" else sigmas,
            guidance=g,
            prompts=prompts,
            negative_prompt="blurry",
        )
        theirs = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
        assert (images - theirs).abs().max().item() <= TOL


def _image(seed: int) -> torch.Tensor:
    return torch.rand((1, 3, 16, 16), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cls", ["EulerDiscreteScheduler", "DPMSolverMultistepScheduler"])
def test_stable_diffusion_img2img_matches(sd, cls):
    from diffusers import StableDiffusionImg2ImgPipeline

    pipe, model = sd
    i2i = _with_scheduler(StableDiffusionImg2ImgPipeline(**pipe.components), cls)
    i2i.set_progress_bar_config(disable=True)
    image, n, strength, g = _image(0), 5, 0.6, 3.0
    latents = i2i(
        "a red circle",
        image=image,
        strength=strength,
        num_inference_steps=n,
        guidance_scale=g,
        generator=seeded([5]),
        output_type="latent",
    ).images
    ours = model.generate(
        [5],
        nfe=n,
        sampler=OURS[cls],
        sigmas=model.scheduler_sigmas(n, cls),
        guidance=g,
        prompts=["a red circle"],
        init=image * 2 - 1,
        strength=strength,
    )
    theirs = i2i.vae.decode(latents / i2i.vae.config.scaling_factor).sample
    assert (ours - theirs).abs().max().item() <= TOL


@pytest.mark.parametrize("cls", ["DDIMScheduler", "DPMSolverMultistepScheduler"])
def test_stable_diffusion_inpaint_matches(sd, cls):
    """Strength below 1: both start every latent at init + sigma n. (At strength 1 diffusers
    starts the kept region from pure noise too; we start it on its own noisy trajectory.)"""
    from diffusers import StableDiffusionInpaintPipeline

    pipe, model = sd
    inp = _with_scheduler(StableDiffusionInpaintPipeline(**pipe.components), cls)
    inp.set_progress_bar_config(disable=True)
    image, n, strength = _image(1), 4, 0.75
    mask = torch.zeros((1, 1, 16, 16))
    mask[..., 4:12] = 1.0  # white = repaint
    latents = inp(
        "two squares",
        image=image,
        mask_image=mask,
        strength=strength,
        num_inference_steps=n,
        guidance_scale=2.0,
        generator=seeded([9]),
        output_type="latent",
        height=16,
        width=16,
    ).images
    ours = model.generate(
        [9],
        nfe=n,
        sampler=OURS[cls],
        sigmas=model.scheduler_sigmas(n, cls),
        guidance=2.0,
        prompts=["two squares"],
        init=image * 2 - 1,
        strength=strength,
        mask=mask,
    )
    theirs = inp.vae.decode(latents / inp.vae.config.scaling_factor).sample
    assert (ours - theirs).abs().max().item() <= TOL


# --- flow matching: SD3Transformer2DModel + FlowMatchEulerDiscreteScheduler ---------------


def test_flow_transformer_matches_flow_match_euler(tmp_path):
    from diffusers import FlowMatchEulerDiscreteScheduler

    net = tiny_sd3_transformer().eval()
    net.save_pretrained(tmp_path / "m")
    sched = FlowMatchEulerDiscreteScheduler(shift=3.0)
    sched.save_pretrained(tmp_path / "m")
    model = load(tmp_path / "m")
    cond = {
        "encoder_hidden_states": torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(1)),
        "pooled_projections": torch.randn(2, 8, generator=torch.Generator().manual_seed(2)),
    }
    sched.set_timesteps(sigmas=[0.95, 0.8, 0.6, 0.4, 0.2])  # shifted by 3 inside
    noise = _noise([1, 2], model.shape)
    x = noise.clone()
    with torch.no_grad():
        for t in sched.timesteps:
            v = net(
                x,
                encoder_hidden_states=cond["encoder_hidden_states"],
                pooled_projections=cond["pooled_projections"],
                timestep=t.expand(2),
            ).sample
            x = sched.step(v, t, x).prev_sample
    ts = sched.sigmas.double()  # flow times t, ending in 0
    sigmas = ts / (1 - ts)
    ours = SAMPLERS["euler"](model.denoiser, noise / (1 - ts[0]).float(), sigmas, cond=cond)
    assert (ours - x).abs().max().item() <= TOL


# --- loading options -----------------------------------------------------------------------


def test_bfloat16_load_samples(tmp_path):
    save_ddpm(tmp_path / "m", scheduler("DDIMScheduler"))
    model = load(tmp_path / "m", dtype="bfloat16")
    assert next(model.net.parameters()).dtype == torch.bfloat16
    out = model.generate([0, 1], nfe=3, sampler="euler", schedule="karras")
    assert out.shape == (2, 3, 8, 8) and torch.isfinite(out).all()


def test_public_load_returns_the_imported_model(tmp_path):
    import diffusionforge

    save_ddpm(tmp_path / "m", scheduler("DDIMScheduler", clip_sample=False))
    model = diffusionforge.load(tmp_path / "m")
    x, sigma = torch.randn(2, 3, 8, 8), torch.tensor([1.0, 10.0])
    assert model.denoiser(x, sigma, None).shape == x.shape


def test_dit_class_conditional_with_guidance(tmp_path):
    """DiTTransformer2DModel: learned-variance output (its mean half is used) and CFG against
    its null class (the extra row of its label table)."""
    from diffusers import DiTTransformer2DModel

    torch.manual_seed(0)
    net = DiTTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=1,
        out_channels=2,
        num_layers=1,
        sample_size=8,
        patch_size=2,
        num_embeds_ada_norm=10,
    )
    net.save_pretrained(tmp_path / "dit")
    scheduler("DDIMScheduler", clip_sample=False).save_pretrained(tmp_path / "dit")
    model = load(tmp_path / "dit")
    assert model.num_classes == 10 and model.null_class == 10
    labels = torch.tensor([3, 7])
    plain = model.generate([0, 1], nfe=3, sampler="euler", labels=labels)
    guided = model.generate([0, 1], nfe=3, sampler="euler", labels=labels, guidance=3.0)
    assert plain.shape == (2, 1, 8, 8) and torch.isfinite(guided).all()
    assert not torch.equal(plain, guided)
    # guidance 3 = uncond + 3 (cond - uncond), checked on the denoiser itself
    x, sigma = torch.randn(2, 1, 8, 8), torch.tensor([2.0, 2.0])
    d_c = model.denoiser(x, sigma, labels)
    d_u = model.denoiser(x, sigma, torch.full_like(labels, 10))
    from diffusionforge.core.guidance import cfg

    d_g = cfg(model.denoiser, 3.0, torch.full_like(labels, 10))(x, sigma, labels)
    assert torch.allclose(d_g, d_u + 3.0 * (d_c - d_u), atol=1e-5)
