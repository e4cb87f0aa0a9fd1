"""Distribution metrics on feature vectors: FID, KID and precision/recall.

All functions take two arrays of features, (N, D) and (M, D), from the same extractor
(``diffusionforge.eval.features``) and compute in float64.
"""

import numpy as np
import torch
from torch import Tensor


def _as64(x: np.ndarray | Tensor) -> np.ndarray:
    return (x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)).astype(np.float64)


def gaussian_stats(features: np.ndarray | Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of (N, D) features."""
    f = _as64(features)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Frechet distance between N(mu1, cov1) and N(mu2, cov2) (Dowson & Landau 1982):

        ||mu1 - mu2||^2 + tr(cov1) + tr(cov2) - 2 tr((cov1 cov2)^(1/2)).

    tr((cov1 cov2)^(1/2)) equals tr((A cov2 A)^(1/2)) with A = cov1^(1/2): the latter matrix is
    symmetric PSD, so its eigenvalues are real and >= 0 up to rounding, which avoids the
    complex-valued ``sqrtm`` results that the usual implementation has to discard.
    """
    w, v = np.linalg.eigh(cov1)
    a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T  # cov1^(1/2)
    eig = np.linalg.eigvalsh(a @ cov2 @ a)
    tr_sqrt = np.sqrt(np.clip(eig, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * tr_sqrt)


def fid(real: np.ndarray | Tensor, fake: np.ndarray | Tensor) -> float:
    """Frechet Inception Distance (Heusel et al. 2017) between two feature sets."""
    return frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3  # k(x, y) = (x.y / d + 1)^3


def kid(
    real: np.ndarray | Tensor,
    fake: np.ndarray | Tensor,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2, cubic kernel.

    Averaged over ``subsets`` random subsets of ``min(subset_size, N, M)`` points from each set
    (the usual protocol); returns (mean, standard deviation over subsets). Unbiased: it can be
    slightly negative when the two sets come from one distribution.
    """
    x_all, y_all = _as64(real), _as64(fake)
    m = min(subset_size, len(x_all), len(y_all))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x = x_all[rng.choice(len(x_all), m, replace=False)]
        y = y_all[rng.choice(len(y_all), m, replace=False)]
        kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
        # U-statistic (Gretton et al. 2012, eq. 3): leave the diagonal out of the within-set sums.
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values.append(within - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


def _pairwise(x: Tensor, y: Tensor) -> Tensor:
    return torch.cdist(x, y)  # (N, M) Euclidean distances


def _knn_radii(x: Tensor, k: int, chunk: int = 1024) -> Tensor:
    """Distance from each point to its k-th nearest neighbour in the same set (self excluded)."""
    radii = [
        _pairwise(x[i : i + chunk], x).kthvalue(k + 1, dim=1).values
        for i in range(0, len(x), chunk)
    ]  # k + 1: the point itself is its own nearest, at 0
    return torch.cat(radii)


def _coverage(points: Tensor, support: Tensor, radii: Tensor, chunk: int = 1024) -> float:
    """Fraction of ``points`` inside the union of balls B(support_j, radii_j)."""
    inside = [
        (_pairwise(points[i : i + chunk], support) <= radii[None, :]).any(dim=1)
        for i in range(0, len(points), chunk)
    ]
    return torch.cat(inside).double().mean().item()


def precision_recall(
    real: np.ndarray | Tensor, fake: np.ndarray | Tensor, k: int = 3
) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019, Sec. 2, eqs. 1-2).

    Each set's manifold is the union of balls around its points with radius the distance to
    the k-th nearest neighbour (k = 3 in the paper). Precision: fraction of fake samples inside
    the real manifold (quality). Recall: fraction of real samples inside the fake manifold
    (coverage of the data).
    """
    x = torch.from_numpy(_as64(real))
    y = torch.from_numpy(_as64(fake))
    precision = _coverage(y, x, _knn_radii(x, k))
    recall = _coverage(x, y, _knn_radii(y, k))
    return precision, recall
