"""img2img (SDEdit) and inpainting against closed forms: Gaussian data, whose denoiser and
probability-flow map are known exactly, and the trajectory x = known + sigma * n that the
inpainting wrapper must put the known pixels on, for every sampler."""

from __future__ import annotations

import pytest
import torch

from diffusionforge import sample
from diffusionforge.core.draw import latent_mask
from diffusionforge.core.editing import edit, inpaint, strength_sigmas
from diffusionforge.core.sampler_utils import randn_like
from diffusionforge.core.samplers import SAMPLER_INFO, SAMPLERS
from diffusionforge.core.schedules import SCHEDULES, karras
from diffusionforge.errors import UserError
from diffusionforge.pipelines.editing import check_edit

F64 = torch.float64


def gaussian_denoiser(mu: torch.Tensor, cov: torch.Tensor):
    """E[x0 | x] for x0 ~ N(mu, cov), x = x0 + sigma n: mu + cov (cov + s^2 I)^-1 (x - mu)."""
    eye = torch.eye(len(mu), dtype=F64)

    def denoise(x, sigma, cond=None):
        s = float(sigma[0])
        assert bool((sigma == sigma[0]).all())  # samplers step a batch at one level
        gain = torch.linalg.solve(cov + s**2 * eye, cov)  # (cov + s^2 I)^-1 cov = M^T
        return (mu + (x.to(F64) - mu) @ gain).to(x.dtype)

    return denoise


def test_strength_picks_the_tail_of_the_schedule():
    sigmas = karras(10, 0.002, 80.0)
    assert torch.equal(strength_sigmas(sigmas, 1.0), sigmas)
    assert torch.equal(strength_sigmas(sigmas, 0.5), sigmas[5:])
    assert strength_sigmas(sigmas, 0.0).tolist() == [0.0]
    assert len(strength_sigmas(sigmas, 0.04)) == 1  # rounds to no step


@pytest.mark.parametrize("sampler", ["heun", "dpmpp_2m", "unipc", "euler_ancestral"])
def test_strength_zero_is_the_input_and_one_is_plain_sampling(sampler):
    mu, cov = torch.zeros(3, dtype=F64), torch.diag(torch.tensor([0.3, 0.5, 1.0], dtype=F64))
    den = gaussian_denoiser(mu, cov)
    init = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    same = edit(den, init, nfe=8, strength=0.0, sampler=sampler)
    assert torch.equal(same, init)
    gens = [torch.Generator().manual_seed(s) for s in range(4)]
    edited = edit(den, init, nfe=8, strength=1.0, sampler=sampler, generator=gens)
    gens = [torch.Generator().manual_seed(s) for s in range(4)]
    plain = sample(den, (4, 3), nfe=8, sampler=sampler, generator=gens, dtype=F64)
    assert torch.equal(edited, plain)


