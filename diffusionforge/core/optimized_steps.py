"""Fitted step positions for schedules.optimized, written by benchmarks/fit_schedule.py (sampler
unipc, or unipc_gaussian where said below; Gaussian-mixture proxies of dimension 32-128; the
command is in that file's docstring).

Entries 7-10 were fitted with --samples 384: on fresh validation mixtures they generalised better
than 128-sample fits (0.026 vs 0.043 mean RMS at 8 steps, 0.017 vs 0.035 at 10; the same held
for the earlier entries 5 and 6); entries 3 and 4 with --samples 128, 12 with --samples 256
--maxfev 800. Entry 16 is fitted on 32768 draws per proxy by importance splitting
(fit_schedule.py --risk: the draws near a basin boundary, where a sample can "flip" to another
mode, are all kept; 512 others stand for the rest), by Nelder-Mead from a smoothed version of
the earlier 2048-sample fit (--maxfev 300, then 1500 from its result; the commands are in
BENCHMARKS.md, Samplers). On four fresh validation mixtures (benchmarks/validate_schedule.py
--steps 16 --samples 16384, dims 40-112) UniPC's flips went 9/9/10/22 -> 6/8/3/13 and its RMS
0.0151/0.0161/0.0159/0.0268 -> 0.0106/0.0142/0.0090/0.0203.

Entry 5 is fitted for the recommended 5-NFE sampler, `unipc_gaussian` (UniPC with the
local-Gaussian step into sigma = 0, multistep.gaussian_end_step), on 16384 draws per proxy by
importance splitting (fit_schedule.py --sampler unipc_gaussian --steps 5 --samples 512 --risk
16384 --maxfev 400 --start "[1.0,0.749,0.6691,0.5865,0.5]", then --maxfev 600 from its result,
which it returned): sigmas 80, 5.47, 3.39, 1.38, 0.36. Because the end step no longer needs a
level near 0.13, the last four evaluations move up to where the mixture's basins separate. On the
validation mixtures (4096 samples) UniPC-Gaussian with it has RMS 0.0673/0.0560/0.0534/0.0486
(flips 29/15/16/13) against 0.1093/0.0876/0.0922/0.0789 (91/51/60/31) for plain UniPC with
the earlier entry [1.0, 0.7497, 0.6693, 0.4836, 0.3921]. Entry 6 likewise (--steps 6 --maxfev 500
--start "[1.0,0.75,0.70,0.64,0.58,0.49]"; objective -3.233, against -3.209 from the earlier
entry as start): validation RMS 0.0530/0.0427/0.0346/0.0386, against 0.0703/0.0649/0.0720/0.0774
for plain UniPC with the earlier entry [1.0, 0.7676, 0.6911, 0.6078, 0.4757, 0.3886]. Both also
lower the error on the bundled digits and glyphs32 networks (benchmarks/schedule_on_model.py,
64 samples against plain UniPC with the earlier entries, NFE 5: 0.167 -> 0.112 and 0.118 -> 0.108;
NFE 6: 0.105 -> 0.096 and 0.086 -> 0.073). Refits for it at 4, 7, 8 and 10 steps were not
adopted: 4 did not improve on the validation mixtures; 7, 8 and 10 did (mean RMS 0.051 -> 0.031,
0.048 -> 0.024, 0.044 -> 0.015, their last four levels moved up to sigma 0.3-3) but raised the
digits network's error (0.068 -> 0.083, 0.068 -> 0.073, 0.051 -> 0.068) while lowering
glyphs32's (0.069 -> 0.061, 0.065 -> 0.062, 0.061 -> 0.053): where basins separate depends on
the data, so from 8 NFE the recommended pair stays plain UniPC with the entries below.
Positions: 7 [1.0, 0.7806, 0.7292, 0.6706, 0.6256, 0.5562, 0.4872], 8 [1.0, 0.7888, 0.7404,
0.6837, 0.6417, 0.5998, 0.5444, 0.4836], 10 [1.0, 0.8116, 0.7664, 0.7105, 0.6714, 0.6419,
0.6079, 0.5740, 0.5204, 0.4698].

Each entry n -> n positions p_i in [0, 1], decreasing from 1 (sigma_max) towards 0 (sigma_min),
p = log(sigma / sigma_min) / log(sigma_max / sigma_min), fitted for sigma in [0.002, 80].
"""

OPTIMIZED_STEPS: dict[int, list[float]] = {
    3: [1.0000, 0.6900, 0.5511],
    4: [1.0000, 0.7440, 0.6659, 0.5109],
    5: [1.0000, 0.7468, 0.7017, 0.6170, 0.4901],
    6: [1.0000, 0.7727, 0.7190, 0.6582, 0.5892, 0.4992],
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
        0.8458,
        0.7716,
        0.7200,
        0.6852,
        0.6518,
        0.6264,
        0.6030,
        0.5664,
        0.5274,
        0.4875,
        0.4527,
        0.3751,
        0.3097,
        0.2501,
        0.1789,
    ],
}
