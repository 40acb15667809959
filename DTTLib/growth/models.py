"""Tumour growth models behind one interface.

Why closed forms: every model here has an analytic solution (the Claret model too, because
the exposure is piecewise constant), so fits and what-if updates need no ODE solver and can
be evaluated for hundreds of parameter draws at once. Metadata (names, bounds, units) is
data, in ``models.json``; only the math is code.

Conventions: time in days, exactly as given; ``y0`` is the size at day 0 (put day 0 at the
treatment start or first scan). Sizes are diameters (mm) or volumes (mm³) — the models do
not care, the fitter scales bounds to the data. Parameters may be a vector ``(p,)`` or a
batch ``(S, p)``; the result is then ``(n,)`` or ``(S, n)``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from DTTLib.errors import InputError

_EXP_MAX = 700.0  # keep exp() finite; a fitted size beyond e^700 is meaningless anyway


@dataclass(frozen=True)
class Exposure:
    """Piecewise-constant therapy exposure E(t) from a therapy log.

    ``intervals`` are ``(start_day, end_day, dose_level)``; ``end_day`` may be ``inf``.
    ``origin`` is the day the resistance clock ``exp(-lam (t - origin))`` starts (the
    treatment start). An empty log means no therapy (natural history). Passing ``None``
    instead of an Exposure to a model means its plain form: E(t) = 1 at all times.
    """

    intervals: tuple[tuple[float, float, float], ...] = ()
    origin: float = 0.0

    @classmethod
    def from_log(cls, log: Sequence[Sequence[float]], origin: float | None = None) -> "Exposure":
        ivs = []
        for row in log:
            if len(row) != 3:
                raise InputError(f"therapy log entry {row!r} is not (start_day, end_day, dose_level)",
                                 "give three numbers per entry")
            a, b, lev = (float(v) for v in row)
            if not (b > a) or math.isnan(lev) or lev < 0:
                raise InputError(f"therapy log entry {row!r} is invalid",
                                 "use end_day > start_day and a dose_level >= 0")
            ivs.append((a, b, lev))
        ivs.sort()
        if origin is None:
            origin = ivs[0][0] if ivs else 0.0
        return cls(tuple(ivs), float(origin))

    @classmethod
    def none(cls) -> "Exposure":
        return cls((), 0.0)

    def level(self, t: np.ndarray) -> np.ndarray:
        """E(t) itself (for plots and checks)."""
        t = np.asarray(t, float)
        out = np.zeros_like(t)
        for a, b, lev in self.intervals:
            out = out + lev * ((t >= a) & (t < b))
        return out

    def integral(self, t: np.ndarray, lam: np.ndarray | float = 0.0) -> np.ndarray:
        """∫_0^t E(s) exp(-lam (s - origin)) ds, vectorised over t and a batch of lam."""
        t = np.asarray(t, float)
        lam = np.asarray(lam, float)
        out = np.zeros(np.broadcast_shapes(t.shape, lam.shape))
        for a, b, lev in self.intervals:
            if lev == 0:
                continue
            lo = np.clip(0.0, a, b)
            hi = np.clip(t, a, b)
            out = out + lev * (_decay_integral(hi, lam, self.origin) - _decay_integral(lo, lam, self.origin))
        return out


def _decay_integral(s: np.ndarray | float, lam: np.ndarray, origin: float) -> np.ndarray:
    """Antiderivative of exp(-lam (s - origin)) that is exact as lam → 0."""
    s = np.asarray(s, float) - origin
    lam = np.asarray(lam, float)
    small = np.abs(lam) < 1e-12
    safe = np.where(small, 1.0, lam)
    with np.errstate(over="ignore", invalid="ignore"):
        val = -np.expm1(np.clip(-safe * s, -_EXP_MAX, _EXP_MAX)) / safe
    return np.where(small, s, val)


def _unpack(params: np.ndarray) -> list:
    p = np.asarray(params, float)
    if p.ndim == 1:
        return [p[i] for i in range(p.shape[0])]
    return [p[..., i, np.newaxis] for i in range(p.shape[-1])]


def _exp(x):
    return np.exp(np.clip(x, -_EXP_MAX, _EXP_MAX))


def _pos_pow(base, power):
    return np.power(np.maximum(base, 0.0), power)


# ---- the math -------------------------------------------------------------------------

def _exponential(t, p, e):
    y0, k = _unpack(p)
    return y0 * _exp(k * t)


def _logistic(t, p, e):
    y0, r, K = _unpack(p)
    return K / (1.0 + (K / y0 - 1.0) * _exp(-r * t))


def _gompertz(t, p, e):
    y0, b, K = _unpack(p)
    return K * _exp(np.log(y0 / K) * _exp(-b * t))


def _generalized_logistic(t, p, e):
    y0, r, K, nu = _unpack(p)
    base = 1.0 + (_pos_pow(K / y0, nu) - 1.0) * _exp(-r * nu * t)
    return K / _pos_pow(np.maximum(base, 1e-300), 1.0 / nu)


def _power_law(t, p, e):
    y0, a, g = _unpack(p)
    return _pos_pow(_pos_pow(y0, 1.0 - g) + (1.0 - g) * a * t, 1.0 / (1.0 - g))


def _gvb(y0, a, b, g, t):
    ratio = a / b
    u = ratio + (_pos_pow(y0, 1.0 - g) - ratio) * _exp(-(1.0 - g) * b * t)
    return _pos_pow(u, 1.0 / (1.0 - g))


def _von_bertalanffy(t, p, e):
    y0, a, b = _unpack(p)
    return _gvb(y0, a, b, 2.0 / 3.0, t)


def _general_von_bertalanffy(t, p, e):
    y0, a, b, g = _unpack(p)
    return _gvb(y0, a, b, g, t)


def _exponential_linear(t, p, e):
    y0, a0, a1 = _unpack(p)
    vth = a1 / a0
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = np.where(y0 < vth, np.log(np.maximum(vth / y0, 1.0)) / a0, (vth - y0) / a1)
    return np.where(t < tau, vth * _exp(a0 * (t - tau)), vth + a1 * (t - tau))


def _exposed_time(t, e: Exposure | None, lam=0.0):
    if e is None:  # plain form, E ≡ 1
        return t if np.all(np.asarray(lam) == 0) else _decay_integral(t, np.asarray(lam), 0.0)
    return e.integral(t, lam)


def _stein(t, p, e):
    g, d = _unpack(p)
    return _exp(-d * _exposed_time(t, e)) + _exp(g * t) - 1.0


def _stein_phi(t, p, e):
    g, d, phi = _unpack(p)
    return phi * _exp(g * t) + (1.0 - phi) * _exp(-d * _exposed_time(t, e))


def _claret(t, p, e):
    y0, kg, kd, lam = _unpack(p)
    return y0 * _exp(kg * t - kd * _exposed_time(t, e, lam))


_MATH: dict[str, Callable] = {
    "exponential": _exponential,
    "logistic": _logistic,
    "gompertz": _gompertz,
    "generalized_logistic": _generalized_logistic,
    "power_law": _power_law,
    "von_bertalanffy": _von_bertalanffy,
    "general_von_bertalanffy": _general_von_bertalanffy,
    "exponential_linear": _exponential_linear,
    "stein": _stein,
    "stein_phi": _stein_phi,
    "claret": _claret,
}


@dataclass(frozen=True)
class ParamSpec:
    """One parameter's metadata, read from models.json."""

    name: str
    unit: str
    scale: str  # "value": bounds/init multiply the series' reference size; "none": absolute
    log: bool
    lower: float
    upper: float
    init: tuple[float, float]


