"""Ensemble hygiene (unconverged / explosive fits, Stein's fitted scale in AIC) and the stacked
forecast (shrinkage toward the last observation) with its residual intervals."""

import json
import math

import numpy as np
import pytest

from DTTLib.growth import criteria
from DTTLib.growth.cli import add_fit_parser, fit_table
from DTTLib.growth.fit import FitOptions, fit_model, fit_values
from DTTLib.growth.uncertainty import Calibration, blend_weight, learn_blend, prediction_intervals


def test_stein_likelihood_is_on_the_same_data_scale_as_the_others():
    """AIC comparability: every model's RSS is Σ (ln(y + c) − ln(ŷ + c))² on the raw values."""
    t = np.array([-5.0, 40, 80, 120, 160])
    y = np.array([40.0, 31, 27, 29, 34])
    c = 1.0
    for name in ("stein", "stein_phi", "exponential", "gompertz"):
        f = fit_model(name, t, y)
        yhat = f.predict(t)  # in mm, Stein's normalised curve multiplied back by the first value
        assert f.rss == pytest.approx(float(np.sum((np.log(y + c) - np.log(yhat + c)) ** 2)), rel=1e-9)
        assert f.aic == pytest.approx(criteria.aic(f.rss, len(t), f.k))
    assert fit_model("stein", t, y).k == 3 and fit_model("exponential", t, y).k == 3  # as tumgr: np = 2


def test_explosive_and_unconverged_fits_get_no_weight_with_a_reason():
    # a series that turns sharply upward: free exponential-type growth runs away beyond the data
    t = [0, 30, 60, 90]
    y = [20, 20.5, 21, 60]
    names = ["exponential", "stein_phi", "logistic", "gompertz"]
    sf = fit_values(t, y, names, options=FitOptions(explosive_factor=3.0))
    for f in sf.fits.values():
        v = float(f.predict([90 + 90])[0])  # one observed span after the last visit
        if v > 3.0 * 60:
            assert f.excluded.startswith("explosive") and f.akaike_weight == 0.0
        else:
            assert not f.excluded
    assert sf.fits["stein_phi"].excluded  # it runs away to millions of mm here
    assert sum(sf.weights.values()) == pytest.approx(1.0)
    assert sf.predict_mean([180])[0] < 3 * 60
    # everything explosive (a strict limit): only the least explosive fit is re-admitted
    strict = fit_values(t, y, names, options=FitOptions(explosive_factor=1.2))
    vals = {m: float(f.predict([180])[0]) for m, f in strict.fits.items()}
    assert all(v > 1.2 * 60 for v in vals.values())
    assert strict.weights[min(vals, key=vals.get)] == pytest.approx(1.0)
    # one function evaluation: nothing converges; the fits are re-admitted rather than leaving no forecast
    sf2 = fit_values([0, 30, 60, 90, 120], [30, 25, 24, 26, 31], ["gompertz", "logistic"],
                     options=FitOptions(max_nfev=1, n_starts=1))
    assert all(not f.converged for f in sf2.fits.values())
    assert sum(sf2.weights.values()) == pytest.approx(1.0)
    sf3 = fit_values([0, 30, 60, 90, 120], [30, 25, 24, 26, 31], ["gompertz", "logistic"],
                     options=FitOptions(max_nfev=1, n_starts=1, drop_unconverged=False))
    assert all(not f.excluded for f in sf3.fits.values())


def _cases(rng, n_pat, trend_sd, noise):
    """Log random walk with a per-patient drift; visits every 6 weeks, last one held out."""
    out = []
    for _ in range(n_pat):
        n = int(rng.integers(4, 8))
        t = np.arange(n) * 42.0
        drift = rng.normal(0, trend_sd)
        z = math.log(40) + drift * t + np.cumsum(rng.normal(0, noise, n))
        y = np.exp(z)
        out.append((fit_values(t[:-1], y[:-1], ["exponential"], options=FitOptions(n_starts=2)), t[-1], y[-1]))
    return out


