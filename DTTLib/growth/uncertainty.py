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

Forecasts beyond the last visit (when the calibration carries a learned ``blend``): on these
data "last observation carried forward" (LOCF) is a strong baseline, so the forecast is a
*stacked* one, on the log scale ``z = ln(size + c)``:

    z_forecast = w · z_last + (1 − w) · z_ensemble,   w = logistic(β · features(n, horizon))

with β learned on held-out last visits of training patients (``learn_blend``). Its intervals
come from the residuals of that blended forecast on the same training cases: lower and upper
ends ``z_forecast + q · s``, where the spread ``s = exp(α · features)`` is the maximum-likelihood
scale of a Laplace model of the log residual and grows with the horizon, the patient's
visit-to-visit volatility, the disagreement between ensemble and last value and the size; the
lower and upper ``q`` are the empirical 10 % / 90 % (2.5 % / 97.5 %) points of residual / s,
learned apart so the band can be skewed. The older symmetric recipe, direct quantile regression
of each tail and residuals in mm are options of ``learn_spread``. Every number is stored in the
calibration and reported with each forecast (``Intervals.weight_last`` etc.).

Extrapolation guard: ``s`` is exponential in its features, so a case beyond the training cases
(an ensemble that runs far from the last value) would get an absurd band. ``learn_spread``
records the 1st–99th percentile range of each feature on its training cases and every spread,
in learning and in prediction, is computed at the features clipped to that range (the horizon
excepted, see ``GUARD_EXEMPT``). Calibrations stored without a range are not clipped.
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


BLEND_FEATURES = ("1", "ln(n)", "ln(h/60d)")
SPREAD_FEATURES = ("1", "ln(h/60d)", "ln(vol+0.01)", "|z_ens-z_last|", "z_last")
QUANTILE_KEYS = ("lo95", "lo80", "hi80", "hi95")
RIDGE = 1e-3  # weak L2 penalty on learned coefficients (β, and α except its intercept)
# extrapolation guard of the spread: features are clipped to these percentiles of the training
# cases. Percentiles, not min/max: the extreme training case is a single series (here the one whose
# ensemble ran farthest from its last value), and exp(α·x) is not supported by data out there; the
# 1st/99th percentiles are backed by a few cases each side of ~240 (tuning half) or ~480.
GUARD_PERCENTILES = (1.0, 99.0)
# not clipped: the constant, and the horizon — s grows with it as a power (h^α), not a runaway, and
# freezing it would stop a long-range band from widening where the data say least
GUARD_EXEMPT = ("1", "ln(h/60d)", "ln(n)")


@dataclass
class Calibration:
    """How forecasts are formed and widened, learned on held-out last visits.

    ``s80``/``s95``: half-width multipliers for the draw-based bands (used within the observed
    period and by what-if scenarios; 1.0 = uncalibrated). ``blend``: ``{"features": [...],
    "beta": [...]}`` for the weight of the last observation in forecasts; ``spread``:
    ``{"features": [...], "alpha": [...], "q": {lo95, lo80, hi80, hi95}}`` for the residual
    intervals of the blended forecast. Without ``blend`` forecasts are the plain ensemble.
    """

    s80: float = 1.0
    s95: float = 1.0
    n_cases: int = 0
    raw_coverage80: float = math.nan
    raw_coverage95: float = math.nan
    blend: dict | None = None
    spread: dict | None = None

    def to_dict(self) -> dict:
        d = {"s80": self.s80, "s95": self.s95, "n_cases": self.n_cases,
             "raw_coverage80": self.raw_coverage80, "raw_coverage95": self.raw_coverage95}
        if self.blend is not None:
            d["blend"] = self.blend
        if self.spread is not None:
            d["spread"] = self.spread
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        return cls(float(d.get("s80", 1.0)), float(d.get("s95", 1.0)), int(d.get("n_cases", 0)),
                   float(d.get("raw_coverage80", math.nan)), float(d.get("raw_coverage95", math.nan)),
                   d.get("blend"), d.get("spread"))


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
    ensemble_mean: np.ndarray | None = None  # the Akaike ensemble alone
    weight_last: np.ndarray | None = None  # w of the last observation (0 where not blended)
    method: list[str] | None = None  # per time: "fit" (draw bands) or "blend" (residual bands)


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


