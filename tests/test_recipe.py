"""The one sampling recipe: core.plan.Plan (names resolved once) and core.draw.draw (network ->
denoiser -> guidance -> per-image generators -> sample or edit -> decode), checked against the
primitives it composes, bit for bit, and per modality against what its pipeline returns."""

from __future__ import annotations

import pytest
import torch

from diffusionforge import sample
from diffusionforge.assets import bundled_path
from diffusionforge.core.draw import Edit, draw
from diffusionforge.core.formulations import EDM
from diffusionforge.core.guidance import cfg
from diffusionforge.core.plan import CUSTOM, FITTED, Plan, recommended
from diffusionforge.core.samplers import SAMPLERS
from diffusionforge.core.schedules import SCHEDULES, karras
from diffusionforge.pipelines.audio import load_audio_pipeline
from diffusionforge.pipelines.pipeline import load_pipeline
from diffusionforge.pipelines.text2image import load_text2image
from diffusionforge.train.builders_audio import decode


class TinyNet(torch.nn.Module):
    """A deterministic conditional 'network' (no training): enough to tell guidance apart."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.linspace(0.5, 1.5, 4).view(1, 4))

    def forward(self, x, c_noise, cond=None):
        shift = 0.0 if cond is None else 0.1 * cond.float().view(-1, 1)
        return torch.tanh(x * self.w + c_noise.view(-1, 1) * 0.01 + shift)


FORM = EDM()


def test_plan_resolves_names_once_and_checks_them():
    p = Plan.resolve(8, "heun", "karras")
    # Heun's n steps cost 2n - 2 evaluations (its first and last steps are Euler): 5 for 8
    assert (p.sampler, p.schedule, p.nfe, p.steps) == ("heun", "karras", 8, 5)
    assert p.sample_fn is SAMPLERS["heun"]
    assert torch.equal(p.sigmas(0.002, 80.0), karras(5, 0.002, 80.0))
    assert Plan.resolve(1).sampler == recommended(1)[0]
    with pytest.raises(ValueError, match="unknown sampler 'nope'"):
        Plan.resolve(8, "nope")
    with pytest.raises(ValueError, match="unknown schedule 'nope'"):
        Plan.resolve(8, "euler", "nope")


def test_plan_takes_an_explicit_sigma_tensor_and_a_fitted_table():
    sigmas = torch.tensor([10.0, 1.0, 0.1, 0.0], dtype=torch.float64)
    p = Plan.resolve(3, "euler", sigmas)
    assert (p.schedule, p.steps) == (CUSTOM, 3) and torch.equal(p.sigmas(0.002, 80.0), sigmas)
    with pytest.raises(ValueError, match="decreasing sigmas ending in 0"):
        Plan.resolve(3, "euler", torch.tensor([1.0, 2.0, 0.0]))
    fitted = {3: sigmas}
    f = Plan.resolve(3, "euler", fitted=fitted)  # no schedule named: the model's table
    assert f.schedule == FITTED and torch.equal(f.sigmas(0.002, 80.0), sigmas)
    assert Plan.resolve(3, "euler", "karras", fitted=fitted).schedule == "karras"
    with pytest.raises(ValueError, match="no fitted schedule for 2 steps"):
        Plan.resolve(2, "euler", "fitted", fitted=fitted)


def test_inpainting_avoids_the_gaussian_end_step():
    rec = recommended(5)[0]
    assert rec == "unipc_gaussian"
    assert Plan.resolve(5, inpainting=True).sampler == "unipc"
    assert Plan.resolve(5, "unipc_gaussian", inpainting=True).sampler == "unipc_gaussian"


def _by_hand(net, seeds, plan, cond=None, guidance=1.0, uncond=None):
    """The recipe written out with the primitives: what draw must equal bit for bit."""
    denoise = FORM.precondition(net)
    if cond is not None and guidance != 1.0:
        denoise = cfg(denoise, guidance, uncond)
    noise = torch.stack([torch.randn(4, generator=torch.Generator().manual_seed(s)) for s in seeds])
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    for g in gens:  # the same draws the sampler's generators have made for the start noise
        torch.randn(4, generator=g)
    sigmas = plan.sigmas(FORM.sigma_min, FORM.sigma_max)
    return plan.sample_fn(denoise, noise * FORM.sigma_max, sigmas, cond=cond, generator=gens)


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp_2m", "euler_ancestral", "unipc"])
def test_draw_is_the_recipe_bit_for_bit(sampler):
    net, plan = TinyNet(), Plan.resolve(6, sampler, "karras")
    labels = torch.tensor([1, 3])
    got = draw(net, FORM, (4,), [5, 9], plan, cond=labels, guidance=2.5,
               uncond=torch.zeros_like(labels))  # fmt: skip
    want = _by_hand(net, [5, 9], plan, labels, 2.5, torch.zeros_like(labels))
    assert torch.equal(got, want)


def test_per_image_seeds_do_not_depend_on_the_batch():
    net, plan = TinyNet(), Plan.resolve(4, "heun", "karras")
    both = draw(net, FORM, (4,), [3, 4], plan)
    alone = draw(net, FORM, (4,), [4], plan)
    assert torch.equal(both[1], alone[0])
    one_generator = draw(net, FORM, (4,), 3, plan, n=2)  # one generator for the whole batch
    assert one_generator.shape == (2, 4) and torch.equal(one_generator[0], both[0])


def test_an_edit_at_strength_one_is_sampling_and_at_zero_the_input():
    net, plan = TinyNet(), Plan.resolve(6, "euler", "karras")
    init = torch.linspace(-1, 1, 8).view(2, 4)
    plain = draw(net, FORM, (4,), [1, 2], plan)
    assert torch.equal(draw(net, FORM, (4,), [1, 2], plan, edit=Edit(init, 1.0)), plain)
    assert torch.equal(draw(net, FORM, (4,), [1, 2], plan, edit=Edit(init, 0.0)), init)


class HalfCodec:
    """A 'latent model' codec: latents are the images' left halves scaled by 2 (factor 1)."""

    factor = 1

    def encode(self, x):
        return x * 2.0

    def decode(self, z):
        return z / 2.0


