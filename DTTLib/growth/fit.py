"""Multi-start bounded least-squares fits, information criteria and the Akaike ensemble.

Error model: proportional (with a small additive floor). Tumour sizes are positive and their
measurement error grows with size, so residuals are taken on the log scale,
``r = ln(y + c) − ln(ŷ + c)``, with ``c`` (default 1 mm or 1 mm³) keeping 0 mm (complete
response) finite and acting as the additive part of a combined error model. Every model is
scored on the same transformed data, so AIC/BIC are comparable across models.

Multi-start: a deterministic centre start plus seeded random starts drawn from the
initial-guess ranges of models.json (seed from the options and the model name), so the same
input always gives the same fit. Parameters declared ``log`` are searched in log space.

Ensemble hygiene: a fit that did not converge, or whose curve runs away beyond the data
(``FitOptions.explosive_factor``), keeps its parameters and criteria but gets no Akaike weight;
``ModelFit.excluded`` says why. ``ModelFit.converged`` only says that the optimiser stopped normally;
``ModelFit.at_bound`` names the parameters whose optimum sits on the edge of their search range
(``AT_BOUND_RTOL``): there the data pull beyond the range, so the value is a limit rather than an
estimate. Such fits keep their Akaike weight: a bound is often a natural value (Stein ``g = 0``: no
regrowth; Claret ``lam = 0``: no resistance), and on the 464 fitted Laleh 2022 validation series
dropping them would move the held-out-visit ensemble forecast of 70 by more than 1 % and leave 3
without any fit (docs/VALIDATION.md, "Ensemble hygiene"). ``FitOptions.stein_convention="tumgr"`` fits the Stein models with
the R package tumgr's conventions (``fit_stein_tumgr``) for parity of g and d.
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


AT_BOUND_RTOL = 1e-4  # a parameter within this fraction of its search range (log scale where searched in
# log) of a bound is reported in ModelFit.at_bound


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
    # Stein models: "as_given" (times as given, proportional error on the data scale, comparable with
    # the other models) or "tumgr" (t = days since first measurement + 1, least squares on
    # f = value / first value, bounds [0, 1], start 0.00511: the R package tumgr's conventions, for
    # parity of g and d; such fits are reported but kept out of the ensemble — their likelihood is
    # on another scale)
    stein_convention: str = "as_given"
    # ensemble hygiene: fits that did not converge, or whose curve one observed span after the last
    # visit exceeds explosive_factor × the largest observed value (cubed for volumes), get weight 0
    # and a logged reason
    drop_unconverged: bool = True
    explosive_factor: float = 10.0


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
    convention: str = "as_given"  # "tumgr": fitted with tumgr's conventions (see FitOptions)
    t_shift: float = 0.0  # model time = day − t_shift (tumgr: first day − 1)
    value_shift: float = 0.0  # tumgr adds 0.5 to all sizes when the first is 0
    excluded: str = ""  # why this fit has no ensemble weight ("" = it competes)
    at_bound: tuple[str, ...] = ()  # free parameters whose optimum sits on a search bound (see AT_BOUND_RTOL)

    @property
    def sigma(self) -> float:
        """Residual SD on the log scale (proportional error)."""
        return math.sqrt(self.rss / max(self.n - len(self.theta), 1))

    def predict(self, t_days, exposure: Exposure | None = None) -> np.ndarray:
        m = get_model(self.model)
        if self.convention == "tumgr":  # tumgr's model has no therapy log
            tt = np.asarray(t_days, float) - self.t_shift
            return self.scale * m.predict(tt, np.array(list(self.params.values())), None) - self.value_shift
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


def params_at_bound(names: Sequence[str], theta: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                    fixed: Sequence[str] = (), rtol: float = AT_BOUND_RTOL) -> tuple[str, ...]:
    """Names of the free parameters within ``rtol`` × (hi − lo) of a bound, all in search space."""
    theta, lo, hi = (np.asarray(a, float) for a in (theta, lo, hi))
    tol = rtol * (hi - lo)
    near = np.isfinite(theta) & ((theta - lo <= tol) | (hi - theta <= tol))
    return tuple(n for n, b in zip(names, near) if b and n not in fixed)


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
    if model.normalized and opts.stein_convention == "tumgr":
        return fit_stein_tumgr(model, t, y, opts)
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
    # k: free parameters + the error variance. A normalised (Stein) model takes its size scale from
    # the first observed value, as tumgr does (np = 2 there); its residuals are on the same data
    # scale as every other model's — ln(value + c) of the raw values, its prediction multiplied back
    # by that first value — so its AIC/AICc is comparable; the scale is not counted (counting it would
    # make AICc infinite for Stein on 5 visits).
    k = len(model.params) - sum(p.name in opts.fixed for p in model.params) + 1
    J = best.jac
    info = J.T @ J
    converged = bool(best.success) and math.isfinite(rss)
    params = dict(zip(model.param_names, (float(v) for v in from_theta(model, theta))))
    return ModelFit(model.name, params, theta, tlo, thi, info, rss, n, k,
                    criteria.aic(rss, n, k), criteria.aicc(rss, n, k), criteria.bic(rss, n, k),
                    converged, str(msg), scale, n_agree, bool(has_prior),
                    at_bound=params_at_bound(model.param_names, theta, tlo, thi, tuple(opts.fixed)))


TUMGR_START = 0.00511  # tumgr's start value for g and d (and gt, dt)
TUMGR_PHI_START = 0.9  # tumgr's start for p = 1 − phi in its gdphi model


def fit_stein_tumgr(model: GrowthModel | str, t: np.ndarray, y: np.ndarray,
                    options: FitOptions | None = None) -> ModelFit:
    """Stein fit with tumgr's conventions (R package tumgr, ``gdrate``).

    tumgr: sort by date; time = date − first date + 1; f = size / first size (both + 0.5 when the
    first size is 0); unweighted nonlinear least squares of f on exp(−d·t) + exp(g·t) − 1 with
    bounds [0, 1] from the start g = d = 0.00511; AIC = −2·logLik + 2·np, np = number of model
    parameters (the variance not counted); AICc = AIC + 2np(np+1)/(n − np − 1).
    """
    model = get_model(model) if isinstance(model, str) else model
    opts = options or FitOptions()
    order = np.argsort(np.asarray(t, float), kind="stable")
    t = np.asarray(t, float)[order]
    y = np.asarray(y, float)[order]
    n, p = t.size, len(model.params)
    add = 0.5 if y[0] == 0 else 0.0
    scale = float(y[0] + add)
    tt = t - t[0] + 1.0
    f = (y + add) / scale
    tlo, thi = np.zeros(p), np.ones(p)

    def resid(theta):
        r = model.predict(tt, theta, None) - f
        return np.where(np.isfinite(r), r, 1e6)

    if model.name == "stein_phi":  # ours: phi·e^{gt} + (1−phi)·e^{−dt}; tumgr: p = 1 − phi
        x_start = np.array([TUMGR_START, TUMGR_START, 1.0 - TUMGR_PHI_START])
    else:
        x_start = np.full(p, TUMGR_START)
    rng = np.random.default_rng([int(opts.seed), zlib.crc32(model.name.encode()), 7])
    starts = [x_start] + [rng.random(p) * np.array([0.05] * min(p, 2) + [1.0] * max(p - 2, 0))
                          for _ in range(max(opts.n_starts - 1, 0))]
    best = None
    for x0 in starts:
        x0 = np.clip(x0, 1e-9, 1 - 1e-9)
        res = least_squares(resid, x0, bounds=(tlo, thi), method="trf", xtol=1e-14, ftol=1e-14, gtol=1e-14,
                            max_nfev=2000)
        if best is None or res.cost < best.cost:
            best = res
    rss = float(np.sum(resid(best.x) ** 2))
    ll = -0.5 * n * (math.log(2 * math.pi * max(rss, 1e-300) / n) + 1.0)
    aic_ = -2.0 * ll + 2.0 * p
    aicc_ = aic_ + 2.0 * p * (p + 1) / (n - p - 1) if n - p - 1 > 0 else math.inf
    bic_ = -2.0 * ll + p * math.log(n)
    params = dict(zip(model.param_names, (float(v) for v in best.x)))
    J = best.jac
    return ModelFit(model.name, params, best.x.copy(), tlo, thi, J.T @ J, rss, n, p, aic_, aicc_, bic_,
                    bool(best.success) and math.isfinite(rss), str(best.message), scale, 1, False, 0.0,
                    "tumgr", float(t[0] - 1.0), add,
                    "tumgr convention: least squares on value/first value, not comparable with the others",
                    params_at_bound(model.param_names, best.x, tlo, thi))


def _exclusion_reason(f: ModelFit, t: np.ndarray, y: np.ndarray, opts: FitOptions,
                      exposure: Exposure | None) -> str:
    """Why a fit should not enter the ensemble ("" = it may)."""
    if f.excluded:
        return f.excluded
    if not math.isfinite(f.rss):
        return "fit failed"
    if opts.drop_unconverged and not f.converged:
        return f"not converged ({f.message})"
    if opts.explosive_factor and opts.explosive_factor > 0 and t.size >= 2:
        span = max(float(t[-1] - t[0]), 1.0)
        day = float(t[-1]) + span
        v = float(f.predict(np.array([day]), exposure)[0])
        factor = opts.explosive_factor ** (3 if opts.unit == "mm3" else 1)
        limit = factor * float(np.max(y))
        if not math.isfinite(v) or v > limit:
            return (f"explosive: predicts {v:.4g} {opts.unit} on day {day:g} (one observed span after the last "
                    f"visit), more than {factor:g} × the largest observed value")
    return ""


def _weigh(fits: dict[str, ModelFit], criterion: str) -> str:
    ok = {k: f for k, f in fits.items() if not f.excluded}
    if criterion == "auto":
        criterion = "aicc" if any(math.isfinite(f.aicc) for f in ok.values()) else "aic"
    w = criteria.akaike_weights([getattr(f, criterion) if not f.excluded else math.inf for f in fits.values()])
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
        f = fit_model(name, series.t, series.y, opts, exposure, (priors or {}).get(name))
        f.excluded = _exclusion_reason(f, series.t, series.y, opts, exposure)
        out.fits[name] = f
    # nothing left: re-admit unconverged fits; failing that, the least explosive fit alone, so that
    # a series is never left without a forecast only because of these hygiene rules
    if all(f.excluded for f in out.fits.values()):
        for f in out.fits.values():
            if f.excluded.startswith("not converged"):
                f.excluded = ""
    if all(f.excluded for f in out.fits.values()):
        cand = [f for f in out.fits.values() if f.excluded.startswith("explosive")]
        if cand:
            day = float(series.t[-1]) + max(float(series.t[-1] - series.t[0]), 1.0)
            least = min(cand, key=lambda f: np.nan_to_num(float(f.predict(np.array([day]), exposure)[0]), nan=np.inf))
            least.excluded = ""
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
