"""A stand-in for core.fit_schedule in the fit-schedule command tests: fixed sigmas per NFE
(scaled to the model's sigma_max) and a held-out check that keeps them, so the tests check the
plumbing, not the machine's speed (core.fit_schedule has its own closed-form tests)."""

from __future__ import annotations

import torch

from diffusionforge.pipelines import fitted_schedules

FAKE8 = [80.0, 9.0, 2.0, 0.7, 0.3, 0.12, 0.05, 0.02, 0.0]  # unipc at NFE 8: 8 steps


def fake_sigmas(nfe: int, sigma_max: float) -> torch.Tensor:
    if nfe == 8:
        levels = [sigma_max] + [v * sigma_max / 80.0 for v in FAKE8[1:]]
    else:
        levels = [sigma_max] + [1.0 / (i + 1) for i in range(nfe - 1)] + [0.0]
    return torch.tensor(levels, dtype=torch.float64)


def install_stub(monkeypatch) -> list:
    """Replace the fit; returns the list of (shape, nfe, keywords) it is called with."""
    calls = []

    def fake(denoise, shape, nfe, **kw):
        calls.append((tuple(shape), nfe, kw))
        sig = fake_sigmas(nfe, kw["sigma_max"])
        kw["callback"]({"phase": "search", "trajectories": shape[0], "rms": 0.01, "sigmas": sig})
        kw["callback"](
            {"phase": "check", "trajectories": shape[0], "rms_fitted": 0.01,
             "rms_default": 0.02, "kept": True}
        )  # fmt: skip
        return sig

    monkeypatch.setattr(fitted_schedules, "fit_schedule", fake)
    return calls
