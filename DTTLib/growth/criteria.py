"""Information criteria and Akaike weights for least-squares fits.

With Gaussian errors of unknown variance (on the fitted scale), the maximised log-likelihood
is −n/2·(ln(2π·RSS/n) + 1); dropping the constant gives the textbook forms used here:
AIC = n·ln(RSS/n) + 2k, AICc = AIC + 2k(k+1)/(n−k−1), BIC = n·ln(RSS/n) + k·ln n, where
k counts the model parameters plus one for the error variance. AICc is +inf when n ≤ k+1:
too few points to say anything about that model.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

RSS_FLOOR_SD = 0.01  # residual SD (log scale) below which a fit is "perfect": 1 % is measurement precision


def _ll_term(rss: float, n: int) -> float:
    rss = max(float(rss), n * RSS_FLOOR_SD ** 2)
    return n * math.log(rss / n)


def aic(rss: float, n: int, k: int) -> float:
    return _ll_term(rss, n) + 2 * k


def aicc(rss: float, n: int, k: int) -> float:
    if n - k - 1 <= 0:
        return math.inf
    return aic(rss, n, k) + 2 * k * (k + 1) / (n - k - 1)


def bic(rss: float, n: int, k: int) -> float:
    return _ll_term(rss, n) + k * math.log(n)


def akaike_weights(scores: Sequence[float]) -> np.ndarray:
    """exp(−Δ/2) normalised; infinite/NaN scores get weight 0. All-infinite → all 0."""
    s = np.asarray(scores, float)
    ok = np.isfinite(s)
    w = np.zeros_like(s)
    if ok.any():
        d = s[ok] - s[ok].min()
        e = np.exp(-0.5 * d)
        w[ok] = e / e.sum()
    return w
