"""Population priors: borrow shape parameters from similar patients.

Why: a series with 3–4 visits cannot pin down a 3- or 4-parameter growth model. Patients
whose early course looks alike (same early relative change and slope) tend to follow
alike; the median of the k nearest neighbours' fitted parameters, with their spread, becomes
a Gaussian prior (shrinkage) for the short series. Size parameters (``y0``, ``K``, …) are
never borrowed: only shape/rate parameters, which are comparable across patients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from DTTLib.growth.fit import Prior, SeriesFit
from DTTLib.growth.models import get_model

N_EARLY = 3


def trajectory_features(t: np.ndarray, y: np.ndarray, offset: float = 1.0, n_early: int = N_EARLY) -> np.ndarray:
    """Normalised early course: [log change per 100 d over the first interval, over the
    first ``n_early`` points, and the latest early log-size relative to the first]."""
    t = np.asarray(t, float)[:n_early]
    z = np.log(np.asarray(y, float)[:n_early] + offset)
    z = z - z[0]
    if t.size < 2:
        return np.zeros(3)
    d1 = max(t[1] - t[0], 1.0)
    dl = max(t[-1] - t[0], 1.0)
    return np.array([100.0 * z[1] / d1, 100.0 * z[-1] / dl, z[-1]])


@dataclass
class PopulationPrior:
    """k-nearest-neighbour prior built from other series' fits."""

    ids: list[str]
    features: np.ndarray  # (N, F)
    thetas: dict[str, np.ndarray]  # model → (N, p), NaN where that fit failed
    sigmas: np.ndarray  # (N,) best-model residual SD, log scale
    offset: float = 1.0
    k: int = 15
    sd_floor: float = 0.05  # fraction of the search range: a prior is never sharper than this
    _scale: np.ndarray = field(default=None, repr=False)

    @classmethod
    def build(cls, fits: Sequence[SeriesFit], min_points: int = 5, k: int = 15) -> "PopulationPrior":
        """Use fitted series with ≥ ``min_points`` points (their shapes are well determined)."""
        used = [sf for sf in fits if sf.fits and sf.series.n >= min_points and sf.selected]
        models = sorted({m for sf in used for m in sf.fits})
        offset = used[0].options.offset if used else 1.0
        feats = np.array([trajectory_features(sf.series.t, sf.series.y, offset) for sf in used]).reshape(-1, 3)
        thetas = {}
        for m in models:
            p = len(get_model(m).params)
            rows = []
            for sf in used:
                f = sf.fits.get(m)
                rows.append(f.theta if f is not None and f.converged else np.full(p, np.nan))
            thetas[m] = np.array(rows).reshape(-1, p)
        sig = np.array([max(sf.fits[sf.selected].sigma, 1e-3) for sf in used])
        pp = cls([sf.series.name for sf in used], feats, thetas, sig, offset, k)
        sd = feats.std(axis=0) if len(feats) > 1 else np.ones(3)
        pp._scale = np.where(sd > 0, sd, 1.0)
        return pp

    def priors_for(self, t: np.ndarray, y: np.ndarray, exclude: str | None = None) -> dict[str, Prior]:
        """Priors for a new series from its k nearest neighbours (``exclude``: its own id)."""
        if len(self.ids) == 0:
            return {}
        f = trajectory_features(t, y, self.offset)
        d = np.sqrt((((self.features - f) / self._scale) ** 2).sum(axis=1))
        if exclude is not None:
            d = np.where(np.array(self.ids) == exclude, np.inf, d)
        idx = np.argsort(d)[: self.k]
        idx = idx[np.isfinite(d[idx])]
        if idx.size < 3:
            return {}
        sigma = float(np.median(self.sigmas[idx]))
        out = {}
        for m, th in self.thetas.items():
            model = get_model(m)
            sub = th[idx]
            mean = np.nanmedian(sub, axis=0) if np.isfinite(sub).any() else np.full(sub.shape[1], np.nan)
            mad = 1.4826 * np.nanmedian(np.abs(sub - mean), axis=0)
            lo = np.array([math.log(p.lower) if p.log else p.lower for p in model.params])
            hi = np.array([math.log(p.upper) if p.log else p.upper for p in model.params])
            sd = np.maximum(np.nan_to_num(mad, nan=np.inf), self.sd_floor * (hi - lo))
            size_param = np.array([p.scale == "value" for p in model.params])
            mean = np.where(size_param | (np.isfinite(sub).sum(axis=0) < 3), np.nan, mean)
            out[m] = Prior(mean, sd, sigma)
        return out
