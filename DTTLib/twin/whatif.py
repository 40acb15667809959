"""Live what-if for the twin: slider values → one combined scenario → a labelled hypothesis curve.

Builds on :class:`DTTLib.growth.whatif.WhatIf` (parameter draws made once); several controls
(start shift, effect multiplier, holiday, resistance onset) are applied to the therapy log one
after another, so the curve answers "all of these together". An update costs a few ms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from DTTLib.growth.fit import SeriesFit
from DTTLib.growth.models import Exposure
from DTTLib.growth.uncertainty import Calibration, bands
from DTTLib.growth.whatif import Scenario, WhatIf, apply_scenario
from DTTLib.twin.records import Curve, floats

DEFAULT_SCENARIOS = (Scenario("as_given"), Scenario("natural_history"))


@dataclass(frozen=True)
class WhatIfControls:
    """The module's sliders. Zero / one / None mean "unchanged"."""

    shift_weeks: float = 0.0
    effect_multiplier: float = 1.0
    holiday_start_day: float | None = None
    holiday_end_day: float | None = None
    resistance_day: float | None = None
    natural_history: bool = False

    def scenarios(self) -> list[Scenario]:
        if self.natural_history:
            return [Scenario("natural_history")]
        out = []
        if self.shift_weeks:
            out.append(Scenario("shift_start", shift_days=7.0 * self.shift_weeks))
        if self.effect_multiplier != 1.0:
            out.append(Scenario("regimen", multiplier=self.effect_multiplier))
        if self.holiday_start_day is not None and self.holiday_end_day is not None \
                and self.holiday_end_day > self.holiday_start_day:
            out.append(Scenario("holiday", holiday=(self.holiday_start_day, self.holiday_end_day)))
        if self.resistance_day is not None:
            out.append(Scenario("resistance_onset", onset_day=self.resistance_day))
        return out or [Scenario("as_given")]


class TwinWhatIf:
    """What-if engine on the SOD fit; ``run`` and ``run_controls`` return :class:`Curve`."""

    def __init__(self, fit: SeriesFit, exposure: Exposure | None, t_grid, calibration: Calibration | None) -> None:
        self.engine = WhatIf(fit, exposure, t_grid, calibration=calibration)

    def run(self, scenario: Scenario) -> Curve:
        r = self.engine.run(scenario)
        return Curve(f"what-if: {scenario.describe()}", "hypothesis", r.label, floats(r.t), floats(r.median),
                     floats(r.lo80), floats(r.hi80), floats(r.lo95), floats(r.hi95))

    def run_controls(self, controls: WhatIfControls) -> Curve:
        scenarios = controls.scenarios()
        if len(scenarios) == 1:
            return self.run(scenarios[0])
        log = self.engine.log
        for s in scenarios:
            log = apply_scenario(log, s)
        e = self.engine
        b = bands(e.draws.log_curves(e.t, log), e.draws.offset, e.calibration)
        what = "; ".join(s.describe() for s in scenarios)
        models = ", ".join(f"{m} {w:.0%}" for m, w in e.weights.items())
        label = (f"HYPOTHESIS — {what}: what the fitted ensemble ({models}; {e.fit.series.n} visits) would imply "
                 f"if its therapy term held under the changed regimen. Bands (80 %/95 %) cover parameter "
                 f"uncertainty{' with calibration' if e.calibration else ''}, not model error; "
                 f"not a clinical prediction.")
        return Curve(f"what-if: {what}", "hypothesis", label, floats(e.t), floats(b["median"]), floats(b["lo80"]),
                     floats(b["hi80"]), floats(b["lo95"]), floats(b["hi95"]))

    @property
    def t(self) -> np.ndarray:
        return self.engine.t
