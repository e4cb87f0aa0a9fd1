"""A diffusers scheduler config becomes our seam (DESIGN.md, "foreign models at the edge").

`scheduler_config.json` says how the network was trained: the number of train timesteps, the beta
schedule (linear, scaled_linear, squaredcos_cap_v2 or trained betas), the prediction type
(epsilon, v_prediction, sample) or flow matching with its shift. `noise_process` checks each value
(one `CheckpointError` line) and maps it onto `core.denoiser.DiscreteTimesteps` and its adapters,
or onto the flow adapter, so every sampler and schedule of ours runs on the imported network.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffusionforge.core.denoiser import (
    ADAPTERS,
    DiscreteTimesteps,
    cosine_betas,
    flow_time,
    linear_betas,
    scaled_linear_betas,
)
from diffusionforge.errors import CheckpointError
from diffusionforge.limits import limit

PREDICTIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
FLOW_SCHEDULERS = ("FlowMatchEulerDiscreteScheduler", "FlowMatchHeunDiscreteScheduler")


@dataclass(frozen=True)
class NoiseProcess:
    """What scheduler_config.json says about training: a discrete VP table and a target, or
    flow matching (with its time shift)."""

    prediction: str  # eps | v | x0 | flow
    table: DiscreteTimesteps | None  # None for flow
    num_train_timesteps: int
    shift: float = 1.0
    config: dict | None = None

    @property
    def sigma_min(self) -> float:
        if self.table is None:
            t = 1 / self.num_train_timesteps
            return t / (1 - t)
        return self.table.sigma_min

    @property
    def sigma_max(self) -> float:
        if self.table is None:  # flow starts at t = 1 (pure noise); we start one train step in
            t = 1 - 1 / self.num_train_timesteps
            return t / (1 - t)
        return self.table.sigma_max

    def init_scale(self, sigma: float) -> float:
        """Std of x = x0 + sigma n at the start (unit data variance for VP: diffusers draws
        x_vp ~ N(0, I), i.e. x = sqrt(1 + sigma^2) n; flow models start at sigma n)."""
        return sigma if self.table is None else (1 + sigma**2) ** 0.5

    def denoiser(self, net):
        """Our Denoiser around net(x_in, t, cond) taking diffusers' timesteps."""
        if self.table is None:
            n = self.num_train_timesteps
            return ADAPTERS["flow"](net, lambda s: flow_time(s) * n)
        return self.table.adapter(net, ADAPTERS[self.prediction])


def noise_process(sched: dict, where: str) -> NoiseProcess:
    """Map a diffusers scheduler config (any of DDPM/DDIM/Euler/DPMSolver/...) onto ours."""
    name = sched.get("_class_name", "")
    n = sched.get("num_train_timesteps", 1000)
    if type(n) is not int or not 1 <= n <= limit("width"):  # no bools, floats, strings
        raise CheckpointError(
            f"{where}: num_train_timesteps {n!r}; expected a whole number in [1, {limit('width')}]"
        )

    def number(key: str, default: float, lo: float, hi: float) -> float:
        v = sched.get(key, default)
        if type(v) not in (int, float) or not lo < v < hi:  # NaN fails too
            raise CheckpointError(f"{where}: {key} {v!r}; expected a number in ({lo:g}, {hi:g})")
        return float(v)

    if name in FLOW_SCHEDULERS or sched.get("prediction_type") == "flow_prediction":
        if sched.get("use_dynamic_shifting"):
            raise CheckpointError(
                f"{where}: use_dynamic_shifting (resolution-dependent shift) is "
                "not supported; set a fixed shift"
            )
        return NoiseProcess("flow", None, n, number("shift", 1.0, 0.0, 1e6), sched)
    if sched.get("rescale_betas_zero_snr"):
        raise CheckpointError(
            f"{where}: rescale_betas_zero_snr (infinite last noise level) is not supported"
        )
    pred = sched.get("prediction_type", "epsilon")
    if not isinstance(pred, str) or pred not in PREDICTIONS:
        raise CheckpointError(
            f"{where}: prediction_type {pred!r}; expected one of {', '.join(PREDICTIONS)}"
        )
    start, end = number("beta_start", 0.0001, 0.0, 1.0), number("beta_end", 0.02, 0.0, 1.0)
    kind = sched.get("beta_schedule", "linear")
    if sched.get("trained_betas"):
        tb = sched["trained_betas"]
        if not isinstance(tb, list) or not 1 <= len(tb) <= limit("width"):
            raise CheckpointError(f"{where}: trained_betas: expected a list of numbers in (0, 1)")
        for i, v in enumerate(tb):
            number_ok = type(v) in (int, float) and 0.0 < v < 1.0
            if not number_ok:
                raise CheckpointError(f"{where}: trained_betas[{i}] {v!r}; expected (0, 1)")
        betas = torch.tensor(tb, dtype=torch.float64)
        n = len(betas)
    elif kind == "linear":
        betas = linear_betas(n, start, end)
    elif kind == "scaled_linear":
        betas = scaled_linear_betas(n, start, end)
    elif kind == "squaredcos_cap_v2":
        betas = cosine_betas(n)
    else:
        raise CheckpointError(
            f"{where}: beta_schedule {kind!r}; expected linear, scaled_linear or squaredcos_cap_v2"
        )
    # diffusers' schedulers place fractional timesteps by interpolating sigma itself
    return NoiseProcess(PREDICTIONS[pred], DiscreteTimesteps(betas, "linear"), n, 1.0, sched)