def test_sdedit_follows_the_exact_probability_flow_from_the_noised_input():
    # Isotropic Gaussian data N(mu, lam I): the PF-ODE from level s maps x to
    # mu + sqrt(lam / (lam + s^2)) (x - mu) at sigma = 0, with x = init + s n. Heun's error
    # falls at its order (2) as the steps double.
    lam, mu = 0.25, torch.tensor([0.5, -1.0, 2.0], dtype=F64)
    den = gaussian_denoiser(mu, lam * torch.eye(3, dtype=F64))
    init = torch.tensor([[1.0, 1.0, 1.0], [-2.0, 0.0, 3.0]], dtype=F64)
    errors = []
    for nfe in (79, 159):
        out = edit(den, init, nfe=nfe, strength=0.5, sampler="heun", schedule="karras",
                   generator=torch.Generator().manual_seed(0))  # fmt: skip
        steps = SAMPLER_INFO["heun"].steps_for(nfe)
        s = float(strength_sigmas(karras(steps, 0.002, 80.0), 0.5)[0])
        assert 1 < s < 3  # the middle of the schedule
        n = randn_like(init, torch.Generator().manual_seed(0))
        exact = mu + (lam / (lam + s**2)) ** 0.5 * (init + s * n - mu)
        errors.append(float((out - exact).abs().max()))
    assert errors[1] < 5e-3 and errors[0] / errors[1] > 3.0, errors


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_inpainting_puts_known_pixels_on_their_exact_trajectory_with_every_sampler(sampler):
    # Correlated Gaussian data; dims 0-1 known, 2-3 generated. Under the wrapper the known
    # pixels solve dx/dsigma = (x - known) / sigma, i.e. x = known + sigma * n0 at every level;
    # every sampler integrates that linear ODE exactly (stochastic ones keep it in law, so
    # they are checked only at the end).
    g = torch.Generator().manual_seed(3)
    a = torch.randn(4, 4, dtype=F64, generator=g)
    den = gaussian_denoiser(torch.zeros(4, dtype=F64), a @ a.T / 4 + 0.1 * torch.eye(4, dtype=F64))
    known = torch.tensor([[0.7, -0.4, 0.0, 0.0]], dtype=F64).repeat(3, 1)
    mask = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=F64)
    sigmas = SCHEDULES["karras"](12, 0.002, 80.0)
    n0 = randn_like(known, torch.Generator().manual_seed(5))
    x = torch.where(mask > 0.5, n0 * 80.0, known + 80.0 * n0)
    seen = []
    out = SAMPLERS[sampler](
        inpaint(den, known, mask), x, sigmas, generator=torch.Generator().manual_seed(6),
        callback=lambda d: seen.append((d["i"], d["x"][:, :2].clone())),
    )  # fmt: skip
    # unipc_gaussian's end step fits one local scale to known and generated pixels together, so
    # its last step leaves known pixels off by (1 - c) sigma n0; edit() pastes them (tested below)
    end_exact = sampler != "unipc_gaussian"
    if end_exact:
        assert torch.allclose(out[:, :2], known[:, :2], atol=1e-9)
    assert out[:, 2:].abs().max() > 0.05  # the generated pixels were generated
    if not SAMPLER_INFO[sampler].stochastic:
        for i, xk in seen:
            if not end_exact and sigmas[i + 1] == 0:
                continue
            expected = known[:, :2] + float(sigmas[i + 1]) * n0[:, :2]
            assert torch.allclose(xk, expected, atol=1e-9), (sampler, i)


@pytest.mark.parametrize("sampler", [None, "unipc_gaussian"])
def test_edit_inpainting_keeps_known_pixels_with_the_gaussian_end_sampler(sampler):
    # NFE 5 recommends unipc_gaussian; with a mask edit() runs plain UniPC unless told otherwise,
    # and the known pixels come back exactly either way
    den = gaussian_denoiser(torch.zeros(4, dtype=F64), torch.eye(4, dtype=F64) * 0.3)
    init = torch.tensor([[0.7, -0.4, 0.2, 0.1]], dtype=F64)
    mask = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=F64)
    out = edit(den, init, nfe=5, mask=mask, sampler=sampler,
               generator=torch.Generator().manual_seed(1))  # fmt: skip
    assert torch.equal(out[:, :2], init[:, :2])
    assert (out[:, 2:] - init[:, 2:]).abs().max() > 1e-3


