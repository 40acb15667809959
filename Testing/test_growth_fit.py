"""Fitting, criteria, series status, intervals and the `dtt fit` command."""

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np
from data_paths import shared_data_dir
import pytest

from DTTLib.growth import criteria
from DTTLib.growth.cli import add_fit_parser, fit_table, run_fit
from DTTLib.growth.fit import FitOptions, fit_model, fit_series, fit_values
from DTTLib.growth import models as growth_models
from DTTLib.growth.models import get_model
from DTTLib.growth.series import clean_series
from DTTLib.growth.uncertainty import calibrate, prediction_intervals

LALEH = shared_data_dir() / "growth" / "laleh2022_studies1-3_sld.csv"


def test_gompertz_parameter_recovery_with_noise():
    rng = np.random.default_rng(1)
    t = np.linspace(0, 40, 14)
    truth = [20.0, 0.08, 900.0]
    y = get_model("gompertz").predict(t, truth) * np.exp(0.03 * rng.standard_normal(t.size))
    f = fit_model("gompertz", t, y, FitOptions(unit="mm3"))
    assert f.converged
    assert f.params["b"] == pytest.approx(0.08, rel=0.2)
    assert f.params["K"] == pytest.approx(900.0, rel=0.2)
    assert f.params["y0"] == pytest.approx(20.0, rel=0.15)


def test_exponential_recovery_and_fixed_parameter():
    rng = np.random.default_rng(2)
    t = np.linspace(5, 25, 8)
    y = 1.0 * np.exp(0.25 * t) * np.exp(0.05 * rng.standard_normal(t.size))
    free = fit_model("exponential", t, y, FitOptions(unit="mm3"))
    fixed = fit_model("exponential", t, y, FitOptions(unit="mm3", fixed={"y0": 1.0}))
    assert free.params["k"] == pytest.approx(0.25, rel=0.05)
    assert fixed.params["y0"] == pytest.approx(1.0, rel=1e-6)
    assert fixed.params["k"] == pytest.approx(0.25, rel=0.02)
    assert fixed.k == free.k - 1


def test_stein_fit_recovers_closed_form_exactly():
    g, d, y0 = 0.004, 0.025, 42.0
    # hand-made series starting at day 0 (f = 1 there), values in mm: recovered to 1 %
    t0 = np.array([0.0, 40, 80, 120, 160, 200])
    y0s = y0 * (np.exp(-d * t0) + np.exp(g * t0) - 1)
    f0 = fit_values(t0, y0s, ["stein"]).fits["stein"]
    assert f0.params["g"] == pytest.approx(g, rel=0.01) and f0.params["d"] == pytest.approx(d, rel=0.01)


def test_criteria_match_hand_formulas_and_weights_sum_to_one():
    t = np.array([0, 30, 60, 90, 120, 150.0])
    y = np.array([30, 26, 24, 25, 29, 35.0])
    sf = fit_values(t, y, ["exponential", "gompertz", "stein", "claret"])
    for f in sf.fits.values():
        n, k, rss = f.n, f.k, max(f.rss, f.n * criteria.RSS_FLOOR_SD ** 2)
        assert f.aic == pytest.approx(n * math.log(rss / n) + 2 * k)
        assert f.bic == pytest.approx(n * math.log(rss / n) + k * math.log(n))
        expect = f.aic + 2 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else math.inf
        assert f.aicc == pytest.approx(expect)
    assert sum(sf.weights.values()) == pytest.approx(1.0)
    assert sf.selected == max(sf.weights, key=sf.weights.get)
    w = criteria.akaike_weights([10.0, 12.0, math.inf])
    np.testing.assert_allclose(w, [1 / (1 + math.exp(-1)), math.exp(-1) / (1 + math.exp(-1)), 0.0])


def test_series_status_never_crashes():
    s = clean_series("a", [0, 10, 20], [5, "NaN", "NOT EVALUABLE"])
    assert s.status == "too few points" and "1 NOT EVALUABLE dropped" in s.describe()
    s = clean_series("b", [0, 10, 20, 30], [12, 12, 12, 12])
    assert s.status == "constant values"
    s = clean_series("c", [0, 10, 20, 30, "x"], [12, "too small to measure", float("nan"), 9, 3])
    assert s.status == "ok" and s.y.tolist() == [12, 5, 9]
    assert "TOO SMALL TO MEASURE set to 5 mm" in s.describe() and "NaN" in s.describe()
    sf = fit_values([0, 1], [1, 2], ["exponential"])
    assert sf.status == "too few points" and not sf.fits and math.isnan(sf.predict_mean([3])[0])


