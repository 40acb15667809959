"""k-nearest-neighbour population priors: a short series borrows shape parameters from the long
series whose early course looks like its own, never their sizes."""

import math

import numpy as np
import pytest

from DTTLib.growth.cli import fit_table
from DTTLib.growth.fit import FitOptions, fit_values
from DTTLib.growth.models import get_model
from DTTLib.growth.priors import PopulationPrior

DAYS = np.arange(7) * 42.0
FAMILIES = {"A": (-0.006, 0.02), "B": (0.008, 0.10)}  # true growth rate k (1/day), log-scale noise SD


def _family(rng, fam, n):
    """Exponential courses y0·exp(k·t)·noise, k jittered around the family's rate, sizes varied widely."""
    k0, noise = FAMILIES[fam]
    out = []
    for i in range(n):
        k = k0 + rng.uniform(-5e-4, 5e-4)
        y0 = rng.uniform(20, 120)
        out.append((f"{fam}{i}", k, y0 * np.exp(k * DAYS) * np.exp(noise * rng.standard_normal(DAYS.size))))
    return out


@pytest.fixture(scope="module")
def population():
    rng = np.random.default_rng(3)
    series = _family(rng, "A", 20) + _family(rng, "B", 20)
    opts = FitOptions(n_starts=2)
    fits = [fit_values(DAYS, y, ["exponential"], name=name, options=opts) for name, _, y in series]
    return series, PopulationPrior.build(fits)


def _true_k(series, fam):
    return [k for name, k, _ in series if name.startswith(fam)]


@pytest.mark.parametrize("fam,other", [("A", "B"), ("B", "A")])
def test_short_series_gets_its_prior_from_its_own_family(population, fam, other):
    series, pop = population
    assert len(pop.ids) == 40 and pop.k == 15
    rng = np.random.default_rng(99)
    k0, noise = FAMILIES[fam]
    t = DAYS[:3]
    y = 55.0 * np.exp(k0 * t) * np.exp(noise * 0.5 * rng.standard_normal(3))  # a new patient, 3 visits
    pr = pop.priors_for(t, y)["exponential"]
    names = get_model("exponential").param_names
    i_y0, i_k = names.index("y0"), names.index("k")
    # the size y0 is never borrowed (sizes are not comparable across patients); the rate k is
    assert math.isnan(pr.mean[i_y0]) and math.isfinite(pr.mean[i_k])
    # k is the neighbours' median: inside the own family's true rates, far from the other family's
    own, rest = _true_k(series, fam), _true_k(series, other)
    assert min(own) - 1e-3 <= pr.mean[i_k] <= max(own) + 1e-3
    assert abs(pr.mean[i_k] - np.median(rest)) > 0.01
    # the residual scale of the prior is the neighbours' noise level (A: 0.02, B: 0.10 on the log scale)
    assert pr.sigma == pytest.approx(noise, rel=0.5)
    # no prior is sharper than the floor: 5 % of k's search range in models.json
    p = get_model("exponential").params[i_k]
    assert pr.sd[i_k] >= 0.05 * (p.upper - p.lower) - 1e-12


def test_own_series_is_excluded_and_too_few_neighbours_give_no_prior(population):
    series, pop = population
    name, _, y = series[0]  # A0, which is in the population itself
    d = np.sqrt((((pop.features - pop.features[0]) / pop._scale) ** 2).sum(axis=1))
    assert d[0] == 0.0  # without exclude, A0 would be its own nearest neighbour
    with_self = pop.priors_for(DAYS[:3], y[:3])["exponential"].mean
    without = pop.priors_for(DAYS[:3], y[:3], exclude=name)["exponential"].mean
    # excluding A0 replaces it by the 16th nearest: the median over the 15 neighbours must follow
    nearest_without = np.argsort(np.where(np.arange(len(d)) == 0, np.inf, d))[:15]
    k_col = get_model("exponential").param_names.index("k")
    assert without[k_col] == pytest.approx(np.median(pop.thetas["exponential"][nearest_without, k_col]))
    nearest_with = np.argsort(d)[:15]
    assert with_self[k_col] == pytest.approx(np.median(pop.thetas["exponential"][nearest_with, k_col]))
    small = PopulationPrior.build([fit_values(DAYS, y, ["exponential"], name=n) for n, _, y in series[:2]])
    assert small.priors_for(DAYS[:3], series[2][2][:3]) == {}


def test_dtt_fit_table_gives_a_prior_only_to_short_series_and_only_with_ten_long_ones(population):
    series, _ = population
    short = {"S3": [(0.0, 50.0), (42.0, 44.0), (84.0, 40.0)],
             "S4": [(0.0, 50.0), (42.0, 44.0), (84.0, 40.0), (126.0, 35.0)],
             "S5": [(0.0, 50.0), (42.0, 44.0), (84.0, 40.0), (126.0, 35.0), (168.0, 31.0)]}
    extra = [{"series": n, "time_days": t, "value": v} for n, pts in short.items() for t, v in pts]

    def used(long_series):
        rows = [{"series": n, "time_days": t, "value": v} for n, _, y in long_series for t, v in zip(DAYS, y)]
        out = fit_table(rows + extra, "exponential")
        return {r["series"]: r["models"]["exponential"]["used_prior"] for r in out["series"]}

    u = used(series)  # 40 long series (7 visits) + S5 build the population
    assert u["S3"] is True and u["S4"] is True  # <= 4 points (prior_max_n)
    assert u["S5"] is False and not any(v for k, v in u.items() if not k.startswith("S"))
    u = used(series[:8])  # 8 long series + S5 = 9 < 10: too few to borrow from
    assert not any(u.values())
