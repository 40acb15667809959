"""Multi-start bounded least-squares fits, information criteria and the Akaike ensemble.

Error model: proportional (with a small additive floor). Tumour sizes are positive and their
measurement error grows with size, so residuals are taken on the log scale,
``r = ln(y + c) − ln(ŷ + c)``, with ``c`` (default 1 mm or 1 mm³) keeping 0 mm (complete
response) finite and acting as the additive part of a combined error model. Every model is
scored on the same transformed data, so AIC/BIC are comparable across models.

Multi-start: a deterministic centre start plus seeded random starts drawn from the
initial-guess ranges of models.json (seed from the options and the model name), so the same
input always gives the same fit. Parameters declared ``log`` are searched in log space.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.optimize import least_squares

from DTTLib.growth import criteria
from DTTLib.growth.models import Exposure, GrowthModel, get_model
from DTTLib.growth.series import STATUS_CONSTANT, Series, clean_series


@dataclass
class FitOptions:
    """Knobs for fitting; defaults suit sizes in mm or mm³ measured every few weeks."""

    unit: str = "mm"  # "mm" diameters, "mm3" volumes
    offset: float = 1.0  # c in ln(y + c), in the data's unit
    n_starts: int = 6
    seed: int = 0
    max_nfev: int = 200
    criterion: str = "auto"  # "auto" = AICc where any model has one, else AIC; or "aic"/"aicc"/"bic"
    fixed: dict[str, float] = field(default_factory=dict)  # e.g. {"y0": 1.0}: known size at day 0


@dataclass
class Prior:
    """Gaussian prior on the search-space parameters (NaN mean = no prior on that one)."""

    mean: np.ndarray
    sd: np.ndarray
    sigma: float  # population residual SD on the log scale, weighs prior vs data


@dataclass
class ModelFit:
    """One model fitted to one series."""

    model: str
    params: dict[str, float]
    theta: np.ndarray  # optimum in search space (log where the parameter is log)
    theta_lo: np.ndarray
    theta_hi: np.ndarray
    info: np.ndarray  # JᵀJ at the optimum (search space, prior rows included)
    rss: float  # data part only, log scale
    n: int
    k: int  # parameters + 1 (error variance)
    aic: float
    aicc: float
    bic: float
    converged: bool
    message: str
    scale: float = 1.0  # first observed value for normalised models, else 1
    n_agree: int = 0  # starts that reached the best cost
    used_prior: bool = False
    akaike_weight: float = 0.0

    @property
    def sigma(self) -> float:
        """Residual SD on the log scale (proportional error)."""
        return math.sqrt(self.rss / max(self.n - len(self.theta), 1))

    def predict(self, t_days, exposure: Exposure | None = None) -> np.ndarray:
        m = get_model(self.model)
        return self.scale * m.predict(t_days, np.array(list(self.params.values())), exposure)


@dataclass
class SeriesFit:
    """All model fits for one series, the ensemble weights and the selected model."""

    series: Series
    fits: dict[str, ModelFit] = field(default_factory=dict)
    criterion: str = "aic"
    selected: str | None = None
    options: FitOptions = field(default_factory=FitOptions)
    exposure: Exposure | None = None

    @property
    def status(self) -> str:
        if self.series.fittable and not any(f.akaike_weight > 0 for f in self.fits.values()):
            return "fit failed"
        return self.series.status

    @property
    def weights(self) -> dict[str, float]:
        return {k: f.akaike_weight for k, f in self.fits.items()}

    def predict_mean(self, t_days, exposure: Exposure | None = None) -> np.ndarray:
        """Akaike-weighted ensemble mean; a constant series forecasts its value; else NaN."""
        t = np.asarray(t_days, float)
        if self.series.status == STATUS_CONSTANT:
            return np.full(t.shape, self.series.y[-1])
        out = np.zeros(t.shape)
        total = 0.0
        ex = exposure if exposure is not None else self.exposure
        for f in self.fits.values():
            if f.akaike_weight > 0:
                out = out + f.akaike_weight * np.nan_to_num(f.predict(t, ex), nan=0.0)
                total += f.akaike_weight
        return out / total if total > 0 else np.full(t.shape, np.nan)


def _to_theta(model: GrowthModel, p: np.ndarray) -> np.ndarray:
    logs = np.array([s.log for s in model.params])
    return np.where(logs, np.log(np.maximum(p, 1e-300)), p)


def from_theta(model: GrowthModel, theta: np.ndarray) -> np.ndarray:
    """Search space → natural parameters; works on (p,) and (S, p)."""
    logs = np.array([s.log for s in model.params])
    return np.where(logs, np.exp(np.clip(theta, -700, 700)), theta)


def _search_space(model: GrowthModel, y_ref: float):
    lo, hi = model.bounds(y_ref)
    tlo, thi = _to_theta(model, lo), _to_theta(model, hi)
    s = np.array([y_ref if p.scale == "value" else 1.0 for p in model.params])
    ilo = _to_theta(model, np.array([p.init[0] for p in model.params]) * s)
    ihi = _to_theta(model, np.array([p.init[1] for p in model.params]) * s)
    return tlo, thi, ilo, ihi


def _failed(model: GrowthModel, n: int, message: str, tlo, thi) -> ModelFit:
    p = len(model.params)
    nan = np.full(p, np.nan)
    return ModelFit(model.name, {k: math.nan for k in model.param_names}, nan, tlo, thi, np.zeros((p, p)),
                    math.inf, n, p + 1, math.inf, math.inf, math.inf, False, message)


def fit_model(model: GrowthModel | str, t: np.ndarray, y: np.ndarray, options: FitOptions | None = None,
              exposure: Exposure | None = None, prior: Prior | None = None) -> ModelFit:
    """Fit one model to one clean series (numeric, sorted, ≥ 1 point)."""
    model = get_model(model) if isinstance(model, str) else model
    opts = options or FitOptions()
    t = np.asarray(t, float)
    y = np.asarray(y, float)
    n = t.size
    y_ref = float(np.max(y)) if np.max(y) > 0 else 1.0
    tlo, thi, ilo, ihi = _search_space(model, y_ref)
    for i, p in enumerate(model.params):  # a known value: pin it (bounds a hair apart)
        if p.name in opts.fixed:
            v = float(_to_theta(model, np.array([opts.fixed[p.name] if j == i else 1.0 for j in range(len(model.params))]))[i])
            w = 1e-9 * max(abs(v), 1.0)
            tlo[i], thi[i], ilo[i], ihi[i] = v - w, v + w, v - w, v + w
    scale = 1.0
    if model.normalized:
        scale = float(y[0])
        if not scale > 0:
            return _failed(model, n, "first value is 0: cannot normalise", tlo, thi)
    c = float(opts.offset)
    z = np.log(y + c)
    has_prior = prior is not None and np.isfinite(prior.mean).any()
    if has_prior:
        pm = np.isfinite(prior.mean) & np.isfinite(prior.sd) & (prior.sd > 0)
        pw = prior.sigma / np.where(pm, prior.sd, 1.0)
        pmean = np.where(pm, prior.mean, 0.0)

    def resid_data(theta):
        pred = scale * model.predict(t, from_theta(model, theta), exposure)
        r = z - np.log(np.maximum(pred, 0.0) + c)
        return np.where(np.isfinite(r), r, 50.0)

    def resid(theta):
        r = resid_data(theta)
        if has_prior:
            r = np.concatenate([r, (pw * (theta - pmean))[pm]])
        return r

    span = thi - tlo
    eps = 1e-9 * np.maximum(span, 1.0)
    rng = np.random.default_rng([int(opts.seed), zlib.crc32(model.name.encode())])
    starts = [0.5 * (ilo + ihi)]
    if has_prior:
        starts.append(np.where(pm, pmean, starts[0]))
    for _ in range(max(opts.n_starts - len(starts), 0)):
        starts.append(ilo + rng.random(ilo.size) * (ihi - ilo))
    results = []
    for x0 in starts:
        x0 = np.clip(x0, tlo + eps, thi - eps)
        try:
            res = least_squares(resid, x0, bounds=(tlo, thi), method="trf", max_nfev=opts.max_nfev,
                                x_scale=1.0)
        except (ValueError, FloatingPointError) as exc:  # pragma: no cover - defensive
            results.append((math.inf, None, str(exc)))
            continue
        results.append((float(np.sum(res.fun ** 2)), res, res.message))
    best_cost, best, msg = min(results, key=lambda r: r[0])
    if best is None or not math.isfinite(best_cost):
        return _failed(model, n, f"no start converged: {msg}", tlo, thi)
    n_agree = sum(1 for c_, _, _ in results if c_ <= best_cost * (1 + 1e-4) + 1e-10)
    theta = best.x
    rss = float(np.sum(resid_data(theta) ** 2))
    k = len(model.params) - sum(p.name in opts.fixed for p in model.params) + 1
    J = best.jac
    info = J.T @ J
    converged = bool(best.success) and math.isfinite(rss)
    params = dict(zip(model.param_names, (float(v) for v in from_theta(model, theta))))
    return ModelFit(model.name, params, theta, tlo, thi, info, rss, n, k,
                    criteria.aic(rss, n, k), criteria.aicc(rss, n, k), criteria.bic(rss, n, k),
                    converged, str(msg), scale, n_agree, bool(has_prior))


def _weigh(fits: dict[str, ModelFit], criterion: str) -> str:
    if criterion == "auto":
        criterion = "aicc" if any(math.isfinite(f.aicc) for f in fits.values()) else "aic"
    w = criteria.akaike_weights([getattr(f, criterion) for f in fits.values()])
    for f, wi in zip(fits.values(), w):
        f.akaike_weight = float(wi)
    return criterion


def fit_series(series: Series, models: Sequence[str], options: FitOptions | None = None,
               exposure: Exposure | None = None, priors: dict[str, Prior] | None = None) -> SeriesFit:
    """Fit every model to a cleaned series; unfittable series come back with their status."""
    opts = options or FitOptions()
    out = SeriesFit(series, options=opts, exposure=exposure)
    if not series.fittable:
        return out
    for name in models:
        out.fits[name] = fit_model(name, series.t, series.y, opts, exposure,
                                   (priors or {}).get(name))
    out.criterion = _weigh(out.fits, opts.criterion)
    if any(f.akaike_weight > 0 for f in out.fits.values()):
        out.selected = max(out.fits, key=lambda k: out.fits[k].akaike_weight)
    return out


def fit_values(t: Sequence, y: Sequence, models: Sequence[str], name: str = "series",
               options: FitOptions | None = None, exposure: Exposure | None = None,
               priors: dict[str, Prior] | None = None) -> SeriesFit:
    """Clean raw values (text, NaN, "TOO SMALL TO MEASURE") then fit: the one-call entry point."""
    opts = options or FitOptions()
    return fit_series(clean_series(name, t, y, opts.unit), models, opts, exposure, priors)