@dataclass(frozen=True)
class GrowthModel:
    """A growth model: metadata plus its closed-form solution.

    ``normalized`` models (Stein) predict f(t) = V(t)/V(first observation); the fitter
    multiplies by the first observed value. ``uses_exposure`` models react to a therapy log.
    """

    name: str
    label: str
    ode: str
    params: tuple[ParamSpec, ...]
    uses_exposure: bool
    normalized: bool
    _fn: Callable = field(repr=False, compare=False, default=None)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def predict(self, t_days, params, exposure: Exposure | None = None) -> np.ndarray:
        """Size at ``t_days`` (or f(t) for normalized models); never raises on bad params."""
        t = np.asarray(t_days, float)
        with np.errstate(all="ignore"):
            out = self._fn(t, np.asarray(params, float), exposure if self.uses_exposure else None)
        return np.asarray(out, float)

    def bounds(self, y_ref: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Natural-scale (lower, upper) for a series whose reference size is ``y_ref``."""
        s = np.array([y_ref if p.scale == "value" else 1.0 for p in self.params])
        return np.array([p.lower for p in self.params]) * s, np.array([p.upper for p in self.params]) * s


def _load() -> dict[str, GrowthModel]:
    data = json.loads((Path(__file__).with_name("models.json")).read_text(encoding="utf-8"))
    out = {}
    for m in data["models"]:
        specs = tuple(ParamSpec(p["name"], p["unit"], p["scale"], bool(p["log"]), float(p["lower"]),
                                float(p["upper"]), (float(p["init"][0]), float(p["init"][1])))
                      for p in m["params"])
        out[m["name"]] = GrowthModel(m["name"], m["label"], m["ode"], specs, bool(m["uses_exposure"]),
                                     bool(m["normalized"]), _MATH[m["name"]])
    return out


MODELS: dict[str, GrowthModel] = _load()


def model_names() -> list[str]:
    return list(MODELS)


def get_model(name: str) -> GrowthModel:
    try:
        return MODELS[name]
    except KeyError:
        raise InputError(f"unknown growth model {name!r}",
                         f"choose from: {', '.join(MODELS)}") from None


def parse_model_list(spec: str | Sequence[str] | None) -> list[str]:
    """'all', None, 'a,b' or a list → validated model names."""
    if spec is None or spec == "all" or (not isinstance(spec, str) and list(spec) == ["all"]):
        return model_names()
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not names:
        raise InputError("no growth model named", "give --models all or a comma-separated list")
    for n in names:
        get_model(n)
    return names
