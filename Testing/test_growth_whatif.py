"""What-if scenarios: sanity of direction, bands and labels."""

import math

import numpy as np
import pytest

from DTTLib.errors import InputError
from DTTLib.growth.fit import fit_values
from DTTLib.growth.models import Exposure, get_model
from DTTLib.growth.whatif import Scenario, WhatIf, apply_scenario

LOG = [(0.0, math.inf, 1.0)]


@pytest.fixture(scope="module")
def whatif():
    rng = np.random.default_rng(3)
    t = np.array([-5.0, 40, 80, 120, 160, 200, 240])
    ex = Exposure.from_log(LOG)
    y = get_model("claret").predict(t, [40.0, 0.004, 0.02, 0.01], ex) * np.exp(0.03 * rng.standard_normal(t.size))
    sf = fit_values(t, y, ["claret", "stein", "exponential"], exposure=ex)
    return WhatIf(sf, LOG, np.linspace(0, 300, 61), n_draws=200)


def test_natural_history_not_smaller_than_treated(whatif):
    base = whatif.run(Scenario())
    nat = whatif.run(Scenario("natural_history"))
    assert np.all(nat.median >= base.median - 1e-9)
    assert nat.median[-1] > base.median[-1]


def test_later_start_gives_larger_tumour(whatif):
    base = whatif.run(Scenario())
    later = whatif.run(Scenario("shift_start", shift_days=28))
    earlier = whatif.run(Scenario("shift_start", shift_days=-14))
    i = int(np.searchsorted(whatif.t, 100))
    assert later.median[i] > base.median[i] >= earlier.median[i] - 1e-9


def test_other_scenarios_move_the_right_way(whatif):
    base = whatif.run(Scenario())
    stronger = whatif.run(Scenario("regimen", multiplier=2.0))
    holiday = whatif.run(Scenario("holiday", holiday=(60, 120)))
    resist = whatif.run(Scenario("resistance_onset", onset_day=60))
    end = -1
    assert stronger.median[end] <= base.median[end] <= holiday.median[end] + 1e-9
    assert resist.median[end] >= holiday.median[end] - 1e-9
    for r in (base, stronger, holiday, resist):
        assert r.label.startswith("HYPOTHESIS") and "not a clinical prediction" in r.label
        assert np.all(r.lo95 <= r.lo80 + 1e-9) and np.all(r.lo80 <= r.median + 1e-9)
        assert np.all(r.median <= r.hi80 + 1e-9) and np.all(r.hi80 <= r.hi95 + 1e-9)
        assert r.t.shape == r.median.shape == (61,)
    assert set(base.models) <= {"claret", "stein"}  # only therapy-aware models answer what-if


def test_apply_scenario_edits_the_log():
    log = Exposure.from_log([(0, 100, 1.0)])
    assert apply_scenario(log, Scenario("holiday", holiday=(20, 40))).intervals == ((0, 20, 1.0), (20, 40, 0.0), (40, 100, 1.0))
    sh = apply_scenario(log, Scenario("shift_start", shift_days=14))
    assert sh.intervals == ((14, 114, 1.0),) and sh.origin == 14
    assert apply_scenario(log, Scenario("regimen", multiplier=0.5, from_day=50)).intervals == ((0, 50, 1.0), (50, 100, 0.5))
    assert apply_scenario(log, Scenario("natural_history")).intervals == ()
    with pytest.raises(InputError):
        apply_scenario(log, Scenario("holiday", holiday=(40, 20)))
    with pytest.raises(InputError):
        apply_scenario(log, Scenario("bogus"))