def test_blend_learns_to_trust_the_last_value_when_the_truth_is_a_random_walk():
    rng = np.random.default_rng(11)
    train = _cases(rng, 90, 0.0, 0.12)  # no trend: the last value is the best forecast
    cal = learn_blend(train)
    w = blend_weight(cal, 5, np.array([42.0]))[0]
    assert w > 0.7, w
    rng = np.random.default_rng(12)
    trend = learn_blend(_cases(rng, 90, 0.006, 0.01))  # steady exponential trends, little noise: trust the model
    assert blend_weight(trend, 5, np.array([42.0]))[0] < 0.3
    # the reported mean is exactly the documented formula
    sf, tn, yn = train[0]
    iv = prediction_intervals(sf, [tn], cal)
    c = sf.options.offset
    e = sf.predict_mean([tn])[0]
    wi = 1 / (1 + math.exp(-(cal.blend["beta"][0] + cal.blend["beta"][1] * math.log(sf.series.n)
                              + cal.blend["beta"][2] * math.log((tn - sf.series.t[-1]) / 60))))
    expect = math.exp(wi * math.log(sf.series.y[-1] + c) + (1 - wi) * math.log(e + c)) - c
    assert iv.mean[0] == pytest.approx(expect, rel=1e-9)
    assert iv.weight_last[0] == pytest.approx(wi) and iv.method == ["blend"]
    assert iv.ensemble_mean[0] == pytest.approx(e)
    # before the last visit nothing is blended
    iv0 = prediction_intervals(sf, [sf.series.t[1]], cal)
    assert iv0.method == ["fit"] and iv0.weight_last[0] == 0.0 and iv0.mean[0] == pytest.approx(sf.predict_mean([sf.series.t[1]])[0])


def test_residual_intervals_cover_held_out_cases():
    rng = np.random.default_rng(21)
    train, test = _cases(rng, 120, 0.003, 0.1), _cases(rng, 120, 0.003, 0.1)
    cal = learn_blend(train)
    hit80 = hit95 = 0
    for sf, tn, yn in test:
        iv = prediction_intervals(sf, [tn], cal)
        assert iv.lo95[0] <= iv.lo80[0] <= iv.mean[0] <= iv.hi80[0] <= iv.hi95[0]
        hit80 += iv.lo80[0] <= yn <= iv.hi80[0]
        hit95 += iv.lo95[0] <= yn <= iv.hi95[0]
    assert 0.70 <= hit80 / len(test) <= 0.90
    assert hit95 / len(test) >= 0.88
    # round trip through JSON (as stored in calibration.json)
    again = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert prediction_intervals(test[0][0], [test[0][1]], again).hi80[0] == pytest.approx(
        prediction_intervals(test[0][0], [test[0][1]], cal).hi80[0])


def test_cli_json_says_how_the_forecast_was_formed():
    rng = np.random.default_rng(5)
    cal = learn_blend(_cases(rng, 60, 0.0, 0.1))
    rows = [{"series": "A", "time_days": d, "value": v} for d, v in ((0, 30), (42, 27), (84, 26), (126, 29))]
    out = fit_table(rows, "exponential,gompertz", [168.0, 60.0], calibration=cal)
    s = out["series"][0]
    p_future, p_past = s["predictions"]
    h = p_future["how"]
    assert h["method"] == "blend" and 0 < h["weight_last_observation"] < 1
    assert sum(h["ensemble_weights"].values()) == pytest.approx(1.0)
    c = 1.0
    w = h["weight_last_observation"]
    expect = math.exp(w * math.log(29 + c) + (1 - w) * math.log(h["ensemble_mean"] + c)) - c
    assert p_future["mean"] == pytest.approx(expect, rel=1e-9)
    assert "beta" in h["formula"] and h["last_observation"] == {"day": 126.0, "value": 29.0}
    assert p_past["how"]["method"] == "ensemble" and p_past["how"]["weight_last_observation"] == 0.0
    for m in s["models"].values():
        assert "ensemble_excluded" in m and "convention" in m


def test_cli_stein_convention_flag(tmp_path, capsys):
    import argparse
    p = tmp_path / "t.csv"
    p.write_text("series,time_days,value\nA,-7,50\nA,35,38\nA,77,33\nA,119,36\nA,161,44\n")
    ap = argparse.ArgumentParser()
    add_fit_parser(ap.add_subparsers())
    a = ap.parse_args(["fit", str(p), "--models", "exponential,stein", "--stein-convention", "tumgr", "--json"])
    assert a.handler(a) == 0
    out = json.loads(capsys.readouterr().out)
    st = out["series"][0]["models"]["stein"]
    assert out["stein_convention"] == "tumgr" and st["convention"] == "tumgr" and st["akaike_weight"] == 0.0
    ref = fit_model("stein", np.array([-7.0, 35, 77, 119, 161]), np.array([50.0, 38, 33, 36, 44]),
                    FitOptions(stein_convention="tumgr"))
    assert st["params"]["g"] == pytest.approx(ref.params["g"]) and st["params"]["d"] == pytest.approx(ref.params["d"])