def _features(names: Sequence[str], n: float, h: np.ndarray, vol: float, dis: np.ndarray,
              z_last: float = 0.0) -> np.ndarray:
    """Design matrix (len(h), len(names)) of the named forecast features: n visits, horizon h
    (days after the last visit), volatility, |ln-scale disagreement ensemble − last value|, and
    z_last = ln(last value + c) (relative error shrinks with size: measurements are in whole mm)."""
    h = np.maximum(np.asarray(h, float), 1.0)
    cols = {"1": np.ones_like(h), "ln(n)": np.full_like(h, math.log(max(n, 1))), "ln(h/60d)": np.log(h / 60.0),
            "ln(vol+0.01)": np.full_like(h, math.log(vol + 0.01)), "|z_ens-z_last|": np.abs(np.asarray(dis, float)),
            "z_last": np.full_like(h, z_last)}
    return np.column_stack([cols[k] for k in names])


def volatility(t: np.ndarray, y: np.ndarray, offset: float) -> float:
    """RMS change of ln(size + c) between consecutive visits, per √(60 days)."""
    t = np.asarray(t, float)
    z = np.log(np.asarray(y, float) + offset)
    if t.size < 2:
        return 0.0
    dz = np.diff(z) / np.sqrt(np.maximum(np.diff(t), 1.0) / 60.0)
    return float(np.sqrt(np.mean(dz ** 2)))


def blend_weight(cal: Calibration, n: int, h) -> np.ndarray:
    """Weight of the last observation at horizons ``h`` (days after the last visit)."""
    X = _features(cal.blend["features"], n, np.atleast_1d(h), 0.0, np.zeros(np.size(h)))
    return 1.0 / (1.0 + np.exp(-(X @ np.asarray(cal.blend["beta"], float))))


def blended_forecast(sf: SeriesFit, t_days: Sequence[float], cal: Calibration,
                     exposure: Exposure | None = None) -> dict[str, np.ndarray]:
    """The stacked forecast and its residual intervals at times after the last visit."""
    t = np.atleast_1d(np.asarray(t_days, float))
    c = float(sf.options.offset)
    s = sf.series
    h = t - s.t[-1]
    ens = sf.predict_mean(t, exposure)
    z_last = math.log(s.y[-1] + c)
    z_ens = np.log(np.maximum(np.where(np.isfinite(ens), ens, s.y[-1]), 0.0) + c)
    w = blend_weight(cal, s.n, h)
    z = w * z_last + (1.0 - w) * z_ens
    out = {"mean": np.maximum(np.exp(z) - c, 0.0), "weight_last": w, "ensemble_mean": ens}
    if cal.spread is not None:
        X = _features(cal.spread["features"], s.n, h, volatility(s.t, s.y, c), z_ens - z_last, z_last)
        out.update(spread_bounds(cal.spread, X, z, c))
    return out


def prediction_intervals(sf: SeriesFit, t_days: Sequence[float], calibration: Calibration | None = None,
                         n_draws: int = 400, seed: int = 0, exposure: Exposure | None = None) -> Intervals:
    """Forecast with calibrated 80 %/95 % prediction intervals (new measurements, noise included).

    Up to the last visit: the Akaike ensemble with draw-based bands. After it, when the
    calibration has a learned ``blend``: the stacked forecast with residual bands (see above).
    """
    t = np.atleast_1d(np.asarray(t_days, float))
    ens = sf.predict_mean(t, exposure)
    mean = ens.copy()
    nan = np.full(t.shape, np.nan)
    lo80, hi80, lo95, hi95, med = nan.copy(), nan.copy(), nan.copy(), nan.copy(), mean.copy()
    w = np.zeros(t.shape)
    method = ["fit"] * t.size
    drawable = sf.series.status != STATUS_CONSTANT and sf.fits and np.isfinite(ens).all()
    if drawable:
        ed = ensemble_draws(sf, n_draws, seed)
        rng = np.random.default_rng(seed + 1)
        z = ed.log_curves(t, exposure if exposure is not None else sf.exposure,
                          noise=rng.standard_normal(ed.sigma.size))
        b = bands(z, ed.offset, calibration)
        med, lo80, hi80, lo95, hi95 = b["median"], b["lo80"], b["hi80"], b["lo95"], b["hi95"]
    cal = calibration
    fut = t > sf.series.t[-1] if sf.series.n else np.zeros(t.shape, bool)
    if cal is not None and cal.blend is not None and fut.any() and sf.series.n and \
            (sf.series.status == STATUS_CONSTANT or np.isfinite(ens[fut]).all()):
        bf = blended_forecast(sf, t[fut], cal, exposure)
        mean[fut] = bf["mean"]
        med[fut] = bf["mean"]
        w[fut] = bf["weight_last"]
        if cal.spread is not None:
            lo95[fut], lo80[fut], hi80[fut], hi95[fut] = bf["lo95"], bf["lo80"], bf["hi80"], bf["hi95"]
        for i in np.flatnonzero(fut):
            method[i] = "blend"
    return Intervals(t, mean, med, lo80, hi80, lo95, hi95, ens, w, method)


