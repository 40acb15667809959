"""Growth-model validation on the shared real data (see docs/VALIDATION.md).

1. Trial data (Laleh 2022, studies 1-3, SLD in mm): for every patient with >= 4 usable visits,
   leave the last visit out, fit all models on the rest and forecast it. Absolute error (mm)
   per model, for the Akaike ensemble (with and without k-NN population priors) and for
   LOCF (last observation carried forward), always on the same patients.
   80 % / 95 % interval coverage before and after calibration; calibration is cross-fitted
   (2 folds by patient: learn the stretch factor on one fold, measure on the other).
2. Mouse LLC volumes (Benzekry 2014): fit every model to every mouse, rank models by AIC.

Run:  .venv/bin/python benchmarks/growth_validation.py --limit 120
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from DTTLib.growth.fit import FitOptions, fit_series  # noqa: E402
from DTTLib.growth.models import model_names  # noqa: E402
from DTTLib.growth.priors import PopulationPrior  # noqa: E402
from DTTLib.growth.series import Series, clean_series  # noqa: E402
from DTTLib.growth.uncertainty import calibrate, prediction_intervals  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "growth"
if not DATA.exists():
    DATA = Path("/work/shared/data/growth")


def load_trial(path: Path) -> list[Series]:
    groups: dict[str, tuple[list, list]] = {}
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            tl, yl = groups.setdefault(r["patient"], ([], []))
            tl.append(r["day"])
            yl.append(r["sld_mm"])
    return [clean_series(k, t, y, "mm") for k, (t, y) in groups.items()]


def load_mice(path: Path) -> list[Series]:
    groups: dict[str, tuple[list, list]] = {}
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh, delimiter="\t"):
            tl, yl = groups.setdefault(r["ID"], ([], []))
            tl.append(r["Time"])
            yl.append(r["Observation"])
    return [clean_series(k, t, y, "mm3") for k, (t, y) in groups.items()]


def _train(s: Series) -> Series:
    return clean_series(s.name, s.t[:-1], s.y[:-1], s.unit)


def _stats(err: list[float]) -> tuple[float, float]:
    a = np.asarray(err, float)
    return float(np.median(a)), float(np.mean(a))


def trial_benchmark(limit: int | None, starts: int, models: list[str], prior_max_n: int) -> dict:
    series = [s for s in load_trial(DATA / "laleh2022_studies1-3_sld.csv") if s.n >= 4]
    n_all = len(series)
    if limit and limit < len(series):  # evenly spaced, so all three studies are represented
        idx = np.linspace(0, len(series) - 1, limit).round().astype(int)
        series = [series[i] for i in idx]
    opts = FitOptions(unit="mm", n_starts=starts)
    t0 = time.perf_counter()
    fits = [fit_series(_train(s), models, opts) for s in series]
    t_fit = time.perf_counter() - t0
    pop = PopulationPrior.build(fits)
    pfits = []
    for s, sf in zip(series, fits):
        tr = sf.series
        if tr.fittable and tr.n <= prior_max_n:
            pr = pop.priors_for(tr.t, tr.y, exclude=s.name)
            pfits.append(fit_series(tr, models, opts, priors=pr) if pr else sf)
        else:
            pfits.append(sf)
    t_all = time.perf_counter() - t0
    tgt_t = np.array([s.t[-1] for s in series])
    tgt_y = np.array([s.y[-1] for s in series])
    locf = np.array([sf.series.y[-1] for sf in fits])
    res: dict = {"n_patients_eligible": n_all, "n_patients": len(series),
                 "fit_seconds": round(t_fit, 1), "total_fit_seconds": round(t_all, 1)}

    def ens_pred(fl):
        out = []
        for sf, t in zip(fl, tgt_t):
            m = sf.predict_mean([t])[0] if sf.series.status != "too few points" else math.nan
            out.append(m if np.isfinite(m) else sf.series.y[-1])  # unfittable → LOCF, counted
        return np.array(out)

    rows = {}
    locf_err = np.abs(locf - tgt_y)
    rows["LOCF"] = (len(series), *_stats(locf_err), *_stats(locf_err))
    for name, fl in (("ensemble", fits), ("ensemble + population prior", pfits)):
        e = np.abs(ens_pred(fl) - tgt_y)
        rows[name] = (len(series), *_stats(e), *_stats(locf_err))
    for m in models:
        e, le = [], []
        for sf, t, y, l in zip(fits, tgt_t, tgt_y, locf):
            f = sf.fits.get(m)
            if f is None or not np.isfinite(f.rss):
                continue
            p = float(f.predict([t], sf.exposure)[0])
            if np.isfinite(p):
                e.append(abs(p - y))
                le.append(abs(l - y))
        if e:
            rows[m] = (len(e), *_stats(e), *_stats(le))
    res["forecast"] = {k: {"n": v[0], "median_abs_err_mm": v[1], "mean_abs_err_mm": v[2],
                           "locf_median_mm": v[3], "locf_mean_mm": v[4]} for k, v in rows.items()}
    res["n_fallback_locf"] = int(sum(1 for sf in fits if not sf.fits or sf.selected is None))

    # calibration, cross-fitted by patient
    for label, fl in (("ensemble", fits), ("ensemble + population prior", pfits)):
        folds = np.arange(len(fl)) % 2
        cov80 = cov95 = raw80 = raw95 = 0
        widths, n_ev, cals = [], 0, []
        for k in (0, 1):
            train_cases = [(sf, t, y) for sf, t, y, f in zip(fl, tgt_t, tgt_y, folds) if f != k]
            cal = calibrate(train_cases)
            cals.append(cal.to_dict())
            for sf, t, y, f in zip(fl, tgt_t, tgt_y, folds):
                if f != k or not sf.fits:
                    continue
                iv = prediction_intervals(sf, [t], cal)
                ivr = prediction_intervals(sf, [t])
                if not np.isfinite(iv.lo80[0]):
                    continue
                n_ev += 1
                cov80 += iv.lo80[0] <= y <= iv.hi80[0]
                cov95 += iv.lo95[0] <= y <= iv.hi95[0]
                raw80 += ivr.lo80[0] <= y <= ivr.hi80[0]
                raw95 += ivr.lo95[0] <= y <= ivr.hi95[0]
                widths.append(iv.hi80[0] - iv.lo80[0])
        res.setdefault("intervals", {})[label] = {
            "n": n_ev, "raw_coverage80": raw80 / max(n_ev, 1), "raw_coverage95": raw95 / max(n_ev, 1),
            "calibrated_coverage80": cov80 / max(n_ev, 1), "calibrated_coverage95": cov95 / max(n_ev, 1),
            "median_width80_mm": float(np.median(widths)) if widths else math.nan, "calibration": cals}
    res["calibration_all"] = calibrate([(sf, t, y) for sf, t, y in zip(pfits, tgt_t, tgt_y)]).to_dict()
    res["whatif_ms"] = whatif_timing([sf for sf in pfits if sf.fits][:20])
    return res


def whatif_timing(fits) -> dict:
    """Time one scenario update (exposure rebuild + all draws on a 200-point grid)."""
    from DTTLib.growth.whatif import Scenario, WhatIf
    times = []
    for sf in fits:
        try:
            wi = WhatIf(sf, [(0.0, math.inf, 1.0)], np.linspace(0, 400, 200), n_draws=300)
        except Exception:  # noqa: BLE001 - a series without a therapy-aware fit is skipped
            continue
        for sc in (Scenario("natural_history"), Scenario("shift_start", shift_days=28),
                   Scenario("regimen", multiplier=0.5), Scenario("holiday", holiday=(60, 120)),
                   Scenario("resistance_onset", onset_day=90)):
            t0 = time.perf_counter()
            wi.run(sc)
            times.append(1000 * (time.perf_counter() - t0))
    a = np.array(times) if times else np.array([math.nan])
    return {"n_updates": len(times), "median_ms": float(np.median(a)), "max_ms": float(np.max(a))}


def mouse_benchmark(starts: int, models: list[str], fixed_y0: float | None = None) -> dict:
    """fixed_y0: known size at day 0 (Benzekry 2014 fix V(0) = 1 mm³, the 10⁶ injected cells)."""
    mice = load_mice(DATA / "benzekry_llc_mouse_volumes.tsv")
    opts = FitOptions(unit="mm3", n_starts=starts, fixed={"y0": fixed_y0} if fixed_y0 else {})
    aics = {m: [] for m in models}
    ranks = {m: [] for m in models}
    best = {m: 0 for m in models}
    for s in mice:
        sf = fit_series(s, models, opts, )
        if not sf.fits:
            continue
        vals = np.array([sf.fits[m].aic for m in models])
        order = np.argsort(np.argsort(vals))
        for m, v, r in zip(models, vals, order):
            aics[m].append(v)
            ranks[m].append(r + 1)
        best[models[int(np.argmin(vals))]] += 1
    table = {m: {"mean_aic": float(np.mean(aics[m])), "mean_rank": float(np.mean(ranks[m])),
                 "n_best": best[m]} for m in models}
    return {"n_mice": len(mice), "models": dict(sorted(table.items(), key=lambda kv: kv[1]["mean_aic"]))}


def to_markdown(res: dict) -> str:
    tr = res["trial"]
    out = [f"Patients: {tr['n_patients']} of {tr['n_patients_eligible']} eligible (>= 4 usable visits); "
           f"fits took {tr['total_fit_seconds']} s.", "",
           "| forecast of the held-out last visit | n | median abs err (mm) | mean abs err (mm) | LOCF median / mean on same n (mm) |",
           "|---|---|---|---|---|"]
    for k, v in tr["forecast"].items():
        out.append(f"| {k} | {v['n']} | {v['median_abs_err_mm']:.2f} | {v['mean_abs_err_mm']:.2f} | "
                   f"{v['locf_median_mm']:.2f} / {v['locf_mean_mm']:.2f} |")
    out += ["", "| intervals (cross-fitted calibration) | n | raw 80 % cov | calibrated 80 % cov | raw 95 % cov | calibrated 95 % cov | median 80 % width (mm) |",
            "|---|---|---|---|---|---|---|"]
    for k, v in tr["intervals"].items():
        out.append(f"| {k} | {v['n']} | {v['raw_coverage80']:.1%} | {v['calibrated_coverage80']:.1%} | "
                   f"{v['raw_coverage95']:.1%} | {v['calibrated_coverage95']:.1%} | {v['median_width80_mm']:.1f} |")
    w = tr["whatif_ms"]
    out += ["", f"What-if update (300 draws, 200 time points): median {w['median_ms']:.1f} ms, max {w['max_ms']:.1f} ms "
            f"over {w['n_updates']} updates."]
    for key, title in (("mouse", "y0 free"), ("mouse_fixed_y0", "y0 fixed at 1 mm³ on day 0, as Benzekry 2014")):
        mo = res[key]
        out += ["", f"Mouse LLC volumes ({mo['n_mice']} mice, {title}), models by mean AIC (lower is better):", "",
                "| model | mean AIC | mean rank | best in n mice |", "|---|---|---|---|"]
        for m, v in mo["models"].items():
            out.append(f"| {m} | {v['mean_aic']:.2f} | {v['mean_rank']:.2f} | {v['n_best']} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="number of trial patients (evenly spaced)")
    ap.add_argument("--starts", type=int, default=4, help="multi-start count per model")
    ap.add_argument("--models", default="all")
    ap.add_argument("--prior-max-n", type=int, default=4, help="use population priors for training series this short")
    ap.add_argument("--write-calibration", action="store_true",
                    help="store the stretch factors learned on all evaluated patients in DTTLib/growth/calibration.json")
    ap.add_argument("--json", type=Path, default=None, help="also write the raw numbers here")
    a = ap.parse_args(argv)
    models = model_names() if a.models == "all" else a.models.split(",")
    t0 = time.perf_counter()
    res = {"machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}",
           "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
           "trial": trial_benchmark(a.limit, a.starts, models, a.prior_max_n),
           "mouse": mouse_benchmark(a.starts, models),
           "mouse_fixed_y0": mouse_benchmark(a.starts, models, fixed_y0=1.0)}
    res["seconds"] = round(time.perf_counter() - t0, 1)
    print(to_markdown(res))
    print(f"\nTotal {res['seconds']} s on {res['machine']}")
    if a.write_calibration:
        cal = res["trial"]["calibration_all"] | {"source": "benchmarks/growth_validation.py on Laleh 2022 studies 1-3, "
                                                 f"{res['trial']['n_patients']} patients, last visit held out; SLD in mm"}
        (ROOT / "DTTLib" / "growth" / "calibration.json").write_text(json.dumps(cal, indent=1) + "\n")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
