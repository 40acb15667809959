"""What-if therapy scenarios from a fitted ensemble — hypotheses, never predictions.

Only models that contain a therapy term (``uses_exposure``: Claret TGI, Stein) can answer a
question about therapy; their Akaike weights are renormalised among themselves. Parameter
draws are made once (``WhatIf.__init__``); a scenario only rebuilds the exposure E(t) and
evaluates closed forms for all draws at once, so an update takes a few milliseconds (measured in
``benchmarks/growth_validation.py``: ~3 ms for 300 draws × 200 days), fast enough for live sliders.

Scenarios change the therapy log, not the fitted parameters:
natural history (E = 0), start shifted by ± days (the resistance clock moves with it),
regimen change (dose levels × multiplier from a day on), treatment holiday (no exposure in
an interval), resistance onset (no effect after a day).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from DTTLib.errors import InputError
from DTTLib.growth.fit import SeriesFit
from DTTLib.growth.models import Exposure, get_model
from DTTLib.growth.uncertainty import Calibration, bands, ensemble_draws

KINDS = ("as_given", "natural_history", "shift_start", "regimen", "holiday", "resistance_onset")


@dataclass(frozen=True)
class Scenario:
    """One counterfactual. Fields not used by ``kind`` are ignored."""

    kind: str = "as_given"
    shift_days: float = 0.0  # shift_start: + later, − earlier
    multiplier: float = 1.0  # regimen: effect multiplier on dose levels
    from_day: float | None = None  # regimen: change applies from this day (default: whole log)
    holiday: tuple[float, float] | None = None  # holiday: (start_day, end_day) without therapy
    onset_day: float | None = None  # resistance_onset: therapy has no effect after this day

    def describe(self) -> str:
        k = self.kind
        if k == "natural_history":
            return "no therapy (natural history)"
        if k == "shift_start":
            w = self.shift_days / 7.0
            return f"therapy started {abs(w):g} week(s) {'later' if w > 0 else 'earlier'}"
        if k == "regimen":
            return f"therapy effect × {self.multiplier:g}" + (f" from day {self.from_day:g}" if self.from_day is not None else "")
        if k == "holiday":
            return f"treatment holiday from day {self.holiday[0]:g} to day {self.holiday[1]:g}"
        if k == "resistance_onset":
            return f"complete resistance from day {self.onset_day:g}"
        return "therapy as given"


@dataclass
class ScenarioResult:
    """A scenario's curve: time grid, median and bands (mm or mm³), and its honest label."""

    scenario: Scenario
    t: np.ndarray
    median: np.ndarray
    lo80: np.ndarray
    hi80: np.ndarray
    lo95: np.ndarray
    hi95: np.ndarray
    label: str
    models: dict[str, float] = field(default_factory=dict)


def apply_scenario(log: Exposure, sc: Scenario) -> Exposure:
    """The therapy log the scenario describes."""
    ivs = list(log.intervals)
    if sc.kind == "as_given":
        return log
    if sc.kind == "natural_history":
        return Exposure.none()
    if sc.kind == "shift_start":
        d = float(sc.shift_days)
        return Exposure(tuple((a + d, b + d, lev) for a, b, lev in ivs), log.origin + d)
    if sc.kind == "regimen":
        if not (sc.multiplier >= 0 and math.isfinite(sc.multiplier)):
            raise InputError(f"effect multiplier {sc.multiplier} is invalid", "use a number >= 0")
        f0 = -math.inf if sc.from_day is None else float(sc.from_day)
        return Exposure(tuple(_cut(ivs, f0, math.inf, lambda lev: lev * sc.multiplier)), log.origin)
    if sc.kind == "holiday":
        if sc.holiday is None or not sc.holiday[1] > sc.holiday[0]:
            raise InputError("treatment holiday needs (start_day, end_day) with end > start", "give both days")
        a, b = map(float, sc.holiday)
        return Exposure(tuple(_cut(ivs, a, b, lambda lev: 0.0)), log.origin)
    if sc.kind == "resistance_onset":
        if sc.onset_day is None:
            raise InputError("resistance onset needs a day", "give onset_day")
        return Exposure(tuple(_cut(ivs, float(sc.onset_day), math.inf, lambda lev: 0.0)), log.origin)
    raise InputError(f"unknown scenario {sc.kind!r}", f"choose from: {', '.join(KINDS)}")


def _cut(ivs, a: float, b: float, change) -> list[tuple[float, float, float]]:
    """Split intervals at a and b and apply ``change`` to the level inside [a, b)."""
    out = []
    for s, e, lev in ivs:
        for lo, hi, inside in ((s, min(e, a), False), (max(s, a), min(e, b), True), (max(s, b), e, False)):
            if hi > lo:
                out.append((lo, hi, change(lev) if inside else lev))
    return out


class WhatIf:
    """Precomputes ensemble draws of the therapy-aware models; ``run`` is then cheap."""

    def __init__(self, fit: SeriesFit, therapy_log: Sequence[Sequence[float]] | Exposure | None,
                 t_grid: Sequence[float], n_draws: int = 300, seed: int = 0,
                 calibration: Calibration | None = None) -> None:
        aware = [m for m, f in fit.fits.items() if get_model(m).uses_exposure and f.akaike_weight > 0]
        if not aware:
            aware = [m for m, f in fit.fits.items() if get_model(m).uses_exposure and math.isfinite(f.rss)
                     and f.convention != "tumgr"]
            if not aware:
                raise InputError(f"series {fit.series.name!r} has no fitted therapy-aware model ({fit.status})",
                                 "fit 'claret' and/or 'stein' to use what-if scenarios")
        if isinstance(therapy_log, Exposure):
            self.log = therapy_log
        elif therapy_log is None:
            self.log = Exposure(((0.0, math.inf, 1.0),), 0.0)
        else:
            self.log = Exposure.from_log(therapy_log)
        self.fit = fit
        self.t = np.asarray(t_grid, float)
        self.calibration = calibration
        w = np.array([fit.fits[m].akaike_weight for m in aware])
        w = w / w.sum() if w.sum() > 0 else np.full(len(aware), 1.0 / len(aware))  # no weight among them: equal
        self.weights = dict(zip(aware, w.tolist()))
        self.draws = ensemble_draws(fit, n_draws, seed, weights=self.weights)

    def run(self, scenario: Scenario) -> ScenarioResult:
        ex = apply_scenario(self.log, scenario)
        z = self.draws.log_curves(self.t, ex)
        b = bands(z, self.draws.offset, self.calibration)
        models = ", ".join(f"{m} {w:.0%}" for m, w in self.weights.items())
        label = (f"HYPOTHESIS — {scenario.describe()}: what the fitted ensemble ({models}; "
                 f"{self.fit.series.n} visits) would imply if its therapy term held under the changed "
                 f"regimen. Bands (80 %/95 %) cover parameter uncertainty"
                 f"{' with calibration' if self.calibration else ''}, not model error; not a clinical prediction.")
        return ScenarioResult(scenario, self.t, b["median"], b["lo80"], b["hi80"], b["lo95"], b["hi95"], label,
                              dict(self.weights))