def test_inpainting_returns_the_kept_pixels_exactly_in_pixel_and_latent_space():
    plan = Plan.resolve(6, "heun", "karras", inpainting=True)
    init = torch.linspace(-1, 1, 4).view(1, 1, 1, 4)
    mask = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 1, 4)

    class Flat(torch.nn.Module):  # TinyNet over (B, 1, 1, 4) images
        def __init__(self):
            super().__init__()
            self.net = TinyNet()

        def forward(self, x, c_noise, cond=None):
            return self.net(x.view(-1, 4), c_noise).view_as(x)

    for decoder in (None, HalfCodec()):
        out = draw(Flat(), FORM, (1, 1, 4), [0, 1], plan, edit=Edit(init, 1.0, mask),
                   decoder=decoder)  # fmt: skip
        assert torch.equal(out[..., 2:], init[..., 2:].expand(2, 1, 1, 2))
        assert not torch.equal(out[..., :2], init[..., :2].expand(2, 1, 1, 2))


def test_a_denoiser_needs_no_network():
    net, plan = TinyNet(), Plan.resolve(4, "euler", "karras")
    as_net = draw(net, FORM, (4,), [7], plan)
    as_denoiser = draw(FORM.precondition(net), FORM, (4,), [7], plan)
    assert torch.equal(as_net, as_denoiser)


def test_every_schedule_name_is_accepted():
    for name in SCHEDULES:
        assert Plan.resolve(5, "euler", name).schedule == name


# --- per modality: each pipeline's output is the recipe written with core's public pieces ---


def _recipe(net, formulation, shape, seeds, cond, guidance, uncond, nfe, sampler, schedule):
    denoise = formulation.precondition(net)
    if guidance != 1.0:
        denoise = cfg(denoise, guidance, uncond)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    return sample(denoise, (len(seeds), *shape), nfe=nfe, sampler=sampler, schedule=schedule,
                  sigma_min=formulation.sigma_min, sigma_max=formulation.sigma_max, cond=cond,
                  generator=gens)  # fmt: skip


def test_image_pipeline_is_the_recipe():
    torch.set_num_threads(1)
    pipe = load_pipeline(bundled_path("digits"))
    labels = torch.tensor([3, 7])
    got = pipe.generate_images([4, 5], labels=labels, guidance=2.0, nfe=3, sampler="heun",
                               schedule="karras")  # fmt: skip
    want = _recipe(pipe.net, pipe.formulation, pipe.shape, [4, 5], labels, 2.0,
                   torch.full_like(labels, 10), 3, "heun", "karras")  # fmt: skip
    assert torch.equal(got, want)


def test_audio_pipeline_is_the_recipe_then_its_route():
    torch.set_num_threads(1)
    pipe = load_audio_pipeline(bundled_path("audio-digits"))
    labels = torch.tensor([1])
    got = pipe.generate([2], labels=labels, guidance=2.0, nfe=2, sampler="euler",
                        schedule="karras")  # fmt: skip
    x = _recipe(pipe.pipe.net, pipe.pipe.formulation, pipe.pipe.shape, [2], labels, 2.0,
                torch.full_like(labels, pipe.num_classes), 2, "euler", "karras")  # fmt: skip
    # each clip's Griffin-Lim phases start from the clip's own seed
    assert torch.equal(got, decode(x, pipe.route, pipe.spec, pipe.length, pipe.gl_iters, seeds=[2]))


def test_text_to_image_pipeline_is_the_recipe():
    torch.set_num_threads(1)
    pipe = load_text2image("t2i-scenes")
    prompts = ["a red circle", "two blue squares"]
    got = pipe.generate(prompts, nfe=2, guidance=3.0, seeds=[1, 2], sampler="euler",
                        schedule="karras", negative_prompt="green")  # fmt: skip
    cond = pipe.encode(prompts, seeds=[1, 2])
    neg = pipe.encode(["green"], allow_empty=True).expand_as(cond)
    x = _recipe(pipe.net, pipe.formulation, pipe.shape, [1, 2], cond, 3.0, neg, 2, "euler",
                "karras")  # fmt: skip
    assert torch.equal(got, pipe.decode(x).clamp(-1, 1))


def test_an_explicit_sigma_table_starts_the_noise_at_its_own_first_level():
    """Data N(0, 1): D(x, s) = x / (1 + s^2). One Euler step from a table [20, 0] must map the
    noise drawn at scale 20 (not the formulation's sigma_max 80) to x / 401."""
    from diffusionforge.core.sample import sample

    sigmas = torch.tensor([20.0, 0.0], dtype=torch.float64)
    denoise = lambda x, s, c=None: x / (1 + s.view(-1, 1) ** 2)
    out = sample(denoise, (4, 3), nfe=1, sampler="euler", schedule=sigmas, sigma_max=80.0,
                 generator=torch.Generator().manual_seed(0))  # fmt: skip
    noise = torch.randn((4, 3), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, noise * 20.0 / 401.0)
