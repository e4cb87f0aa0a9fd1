"""A sampling plan: which sampler runs over which sigmas for an NFE budget, resolved in one place.

Every path from a user's `--nfe/--sampler/--schedule` (CLI, server, config, training preview) to
a sampler goes through `Plan.resolve`: it is the only reader of the recommendation table and the
only place sampler and schedule names are checked. What it returns holds no names to look up
again: `plan.sample_fn` is the sampler function and `plan.sigmas(sigma_min, sigma_max)` the
schedule tensor (decreasing, ending in 0) that core.sample / core.editing run.

A schedule is a name from core.schedules.SCHEDULES, an explicit sigma tensor, or "fitted": a
schedule table the model supplies (`fitted`, keyed by the number of sampler steps), e.g. one
fitted per checkpoint. With no schedule named, a fitted entry for the step count is used when
the model has one, else the default schedule for the sampler actually run
(`default_schedule`): the recommended pair's schedule only when the sampler is the recommended
one, else the sampler's own `SAMPLER_INFO[name].schedule`, built for the step count that
sampler affords at the budget (Heun at NFE 16: `optimized`'s levels for 9 steps, not UniPC's 16).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from diffusionforge.core.samplers import SAMPLER_INFO, SAMPLERS
from diffusionforge.core.schedules import SCHEDULES

# Best (sampler, schedule) per NFE budget, from benchmarks/samplers.py (BENCHMARKS.md); a
# budget between two entries takes the entry at or below it.
RECOMMENDED: dict[int, tuple[str, str]] = {
    1: ("euler", "karras"),  # one evaluation: x = D(x, sigma_max), whatever the sampler
    2: ("unipc_gaussian", "optimized"),
    5: ("unipc_gaussian", "leading"),  # robust across mixtures and networks: BENCHMARKS.md
}

FITTED, CUSTOM = "fitted", "custom"  # schedule names of a model's table / an explicit tensor


def recommended(nfe: int, *, inpainting: bool = False) -> tuple[str, str]:
    """The (sampler, schedule) pair recommended for `nfe` network evaluations. For inpainting
    plain `unipc` on `optimized` replaces `unipc_gaussian`: its end step fits one local scale
    per sample, while pasted-in pixels (a point mass) and generated ones have two."""
    pair = RECOMMENDED[max(k for k in RECOMMENDED if k <= max(nfe, 1))]
    if inpainting and pair[0] == "unipc_gaussian":
        return "unipc", "optimized"  # plain UniPC's last step from leading's 0.2 is coarse
    return pair


def default_schedule(nfe: int, sampler: str, *, inpainting: bool = False) -> str:
    """The schedule `sampler` runs at `nfe` when none is named: the recommended pair's when
    `sampler` is the recommended sampler for the budget, else the sampler's own default."""
    rec_sampler, rec_schedule = recommended(nfe, inpainting=inpainting)
    return rec_schedule if sampler == rec_sampler else SAMPLER_INFO[sampler].schedule


@dataclass(frozen=True)
class Plan:
    """nfe network evaluations with `sampler` over `schedule` (names as metadata records them)."""

    nfe: int
    sampler: str  # a SAMPLERS name
    schedule: str  # a SCHEDULES name, FITTED or CUSTOM
    table: Tensor | None = None  # the sigmas of a FITTED or CUSTOM schedule (float64, ends in 0)

    @classmethod
    def resolve(
        cls,
        nfe: int,
        sampler: str | None = None,
        schedule: str | Tensor | None = None,
        fitted: Mapping[int, Tensor] | None = None,
        *,
        inpainting: bool = False,
    ) -> Plan:
        """The plan for `nfe` evaluations; None picks the recommended sampler / schedule.

        `fitted` is the model's own schedule table {steps: sigmas}; `inpainting` takes the
        recommendation for inpainting (`recommended`). ValueError names a bad name."""
        sampler = sampler or recommended(nfe, inpainting=inpainting)[0]
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")
        if isinstance(schedule, Tensor):
            return cls(nfe, sampler, CUSTOM, _checked(schedule, "schedule"))
        steps = SAMPLER_INFO[sampler].steps_for(nfe)
        if schedule == FITTED or (schedule is None and fitted and steps in fitted):
            if not fitted or steps not in fitted:
                have = ", ".join(map(str, sorted(fitted or {}))) or "none"
                raise ValueError(f"no fitted schedule for {steps} steps (the model has: {have})")
            return cls(nfe, sampler, FITTED, _checked(fitted[steps], "fitted schedule"))
        schedule = schedule or default_schedule(nfe, sampler, inpainting=inpainting)
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
        return cls(nfe, sampler, schedule)

    @property
    def sample_fn(self):
        """The sampler: fn(denoise, x, sigmas, *, cond, generator, callback) -> x0."""
        return SAMPLERS[self.sampler]

    @property
    def steps(self) -> int:
        """Sampler steps (a progress bar's length): the table's, else what the NFE affords."""
        if self.table is not None:
            return len(self.table) - 1
        return SAMPLER_INFO[self.sampler].steps_for(self.nfe)

    def sigmas(self, sigma_min: float, sigma_max: float) -> Tensor:
        """The schedule tensor for a formulation's sampling range (a table ignores the range)."""
        if self.table is not None:
            return self.table
        return SCHEDULES[self.schedule](self.steps, sigma_min, sigma_max)


def start_level(sigmas: Tensor, sigma_max: float) -> float:
    """The noise scale a run over `sigmas` starts from: `sigma_max` itself (to the bit) when the
    schedule starts there, else the schedule's own first level (a fitted or explicit table, or
    a named schedule that starts lower, as `leading` does at few steps)."""
    first = float(sigmas[0])
    return sigma_max if abs(first - sigma_max) <= 1e-9 * sigma_max else first


def _checked(sigmas: Tensor, what: str) -> Tensor:
    s = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
    if len(s) < 2 or float(s[-1]) != 0.0 or not bool((s[:-1] > s[1:]).all()):
        raise ValueError(f"{what}: expected decreasing sigmas ending in 0, got {s.tolist()}")
    return s