def _laleh_rows(patients_wanted=6):
    with open(LALEH, newline="") as fh:
        rows = list(csv.DictReader(fh))
    text_patients = []
    for r in rows:
        if r["sld_mm"] in ("NOT EVALUABLE", "TOO SMALL TO MEASURE") and r["patient"] not in text_patients:
            text_patients.append(r["patient"])
    pick = set(text_patients[:patients_wanted])
    return [{"series": r["patient"], "time_days": r["day"], "value": r["sld_mm"]} for r in rows if r["patient"] in pick], rows


def test_real_messy_rows_get_statuses():
    sub, rows = _laleh_rows(8)
    out = fit_table(sub, ["exponential", "stein"], [300.0])
    assert len(out["series"]) == 8
    details = " ".join(s["detail"] for s in out["series"])
    assert "NOT EVALUABLE dropped" in details and "TOO SMALL TO MEASURE set to 5 mm" in details
    for s in out["series"]:
        assert isinstance(s["status"], str) and s["status"]
        if s["status"] == "ok":
            assert set(s["models"]) == {"exponential", "stein"}
            assert set(s["models"]["stein"]["params"]) == {"g", "d"}
            assert s["models"]["stein"]["param_units"]["g"] == "1/day"
    # all 625 patients clean without an exception, and every status is one of the known ones
    groups = {}
    for r in rows:
        groups.setdefault(r["patient"], ([], []))
        groups[r["patient"]][0].append(r["day"])
        groups[r["patient"]][1].append(r["sld_mm"])
    st = {clean_series(k, t, y).status for k, (t, y) in groups.items()}
    assert st <= {"ok", "too few points", "constant values"} and "ok" in st


def test_interval_coverage_near_nominal_on_known_model():
    """Synthetic exponential series, last visit held out; calibrate on half, test on the other half."""
    rng = np.random.default_rng(7)
    cases = []
    t = np.array([0.0, 42, 84, 126, 168, 210])
    for i in range(80):
        k = rng.normal(0.002, 0.004)
        y = 30 * np.exp(k * t) * np.exp(0.08 * rng.standard_normal(t.size))
        sf = fit_values(t[:-1], y[:-1], ["exponential"], options=FitOptions(n_starts=2))
        cases.append((sf, t[-1], y[-1]))
    cal = calibrate(cases[:40])
    hits = []
    for sf, tn, yn in cases[40:]:
        iv = prediction_intervals(sf, [tn], cal)
        hits.append(iv.lo80[0] <= yn <= iv.hi80[0])
    cov = float(np.mean(hits))
    assert 0.65 <= cov <= 0.93, cov
    assert 0.3 < cal.s80 < 3.0


def test_prediction_intervals_ordered():
    sf = fit_values([0, 40, 80, 120], [30, 27, 26, 28], ["exponential", "stein"])
    iv = prediction_intervals(sf, [160, 200])
    assert np.all(iv.lo95 <= iv.lo80) and np.all(iv.lo80 <= iv.median) and np.all(iv.median <= iv.hi80)
    assert np.all(iv.hi80 <= iv.hi95)


def _run(argv):
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers()
    add_fit_parser(sub)
    a = ap.parse_args(["fit", *argv])
    return a.handler(a)


