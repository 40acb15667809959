"""Prediction intervals from the fitted ensemble, and their empirical calibration.

Method (parametric, no refits, so it is fast enough for every patient and for live what-if):
for each model, draw parameters from the Laplace approximation N(θ̂, σ²·(JᵀJ)⁺) in search
space (clipped to the bounds); allocate draws across models by Akaike weight (a mixture);
add proportional measurement noise σ on the log scale. σ pools the series' residuals with a
population value (σ0, ν0 pseudo-observations) because 3–5 points cannot estimate a variance.

Asymptotic intervals are too narrow for short, noisy series and ignore model error, so they
are *calibrated*: on training series, leave the last visit out, forecast it, and learn the
factor ``s`` by which the interval half-widths (log scale, about the median) must be
stretched so that the nominal 80 % (95 %) interval covers 80 % (95 %) of the held-out visits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from DTTLib.growth.fit import ModelFit, SeriesFit, from_theta
from DTTLib.growth.models import Exposure, get_model
from DTTLib.growth.series import STATUS_CONSTANT

SIGMA0 = 0.10  # prior residual SD, log scale (≈10 % proportional error)
NU0 = 3.0  # its weight in pseudo-observations


@dataclass
class Calibration:
    """Half-width multipliers for the 80 % and 95 % intervals (1.0 = uncalibrated)."""

    s80: float = 1.0
    s95: float = 1.0
    n_cases: int = 0
    raw_coverage80: float = math.nan
    raw_coverage95: float = math.nan

    def to_dict(self) -> dict:
        return {"s80": self.s80, "s95": self.s95, "n_cases": self.n_cases,
                "raw_coverage80": self.raw_coverage80, "raw_coverage95": self.raw_coverage95}


@dataclass
class Intervals:
    """Forecast at times ``t``: ensemble mean, draw median and calibrated 80 %/95 % bands."""

    t: np.ndarray
    mean: np.ndarray
    median: np.ndarray
    lo80: np.ndarray
    hi80: np.ndarray
    lo95: np.ndarray
    hi95: np.ndarray


def pooled_sigma(f: ModelFit, sigma0: float = SIGMA0, nu0: float = NU0) -> float:
    dof = max(f.n - len(f.theta), 0)
    return math.sqrt((f.rss + nu0 * sigma0 ** 2) / (dof + nu0))


def draw_params(f: ModelFit, n_draws: int, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """(n_draws, p) natural parameters from the Laplace approximation around the optimum."""
    model = get_model(f.model)
    p = f.theta.size
    if n_draws <= 0:
        return np.empty((0, p))
    lam, V = np.linalg.eigh(0.5 * (f.info + f.info.T))
    keep = lam > max(lam.max(), 0.0) * 1e-8 if lam.size else lam > 0
    sd = np.where(keep, sigma / np.sqrt(np.where(keep, lam, 1.0)), 0.0)
    eps = rng.standard_normal((n_draws, p))
    theta = f.theta + (eps * sd) @ V.T
    theta = np.clip(theta, f.theta_lo, f.theta_hi)
    return from_theta(model, theta)


@dataclass
class EnsembleDraws:
    """Precomputed parameter draws of an ensemble: the expensive part, done once."""

    models: list[str]
    params: list[np.ndarray]  # per model (S_m, p)
    scales: list[float]
    sigma: np.ndarray  # per draw noise SD (log scale), concatenated over models
    offset: float

    def log_curves(self, t: np.ndarray, exposure: Exposure | None, noise: np.ndarray | None = None) -> np.ndarray:
        """ln(size + c) for every draw at times t: (S, n)."""
        blocks = []
        for name, P, s in zip(self.models, self.params, self.scales):
            if len(P):
                y = s * get_model(name).predict(t, P, exposure)
                blocks.append(np.log(np.maximum(np.nan_to_num(y, nan=0.0, posinf=1e12), 0.0) + self.offset))
        z = np.vstack(blocks) if blocks else np.empty((0, np.size(t)))
        if noise is not None:
            z = z + noise[:, None] * self.sigma[:, None]
        return z


def ensemble_draws(sf: SeriesFit, n_draws: int = 400, seed: int = 0, weights: dict[str, float] | None = None,
                   sigma0: float = SIGMA0, nu0: float = NU0) -> EnsembleDraws:
    """Allocate draws to models by Akaike weight (or by the given ``weights``)."""
    rng = np.random.default_rng(seed)
    wd = weights if weights is not None else {m: f.akaike_weight for m, f in sf.fits.items()}
    names = [m for m, w in wd.items() if w > 0 and m in sf.fits and np.isfinite(sf.fits[m].rss)]
    w = np.array([wd[m] for m in names], float)
    counts = rng.multinomial(n_draws, w / w.sum()) if w.size and w.sum() > 0 else np.zeros(0, int)
    params, scales, sig = [], [], []
    for m, c in zip(names, counts):
        f = sf.fits[m]
        s = pooled_sigma(f, sigma0, nu0)
        params.append(draw_params(f, int(c), rng, s))
        scales.append(f.scale)
        sig.append(np.full(int(c), s))
    return EnsembleDraws(names, params, scales, np.concatenate(sig) if sig else np.zeros(0),
                         float(sf.options.offset))


def _robust_quantiles(z: np.ndarray) -> np.ndarray:
    """2.5/10/50/90/97.5 % points of a normal with the draws' median and IQR-based SD.

    Why not raw quantiles: a mixture over models has heavy tails (one model extrapolating
    wildly), which would set the width for every patient; the IQR ignores those tails and the
    calibration factor then sets the level empirically.
    """
    q25, med, q75 = np.quantile(z, [0.25, 0.5, 0.75], axis=0)
    sd = (q75 - q25) / 1.349
    return np.array([med - 1.959964 * sd, med - 1.281552 * sd, med, med + 1.281552 * sd, med + 1.959964 * sd])


def bands(z: np.ndarray, offset: float, calibration: Calibration | None = None) -> dict[str, np.ndarray]:
    """Quantile bands from log-scale draws, stretched about the median by the calibration."""
    cal = calibration or Calibration()
    q = _robust_quantiles(z)
    med = q[2]
    back = lambda v: np.maximum(np.exp(v) - offset, 0.0)  # noqa: E731
    return {"median": back(med),
            "lo80": back(med - cal.s80 * (med - q[1])), "hi80": back(med + cal.s80 * (q[3] - med)),
            "lo95": back(med - cal.s95 * (med - q[0])), "hi95": back(med + cal.s95 * (q[4] - med))}


def prediction_intervals(sf: SeriesFit, t_days: Sequence[float], calibration: Calibration | None = None,
                         n_draws: int = 400, seed: int = 0, exposure: Exposure | None = None) -> Intervals:
    """Forecast with calibrated 80 %/95 % prediction intervals (new measurements, noise included)."""
    t = np.atleast_1d(np.asarray(t_days, float))
    mean = sf.predict_mean(t, exposure)
    nan = np.full(t.shape, np.nan)
    if sf.series.status == STATUS_CONSTANT or not sf.fits or not np.isfinite(mean).all():
        return Intervals(t, mean, mean.copy(), nan, nan.copy(), nan.copy(), nan.copy())
    ed = ensemble_draws(sf, n_draws, seed)
    rng = np.random.default_rng(seed + 1)
    z = ed.log_curves(t, exposure if exposure is not None else sf.exposure,
                      noise=rng.standard_normal(ed.sigma.size))
    b = bands(z, ed.offset, calibration)
    return Intervals(t, mean, b["median"], b["lo80"], b["hi80"], b["lo95"], b["hi95"])


def _ratio(z_obs: float, med: float, lo: float, hi: float) -> float:
    half = (hi - med) if z_obs >= med else (med - lo)
    return abs(z_obs - med) / half if half > 1e-12 else (0.0 if abs(z_obs - med) < 1e-12 else math.inf)


def calibrate(cases: Iterable[tuple[SeriesFit, float, float]], n_draws: int = 400, seed: int = 0,
              target80: float = 0.80, target95: float = 0.95) -> Calibration:
    """Learn the stretch factors from (fit without last visit, last day, last value) cases."""
    r80, r95 = [], []
    for sf, t_next, y_next in cases:
        if not sf.fits or sf.series.status == STATUS_CONSTANT:
            continue
        ed = ensemble_draws(sf, n_draws, seed)
        if ed.sigma.size == 0:
            continue
        rng = np.random.default_rng(seed + 1)
        z = ed.log_curves(np.array([t_next], float), sf.exposure, noise=rng.standard_normal(ed.sigma.size))[:, 0]
        q = _robust_quantiles(z[:, None])[:, 0]
        zo = math.log(y_next + ed.offset)
        r80.append(_ratio(zo, q[2], q[1], q[3]))
        r95.append(_ratio(zo, q[2], q[0], q[4]))
    if not r80:
        return Calibration()
    r80a, r95a = np.array(r80), np.array(r95)
    return Calibration(float(np.quantile(r80a, target80)), float(np.quantile(r95a, target95)), len(r80),
                       float(np.mean(r80a <= 1.0)), float(np.mean(r95a <= 1.0)))
