"""Fitted step positions for schedules.optimized (written by benchmarks/fit_schedule.py).

Each entry n -> n positions p_i in [0, 1], decreasing from 1 (sigma_max) to 0 (sigma_min),
p = log(sigma / sigma_min) / log(sigma_max / sigma_min).
"""

OPTIMIZED_STEPS: dict[int, list[float]] = {
    10: [1.0, 0.8, 0.63, 0.49, 0.37, 0.27, 0.18, 0.11, 0.05, 0.0],
}