def test_cli_json_and_bad_input(tmp_path, capsys):
    p = tmp_path / "t.csv"
    p.write_text("series,time_days,value\nA,0,30\nA,40,27\nA,80,26\nA,120,29\nB,0,10\nB,30,NOT EVALUABLE\n")
    assert _run([str(p), "--models", "exponential,stein", "--predict", "160", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    a, b = out["series"]
    assert a["n"] == 4 and a["selected"] in ("exponential", "stein")
    for m in a["models"].values():
        assert {"params", "aic", "bic", "akaike_weight", "converged"} <= set(m)
    pr = a["predictions"][0]
    assert pr["lo95"] <= pr["lo80"] <= pr["mean"] <= pr["hi80"] <= pr["hi95"]
    assert b["status"] == "too few points" and b["predictions"] == []
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n")
    for argv in ([str(bad)], [str(p), "--models", "nope"], [str(p), "--predict", "x"], [str(tmp_path / "none.csv")]):
        assert _run(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("dtt fit:")


@pytest.mark.parametrize("content,problem", [
    (b"", "is empty"),                                        # no bytes at all
    (b"series,time_days,value\n", "no rows"),                 # header only
    (b"series,time_days,value\r\n\r\n\r\n", "no rows"),       # header and blank lines
    (b"\xef\xbb\xbfTime_Days,VALUE\n", "no rows"),            # BOM, other case, header only
    (b"x,y\n1,2\n", "time_days and value"),                   # CSV without the needed columns
    (b"time_days;value\n0;30\n40;27\n", "time_days and value"),  # semicolon-separated
    (b'{"time_days": [0, 40], "value": [30, 27]}\n', "time_days and value"),  # JSON, not CSV
    (b"PK\x03\x04\x14\x00\x06\x00\xff\xfe\x00\x00", "not UTF-8"),  # a spreadsheet (zip), not text
])
def test_cli_unusable_table_exits_2_with_one_line_naming_problem_and_fix(tmp_path, capsys, content, problem):
    p = tmp_path / "t.csv"
    p.write_bytes(content)
    for extra in ([], ["--json"]):
        assert _run([str(p), *extra]) == 2
        cap = capsys.readouterr()
        assert cap.out == ""
        err = cap.err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("dtt fit:") and problem in err[0], err
        assert " — " in err[0]  # problem — fix


def _search_bounds(name, y):
    """Each parameter's search range from models.json, on the scale it is searched on (log where 'log')."""
    spec = {m["name"]: m for m in json.loads(Path(growth_models.__file__).with_name("models.json").read_text())["models"]}
    out = {}
    for p in spec[name]["params"]:
        s = float(np.max(y)) if p["scale"] == "value" else 1.0
        lo, hi = p["lower"] * s, p["upper"] * s
        out[p["name"]] = (math.log(lo), math.log(hi), True) if p["log"] else (lo, hi, False)
    return out


def test_fit_pinned_at_a_bound_is_flagged_not_just_converged():
    # a shrinking series: dV/dt = a V^gamma with a > 0 can only grow, so the best power-law fit
    # pushes a down to its lower bound (and gamma with it) — the optimiser still stops normally
    t = np.array([0.0, 40, 80, 120, 160])
    y = np.array([40.0, 33, 29, 27, 26])
    sf = fit_values(t, y, ["power_law", "exponential", "stein"])
    pl = sf.fits["power_law"]
    b = _search_bounds("power_law", y)
    assert pl.converged  # what the audit saw: converged alone hides the problem
    assert pl.params["a"] == pytest.approx(math.exp(b["a"][0]), rel=1e-3)
    assert "a" in pl.at_bound
    # the flag follows its definition, checked on every fit against the bounds in models.json
    for name, f in sf.fits.items():
        if f.convention == "tumgr":
            continue
        for pn, v in f.params.items():
            lo, hi, log = _search_bounds(name, y)[pn]
            x = math.log(v) if log else v
            near = min(x - lo, hi - x) <= 1e-4 * (hi - lo)
            assert (pn in f.at_bound) == near, (name, pn, v, lo, hi)
    # an exponential decline is well inside the exponential model's range: nothing flagged
    assert sf.fits["exponential"].at_bound == () and -0.2 < sf.fits["exponential"].params["k"] < 0.5
    # a fixed parameter sits between bounds a hair apart by construction: it is not reported
    fx = fit_model("exponential", t, y, FitOptions(fixed={"y0": 40.0}))
    assert "y0" not in fx.at_bound
    # tumgr convention, bounds [0, 1]: a pure decline leaves no regrowth, g = 0 exactly at its bound
    td = np.array([0.0, 30, 60, 90, 120])
    st = fit_model("stein", td, 50 * np.exp(-0.01 * td), FitOptions(stein_convention="tumgr"))
    assert st.params["g"] == pytest.approx(0.0, abs=1e-6) and st.at_bound == ("g",)


def test_cli_json_reports_at_bound_and_what_converged_means(tmp_path, capsys):
    p = tmp_path / "t.csv"
    p.write_text("series,time_days,value\nA,0,40\nA,40,33\nA,80,29\nA,120,27\nA,160,26\n")
    assert _run([str(p), "--models", "power_law,exponential", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    m = out["series"][0]["models"]
    assert "a" in m["power_law"]["at_bound"] and m["power_law"]["converged"] is True
    assert m["exponential"]["at_bound"] == []
    assert "at_bound" in out["at_bound_note"] and "converged" in out["at_bound_note"]
    assert _run([str(p), "--models", "power_law,exponential"]) == 0
    text = capsys.readouterr().out
    line = next(s for s in text.splitlines() if s.strip().startswith("power_law"))
    assert "at bound: a" in line
