"""Growth-model closed forms checked against independent math (ODE integration, quadrature)."""

import math

import numpy as np
import pytest
from scipy.integrate import quad, solve_ivp

from DTTLib.errors import InputError
from DTTLib.growth.models import MODELS, Exposure, get_model, parse_model_list

T = np.linspace(0.0, 60.0, 13)

# (model, params, ODE right-hand side dV/dt(t, V))
ODE_CASES = [
    ("exponential", [20.0, 0.03], lambda t, v: 0.03 * v),
    ("logistic", [20.0, 0.08, 90.0], lambda t, v: 0.08 * v * (1 - v / 90.0)),
    ("logistic", [120.0, 0.05, 60.0], lambda t, v: 0.05 * v * (1 - v / 60.0)),  # shrinking to K
    ("gompertz", [5.0, 0.06, 200.0], lambda t, v: 0.06 * v * np.log(200.0 / v)),
    ("generalized_logistic", [10.0, 0.07, 150.0, 0.5], lambda t, v: 0.07 * v * (1 - (v / 150.0) ** 0.5)),
    ("power_law", [8.0, 0.4, 0.7], lambda t, v: 0.4 * v ** 0.7),
    ("von_bertalanffy", [10.0, 1.0, 0.05], lambda t, v: 1.0 * v ** (2 / 3) - 0.05 * v),
    ("general_von_bertalanffy", [10.0, 0.8, 0.04, 0.8], lambda t, v: 0.8 * v ** 0.8 - 0.04 * v),
    ("exponential_linear", [5.0, 0.2, 3.0], lambda t, v: 0.2 * v if v < 3.0 / 0.2 else 3.0),
]


@pytest.mark.parametrize("name,params,rhs", ODE_CASES)
def test_closed_form_matches_ode(name, params, rhs):
    sol = solve_ivp(lambda t, v: [rhs(t, v[0])], (0, T[-1]), [params[0]], t_eval=T, rtol=1e-10, atol=1e-10,
                    max_step=0.5)
    got = get_model(name).predict(T, params)
    np.testing.assert_allclose(got, sol.y[0], rtol=2e-5)


def test_claret_matches_ode_with_therapy_log():
    ex = Exposure.from_log([(5, 20, 1.0), (30, 45, 2.0)])
    kg, kd, lam = 0.02, 0.05, 0.01

    def rhs(t, v):
        return [kg * v[0] - kd * float(ex.level(np.array(t))) * math.exp(-lam * (t - ex.origin)) * v[0]]

    sol = solve_ivp(rhs, (0, 60), [30.0], t_eval=T, rtol=1e-10, atol=1e-10, max_step=0.1)
    got = get_model("claret").predict(T, [30.0, kg, kd, lam], ex)
    np.testing.assert_allclose(got, sol.y[0], rtol=1e-5)


def test_exposure_integral_matches_quadrature():
    ex = Exposure.from_log([(-3, 10, 0.5), (12, math.inf, 1.5)], origin=0.0)
    for t in (-5.0, 4.0, 11.0, 40.0):
        ref = quad(lambda s: float(ex.level(np.array(s))) * math.exp(-0.03 * s), 0, t, limit=200,
                   points=[-3, 10, 12])[0]
        assert float(ex.integral(np.array(t), 0.03)) == pytest.approx(ref, rel=1e-6, abs=1e-9)


def test_gompertz_inflection_at_k_over_e():
    y0, b, K = 2.0, 0.05, 300.0
    t_star = math.log(math.log(K / y0)) / b
    m = get_model("gompertz")
    assert float(m.predict(np.array(t_star), [y0, b, K])) == pytest.approx(K / math.e, rel=1e-9)
    h = 0.5
    v = m.predict(np.array([t_star - h, t_star, t_star + h]), [y0, b, K])
    d2_before = m.predict(np.array([t_star - 2 * h]), [y0, b, K])[0] - 2 * v[0] + v[1]
    d2_after = v[1] - 2 * v[2] + m.predict(np.array([t_star + 2 * h]), [y0, b, K])[0]
    assert d2_before > 0 > d2_after


@pytest.mark.parametrize("name,params", [("logistic", [5.0, 0.1, 80.0]), ("gompertz", [5.0, 0.1, 80.0]),
                                         ("generalized_logistic", [5.0, 0.1, 80.0, 2.0])])
def test_saturating_models_approach_carrying_capacity(name, params):
    assert float(get_model(name).predict(np.array(1e4), params)) == pytest.approx(80.0, rel=1e-9)


def test_stein_closed_form_and_time_as_given():
    g, d = 0.01, 0.03
    t = np.array([-2.0, 0.0, 1.0, 50.0, 200.0])
    f = get_model("stein").predict(t, [g, d])
    np.testing.assert_allclose(f, np.exp(-d * t) + np.exp(g * t) - 1)
    assert f[1] == 1.0  # no re-origin: f(0) = 1 only at day 0
    phi = get_model("stein_phi").predict(t, [g, d, 0.3])
    np.testing.assert_allclose(phi, 0.3 * np.exp(g * t) + 0.7 * np.exp(-d * t))


def test_stein_with_therapy_log_regresses_only_while_exposed():
    ex = Exposure.from_log([(0, 30, 1.0)])
    f = get_model("stein").predict(np.array([30.0, 60.0]), [0.0, 0.05], ex)
    assert f[0] == pytest.approx(math.exp(-1.5)) and f[1] == pytest.approx(math.exp(-1.5))


def test_batch_shape_and_models_json_complete():
    for m in MODELS.values():
        lo, hi = m.bounds(50.0)
        p = 0.5 * (lo + hi) if not any(s.log for s in m.params) else np.sqrt(np.maximum(lo, 1e-9) * hi)
        assert m.predict(T, p).shape == T.shape
        assert m.predict(T, np.vstack([p, p, p])).shape == (3, T.size)
        assert len(m.param_names) == len(set(m.param_names)) > 0
        assert all(s.lower < s.upper and s.lower <= s.init[0] <= s.init[1] <= s.upper for s in m.params)


def test_model_names_validated():
    assert parse_model_list("all") == list(MODELS)
    assert parse_model_list("stein, gompertz") == ["stein", "gompertz"]
    with pytest.raises(InputError):
        parse_model_list("gompertz,nope")
    with pytest.raises(InputError):
        Exposure.from_log([(10, 5, 1.0)])