def _nelder_mead(fun, x0: np.ndarray) -> np.ndarray:
    from scipy.optimize import minimize
    return minimize(fun, x0, method="Nelder-Mead", options={"maxiter": 4000, "xatol": 1e-5, "fatol": 1e-8}).x


SPREAD_METHODS = ("laplace", "quantile")
SPREAD_TAILS = ("symmetric", "two")
SPREAD_SCALES = ("log", "data")


@dataclass
class ForecastCases:
    """Held-out last visits of training patients as arrays: n visits used, horizon h (days), the
    last value, the ensemble forecast and the observation on z = ln(size + c), volatility, c.
    ``evaluable``: the forecast exists in ``prediction_intervals`` (finite ensemble or constant)."""

    n: np.ndarray
    h: np.ndarray
    z_last: np.ndarray
    z_ens: np.ndarray
    z_obs: np.ndarray
    vol: np.ndarray
    c: np.ndarray
    evaluable: np.ndarray

    def __len__(self) -> int:
        return int(self.n.size)

    def take(self, idx) -> "ForecastCases":
        return ForecastCases(*(getattr(self, k)[idx] for k in ("n", "h", "z_last", "z_ens", "z_obs", "vol", "c",
                                                                "evaluable")))

    @property
    def y_obs(self) -> np.ndarray:
        return np.exp(self.z_obs) - self.c


def forecast_cases(cases: Iterable[tuple[SeriesFit, float, float]]) -> ForecastCases:
    """Arrays of the usable (fit without the last visit, last day, last value) cases."""
    rows = []
    for sf, t_next, y_next in cases:
        s = sf.series
        if s.n == 0 or not (t_next > s.t[-1]) or not (sf.fits or s.status == STATUS_CONSTANT):
            continue
        e = float(sf.predict_mean([t_next])[0])
        c = float(sf.options.offset)
        ok = s.status == STATUS_CONSTANT or math.isfinite(e)
        rows.append((s.n, t_next - s.t[-1], math.log(s.y[-1] + c), math.log(max(e if math.isfinite(e) else s.y[-1], 0.0) + c),
                     math.log(y_next + c), volatility(s.t, s.y, c), c, ok))
    if not rows:
        return ForecastCases(*(np.zeros(0) for _ in range(7)), np.zeros(0, bool))
    cols = list(zip(*rows))
    return ForecastCases(*(np.array(v, float) for v in cols[:7]), np.array(cols[7], bool))


def _blend_design(fc: ForecastCases, features: Sequence[str]) -> np.ndarray:
    return np.vstack([_features(features, ni, [hi], 0.0, [0.0]) for ni, hi in zip(fc.n, fc.h)]) \
        if len(fc) else np.zeros((0, len(features)))


def feature_guard(X: np.ndarray, features: Sequence[str]) -> dict:
    """The training range (``GUARD_PERCENTILES``) of every feature, and which ones are clipped."""
    lo, hi = np.percentile(X, GUARD_PERCENTILES, axis=0) if len(X) else (np.full(len(features), -np.inf),
                                                                      np.full(len(features), np.inf))
    return {"percentiles": list(GUARD_PERCENTILES),
            "range": {f: [float(a), float(b)] for f, a, b in zip(features, lo, hi)},
            "clipped": [f for f in features if f not in GUARD_EXEMPT]}


def clip_features(spread: dict, X: np.ndarray) -> np.ndarray:
    """X with each guarded feature clipped to its training range (unchanged without a ``guard``)."""
    g = spread.get("guard")
    if not g:
        return X
    X = np.array(X, float, copy=True)
    for j, f in enumerate(spread["features"]):
        if f in g["clipped"]:
            lo, hi = g["range"][f]
            X[:, j] = np.clip(X[:, j], lo, hi)
    return X


def spread_design(fc: ForecastCases, features: Sequence[str]) -> np.ndarray:
    return np.vstack([_features(features, ni, [hi], vi, [di], zli) for ni, hi, vi, di, zli in
                      zip(fc.n, fc.h, fc.vol, fc.z_ens - fc.z_last, fc.z_last)]) \
        if len(fc) else np.zeros((0, len(features)))