def test_inpainting_independent_pixels_are_drawn_from_their_marginal():
    # With block-diagonal covariance the known block says nothing about the generated one, so
    # the exact conditional is the marginal N(mu_u, cov_uu): the generated block must be what
    # plain sampling draws from the same noise, and (at 80 NFE) have the marginal's moments.
    cov = torch.zeros(4, 4, dtype=F64)
    cov[:2, :2] = torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=F64)
    cov[2:, 2:] = torch.tensor([[0.5, -0.3], [-0.3, 0.4]], dtype=F64)
    mu = torch.tensor([0.0, 0.0, 1.0, -0.5], dtype=F64)
    den = gaussian_denoiser(mu, cov)
    n = 3000
    known = torch.tensor([2.0, -1.0, 9.0, 9.0], dtype=F64).expand(n, 4)
    mask = torch.tensor([0.0, 0.0, 1.0, 1.0])
    run = dict(nfe=79, sampler="heun", schedule="karras")
    out = edit(den, known, mask=mask, generator=torch.Generator().manual_seed(0), **run)
    plain = sample(den, (n, 4), generator=torch.Generator().manual_seed(0), dtype=F64, **run)
    assert torch.equal(out[:, :2], known[:, :2])
    assert torch.allclose(out[:, 2:], plain[:, 2:], atol=1e-9)
    u = out[:, 2:]
    se = (cov[2:, 2:].diagonal() / n).sqrt()
    assert ((u.mean(0) - mu[2:]).abs() < 4 * se).all(), u.mean(0)
    assert torch.allclose(torch.cov(u.T), cov[2:, 2:], atol=0.04), torch.cov(u.T)


def test_repaint_resampling_moves_inpainting_towards_the_exact_conditional():
    # Correlated Gaussian: replacement alone leaves the generated coordinates far from the
    # closed-form conditional N(m_c, C_c); RePaint's resampling must close most of the gap in
    # the mean and the covariance, with the kept coordinates still exact.
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 4, dtype=F64, generator=g) * 0.5
    cov = a @ a.T + 0.05 * torch.eye(4, dtype=F64)
    mu = torch.tensor([0.3, -0.2, 0.1, 0.5], dtype=F64)
    known = torch.tensor([1.0, -0.5, 0.0, 0.0], dtype=F64).expand(3000, 4)
    s11, s21, s22 = cov[:2, :2], cov[2:, :2], cov[2:, 2:]
    m_c = mu[2:] + s21 @ torch.linalg.solve(s11, known[0, :2] - mu[:2])
    c_c = s22 - s21 @ torch.linalg.solve(s11, s21.T)
    mask = torch.tensor([0.0, 0.0, 1.0, 1.0])
    errors = {}
    for r in (0, 8):
        gen = torch.Generator().manual_seed(1)
        run = dict(nfe=20, sampler="euler", schedule="karras", generator=gen)
        out = edit(gaussian_denoiser(mu, cov), known, mask=mask, resample=r, **run)
        assert torch.equal(out[:, :2], known[:, :2])
        u = out[:, 2:]
        errors[r] = (float((u.mean(0) - m_c).norm()), float((torch.cov(u.T) - c_c).norm()))
    assert errors[8][0] < 0.4 * errors[0][0] and errors[8][1] < 0.4 * errors[0][1], errors


def test_edit_inputs_that_cannot_work_are_one_line_errors():
    img = torch.zeros(1, 3, 32, 32)
    mask = torch.ones(1, 1, 32, 32)
    check_edit((3, 32, 32), img, mask, 0.5)  # fine
    cases = [
        ((torch.zeros(1, 3, 16, 16), None, 0.5), "16x16 pixels; this model makes 32x32"),
        ((img, torch.ones(1, 1, 8, 8), 1.0), "mask is 8x8 pixels"),
        ((img, torch.zeros(1, 1, 32, 32), 1.0), "all black"),
        ((None, mask, 1.0), "needs an image"),
        ((img, None, 1.5), "--strength"),
        ((torch.zeros(1, 1, 32, 32), None, 0.5), "3 channel"),
    ]
    for (init, m, strength), words in cases:
        with pytest.raises(UserError, match=words) as info:
            check_edit((3, 32, 32), init, m, strength)
        assert "\n" not in str(info.value)


def test_latent_mask_generates_every_cell_touching_a_white_pixel():
    m = torch.zeros(1, 1, 8, 8)
    m[0, 0, 3, 5] = 1  # one pixel in latent cell (0, 1) at factor 4
    lm = latent_mask(m, 4)
    assert lm.shape == (1, 1, 2, 2) and lm.flatten().tolist() == [0.0, 1.0, 0.0, 0.0]
