"""Fitted step positions for schedules.optimized, written by benchmarks/fit_schedule.py (sampler
unipc, Gaussian-mixture proxies of dimension 32-128; the command is in that file's docstring).

Entries 5-10 were fitted with --samples 384: on fresh validation mixtures they generalised better
than 128-sample fits (mean RMS 0.077 vs 0.081 at 5 steps, 0.054 vs 0.075 at 6, 0.026 vs 0.043
at 8, 0.017 vs 0.035 at 10); entries 3 and 4 with --samples 128, 12 with --samples 256
--maxfev 800. Entry 16 was refitted with --samples 2048 --maxfev 400 from the 256-sample fit
(more samples make the objective count basin-boundary "flips" instead of fitting their noise);
on four fresh validation mixtures (benchmarks/validate_schedule.py, dims 40-112) UniPC's RMS
went 0.030/0.021/0.021/0.036 -> 0.022/0.021/0.002/0.023.

Each entry n -> n positions p_i in [0, 1], decreasing from 1 (sigma_max) towards 0 (sigma_min),
p = log(sigma / sigma_min) / log(sigma_max / sigma_min), fitted for sigma in [0.002, 80].
"""

OPTIMIZED_STEPS: dict[int, list[float]] = {
    3: [1.0000, 0.6900, 0.5511],
    4: [1.0000, 0.7440, 0.6659, 0.5109],
    5: [1.0000, 0.7497, 0.6693, 0.4836, 0.3921],
    6: [1.0000, 0.7676, 0.6911, 0.6078, 0.4757, 0.3886],
    7: [1.0000, 0.7727, 0.6975, 0.6163, 0.5236, 0.4371, 0.3591],
    8: [1.0000, 0.7709, 0.6978, 0.6220, 0.5387, 0.4127, 0.3688, 0.2890],
    10: [1.0000, 0.7655, 0.6980, 0.6305, 0.5589, 0.4983, 0.4570, 0.3632, 0.3207, 0.2255],
    12: [
        1.0000,
        0.7829,
        0.7135,
        0.6824,
        0.6446,
        0.6072,
        0.5519,
        0.4957,
        0.4548,
        0.3540,
        0.3118,
        0.2231,
    ],
    16: [
        1.0000,
        0.7987,
        0.7347,
        0.6969,
        0.6531,
        0.6158,
        0.6071,
        0.5699,
        0.5384,
        0.5109,
        0.4798,
        0.4504,
        0.3658,
        0.3010,
        0.2431,
        0.1675,
    ],
}