def learn_beta(fc: ForecastCases, features: Sequence[str] = BLEND_FEATURES) -> tuple[np.ndarray, float]:
    """β of the blend weight: minimises the mean absolute error (data units), weak ridge."""
    Xb = _blend_design(fc, features)
    yv = fc.y_obs

    def loss(beta):
        w = 1.0 / (1.0 + np.exp(-(Xb @ beta)))
        return float(np.mean(np.abs(np.exp(w * fc.z_last + (1 - w) * fc.z_ens) - fc.c - yv)))

    # a weak ridge (RIDGE·|β|²) keeps β finite when the error surface is flat (small samples)
    beta = _nelder_mead(lambda b: loss(b) + RIDGE * float(b @ b), np.zeros(Xb.shape[1]))
    return beta, loss(beta)


def blend_center(fc: ForecastCases, beta: Sequence[float], features: Sequence[str] = BLEND_FEATURES) -> np.ndarray:
    """The blended forecast on z = ln(size + c) for every case."""
    w = 1.0 / (1.0 + np.exp(-(_blend_design(fc, features) @ np.asarray(beta, float))))
    return w * fc.z_last + (1 - w) * fc.z_ens


def _log_quantile_regression(X: np.ndarray, v: np.ndarray, tau: float) -> np.ndarray:
    """Linear τ-quantile regression of ln v on X (v > 0), as a linear programme.

    Quantiles commute with monotone maps, so exp(X·α) is the τ-quantile of v itself: the
    spread is fitted directly for the coverage it must give (pinball loss), not via a
    distribution's scale times a quantile.
    """
    from scipy.optimize import linprog
    m, p = X.shape
    y = np.log(v)
    # min τ·1ᵀu + (1−τ)·1ᵀw  s.t.  Xα + u − w = y,  u, w ≥ 0,  α free
    cost = np.concatenate([np.zeros(p), np.full(m, tau), np.full(m, 1.0 - tau)])
    A = np.hstack([X, np.eye(m), -np.eye(m)])
    res = linprog(cost, A_eq=A, b_eq=y, bounds=[(None, None)] * p + [(0, None)] * (2 * m), method="highs")
    if not res.success:  # should not happen (always feasible); fall back to a constant quantile
        a = np.zeros(p)
        a[0] = float(np.quantile(y, tau))
        return a
    return res.x[:p]


def learn_spread(fc: ForecastCases, center_z: np.ndarray, features: Sequence[str] = SPREAD_FEATURES,
                 method: str = "laplace", tails: str = "symmetric", scale: str = "log") -> dict:
    """Residual intervals around ``center_z`` learned on training cases.

    ``scale``: residuals on z = ln(size + c) ("log") or in data units ("data", mm).
    ``method``: "laplace" — s = exp(α·x) is the maximum-likelihood scale of a Laplace model of the
    residuals, q empirical quantiles of residual / s; "quantile" — exp(α·x) is fitted directly as
    the conditional 80 % quantile (pinball loss): of |r| ("symmetric"), or of r and −r separately
    at 90 % ("two", one α per side). ``tails``: "symmetric" — ±q from |r|/s; "two" — the lower
    and upper quantiles of r/s are learned separately (skewed errors). α and q are learned at the
    features clipped to their training range (``feature_guard``), exactly as they are applied.
    """
    if method not in SPREAD_METHODS or tails not in SPREAD_TAILS or scale not in SPREAD_SCALES:
        raise ValueError(f"unknown spread {method}/{tails}/{scale}")
    X_raw = spread_design(fc, features)
    guard = feature_guard(X_raw, features)
    X = clip_features({"features": list(features), "guard": guard}, X_raw)
    if scale == "log":
        r = fc.z_obs - center_z
    else:
        r = fc.y_obs - (np.exp(center_z) - fc.c)
    ar = np.abs(r)
    eps = 1e-4 if scale == "log" else 1e-2
    out: dict = {"features": list(features), "method": method, "tails": tails, "scale": scale}
    if method == "laplace":
        slopes = np.array([f != "1" for f in features])

        def nll(a):  # Laplace negative log-likelihood (per case, constants dropped)
            ls = np.clip(X @ a, -20, 20)
            return float(np.mean(ls + ar / np.exp(ls))) + RIDGE * float(a[slopes] @ a[slopes])

        a0 = np.zeros(X.shape[1])
        if "1" in features:
            a0[list(features).index("1")] = math.log(max(float(np.mean(ar)), 1e-4))
        alpha = _nelder_mead(nll, a0)
        a_lo = a_hi = alpha
        out["alpha"] = [float(v) for v in alpha]
    elif tails == "symmetric":
        alpha = _log_quantile_regression(X, np.maximum(ar, eps), 0.80)
        a_lo = a_hi = alpha
        out["alpha"] = [float(v) for v in alpha]
    else:
        a_lo = _log_quantile_regression(X, np.maximum(-r, eps), 0.90)
        a_hi = _log_quantile_regression(X, np.maximum(r, eps), 0.90)
        out["alpha_lo"] = [float(v) for v in a_lo]
        out["alpha_hi"] = [float(v) for v in a_hi]
    s_lo, s_hi = np.exp(X @ a_lo), np.exp(X @ a_hi)
    if tails == "symmetric":
        q80, q95 = (float(v) for v in np.quantile(ar / s_hi, [0.80, 0.95]))
        q = {"lo95": -q95, "lo80": -q80, "hi80": q80, "hi95": q95}
    else:
        lo95, lo80 = (float(v) for v in np.quantile(r / s_lo, [0.025, 0.10]))
        hi80, hi95 = (float(v) for v in np.quantile(r / s_hi, [0.90, 0.975]))
        q = {"lo95": lo95, "lo80": lo80, "hi80": hi80, "hi95": hi95}
    out["q"] = q
    out["n_cases"] = len(fc)
    out["guard"] = guard
    return out


def spread_bounds(spread: dict, X: np.ndarray, center_z: np.ndarray, c) -> dict[str, np.ndarray]:
    """lo95/lo80/hi80/hi95 in data units from a learned ``spread`` (see ``learn_spread``); the
    features are clipped to the stored training range first (``clip_features``)."""
    X = clip_features(spread, X)
    a_hi = np.asarray(spread.get("alpha_hi", spread.get("alpha")), float)
    a_lo = np.asarray(spread.get("alpha_lo", spread.get("alpha")), float)
    s_lo, s_hi = np.exp(X @ a_lo), np.exp(X @ a_hi)
    out = {}
    for k in QUANTILE_KEYS:
        sk = s_lo if k.startswith("lo") else s_hi
        qk = float(spread["q"][k])
        if spread.get("scale", "log") == "data":
            out[k] = np.maximum(np.exp(center_z) - c + qk * sk, 0.0)
        else:
            out[k] = np.maximum(np.exp(center_z + qk * sk) - c, 0.0)
    return out


def snap_to_grain(lo: np.ndarray, hi: np.ndarray, grain: float) -> tuple[np.ndarray, np.ndarray]:
    """The interval of possible measurements on a ``grain`` grid (e.g. whole mm) inside [lo, hi].

    A whole-mm measurement lies in [lo, hi] exactly when it lies in [⌈lo⌉, ⌊hi⌋], so coverage is
    unchanged and the width is that of the values that can actually be reported. An interval
    with no grid point inside is returned as that grid point nearest its middle.
    """
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    a = np.ceil(lo / grain - 1e-9) * grain
    b = np.floor(hi / grain + 1e-9) * grain
    empty = a > b
    mid = np.round((lo + hi) / 2 / grain) * grain
    return np.where(empty, mid, a), np.where(empty, mid, b)


def learn_blend(cases: Iterable[tuple[SeriesFit, float, float]], base: Calibration | None = None,
                blend_features: Sequence[str] = BLEND_FEATURES,
                spread_features: Sequence[str] = SPREAD_FEATURES, method: str = "laplace",
                tails: str = "two", scale: str = "log") -> Calibration:
    """Learn the stacked forecast and its residual intervals from (fit without the last visit,
    last day, last value) cases — training patients only.

    β minimises the mean absolute error (data units) of the blended forecast (Nelder–Mead from
    β = 0, i.e. w = ½). The intervals are learned on the residuals of that forecast by
    ``learn_spread``; the default (one Laplace scale, lower and upper quantiles learned apart, log
    scale) was chosen in review after the 16-recipe comparison, not by its pre-registered rule
    (which picked method="quantile", tails="two"), and kept after the extrapolation guard was added
    (by a rule fixed before that run); see docs/VALIDATION.md.
    """
    fc = forecast_cases(cases)
    base = base or Calibration()
    if len(fc) < 10:
        return base
    beta, mae = learn_beta(fc, blend_features)
    spread = learn_spread(fc, blend_center(fc, beta, blend_features), spread_features, method, tails, scale)
    return Calibration(base.s80, base.s95, base.n_cases or len(fc), base.raw_coverage80, base.raw_coverage95,
                       {"features": list(blend_features), "beta": [float(v) for v in beta], "n_cases": len(fc),
                        "train_mean_abs_err": mae}, spread)


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
