"""``dtt fit TABLE.csv`` — fit growth models to size series from a CSV table.

TABLE columns: ``series`` (optional), ``time_days``, ``value`` (mm or mm³, see ``--unit``).
Bad input exits with status 2 and one line naming the problem and the fix; a bad *series*
(too few points, constant, text entries) never stops the run — it gets a status.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Iterable, Sequence

from DTTLib.errors import DTTError, InputError
from DTTLib.growth.fit import AT_BOUND_RTOL, FitOptions, SeriesFit, fit_series
from DTTLib.growth.models import get_model, parse_model_list
from DTTLib.growth.priors import PopulationPrior
from DTTLib.growth.series import STATUS_CONSTANT, clean_series, group_rows
from DTTLib.growth.uncertainty import Calibration, prediction_intervals

_CAL_FILE = Path(__file__).with_name("calibration.json")
ERROR_MODEL = "proportional: least squares on ln(value + offset)"
# what a forecast's "mean" is (its "method"); the Akaike ensemble alone is always "ensemble_mean"
MEAN_BLEND = "blend of ensemble and last value"
MEAN_ENSEMBLE = "Akaike-weighted ensemble mean"
MEAN_CONSTANT = "last value (constant series)"
AT_BOUND_NOTE = (f"converged: the optimiser stopped normally. at_bound: free parameters within {AT_BOUND_RTOL:g} "
                 "of their search range (log scale for log-searched parameters) of a bound; the data pull beyond "
                 "it, so such a value is a limit, not an estimate. Fits at a bound keep their Akaike weight "
                 "(a bound such as g = 0 or lam = 0 is often a natural value)")


def default_calibration(unit: str) -> Calibration | None:
    """Stretch factors learned by benchmarks/growth_validation.py (diameters only)."""
    if unit != "mm" or not _CAL_FILE.exists():
        return None
    return Calibration.from_dict(json.loads(_CAL_FILE.read_text(encoding="utf-8")))


def _num(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def _series_record(sf: SeriesFit, predict_days: Sequence[float], cal: Calibration | None) -> dict:
    rec = {"series": sf.series.name, "status": sf.status, "detail": sf.series.describe(), "n": sf.series.n,
           "models": {}, "selected": sf.selected, "criterion": sf.criterion if sf.fits else None,
           "predictions": []}
    for name, f in sf.fits.items():
        m = get_model(name)
        rec["models"][name] = {
            "params": {k: _num(v) for k, v in f.params.items()},
            "param_units": {p.name: p.unit.replace("value", sf.series.unit) for p in m.params},
            "aic": _num(f.aic), "aicc": _num(f.aicc), "bic": _num(f.bic),
            "akaike_weight": f.akaike_weight, "converged": f.converged, "at_bound": list(f.at_bound),
            "used_prior": f.used_prior,
            "convention": f.convention, "ensemble_excluded": f.excluded or None}
    if predict_days and (sf.fits or sf.series.status == STATUS_CONSTANT):
        iv = prediction_intervals(sf, predict_days, cal)
        last_day = float(sf.series.t[-1]) if sf.series.n else None
        last_val = float(sf.series.y[-1]) if sf.series.n else None
        for i, t in enumerate(iv.t):
            blended = iv.method is not None and iv.method[i] == "blend"
            w = float(iv.weight_last[i]) if iv.weight_last is not None else 0.0
            how = {"method": "blend" if blended else "ensemble",
                   "ensemble_weights": {m: f.akaike_weight for m, f in sf.fits.items() if f.akaike_weight > 0},
                   "ensemble_mean": _num(iv.ensemble_mean[i]) if iv.ensemble_mean is not None else _num(iv.mean[i]),
                   "weight_last_observation": w if blended else 0.0,
                   "last_observation": {"day": last_day, "value": last_val},
                   "intervals": ("calibrated residuals of the blended forecast" if blended and cal and cal.spread
                                 else "Laplace parameter draws mixed by Akaike weight"
                                 + (", stretched by the calibration" if cal else ", uncalibrated"))}
            if blended:
                how["formula"] = ("mean = exp(w*ln(last+c) + (1-w)*ln(ensemble_mean+c)) - c, "
                                  f"c = {sf.options.offset:g}, w = logistic(beta . [{', '.join(cal.blend['features'])}]), "
                                  f"beta = {[round(b, 4) for b in cal.blend['beta']]}, n = {sf.series.n}, "
                                  f"h = {float(t) - last_day:g} d")
            method = (MEAN_CONSTANT if sf.series.status == STATUS_CONSTANT
                      else MEAN_BLEND if blended else MEAN_ENSEMBLE)
            rec["predictions"].append({"day": float(t), "mean": _num(iv.mean[i]), "method": method,
                                       "ensemble_mean": how["ensemble_mean"],
                                       "lo80": _num(iv.lo80[i]), "hi80": _num(iv.hi80[i]),
                                       "lo95": _num(iv.lo95[i]), "hi95": _num(iv.hi95[i]), "how": how})
    return rec


def fit_table(rows: Iterable[dict], models: Sequence[str] | str | None = "all",
              predict_days: Sequence[float] = (), unit: str = "mm", seed: int = 0,
              calibration: Calibration | None = None, use_priors: bool = True, prior_max_n: int = 4,
              stein_convention: str = "as_given") -> dict:
    """Fit every series of a table. Series with ≤ ``prior_max_n`` points borrow a population
    prior from the table's longer series when there are enough of them (≥ 10)."""
    if unit not in ("mm", "mm3"):
        raise InputError(f"unit {unit!r} is not supported", "use mm (diameters) or mm3 (volumes)")
    names = parse_model_list(models)
    if stein_convention not in ("as_given", "tumgr"):
        raise InputError(f"Stein convention {stein_convention!r} is not supported", "use as_given or tumgr")
    opts = FitOptions(unit=unit, seed=seed, stein_convention=stein_convention)
    cal = calibration if calibration is not None else default_calibration(unit)
    groups = group_rows(rows)
    fits = [fit_series(clean_series(k, t, y, unit), names, opts) for k, (t, y) in groups.items()]
    if use_priors:
        pop = PopulationPrior.build(fits)
        if len(pop.ids) >= 10:
            for i, sf in enumerate(fits):
                if sf.series.fittable and sf.series.n <= prior_max_n:
                    pr = pop.priors_for(sf.series.t, sf.series.y, exclude=sf.series.name)
                    if pr:
                        fits[i] = fit_series(sf.series, names, opts, priors=pr)
    return {"unit": unit, "error_model": ERROR_MODEL, "models": names, "stein_convention": stein_convention,
            "at_bound_note": AT_BOUND_NOTE,
            "calibration": cal.to_dict() if cal else None,
            "series": [_series_record(sf, list(predict_days), cal) for sf in fits]}


def read_table(path: Path) -> list[dict]:
    """Read TABLE.csv; column names are matched case-insensitively."""
    if not path.is_file():
        raise InputError(f"table {str(path)!r} not found", "give the path of a CSV file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames:
                raise InputError(f"table {path.name} is empty",
                                 "give a CSV with a header time_days,value (and optionally series) and one row per visit")
            cols = {c.strip().lower(): c for c in reader.fieldnames if c is not None}
            if "time_days" not in cols or "value" not in cols:
                raise InputError(f"table {path.name} has columns {reader.fieldnames}",
                                 "it needs time_days and value (and optionally series)")
            rows = [{k: r.get(cols[k]) for k in ("series", "time_days", "value") if k in cols} for r in reader]
    except UnicodeDecodeError:
        raise InputError(f"table {path.name} is not UTF-8 text", "save it as CSV (UTF-8)") from None
    except csv.Error as exc:
        raise InputError(f"table {path.name} is not valid CSV ({exc})", "fix the file") from None
    if not rows:
        raise InputError(f"table {path.name} has a header but no rows",
                         "add one row per visit: series (optional), time_days, value")
    return rows


def _parse_days(spec: str | None) -> list[float]:
    if not spec:
        return []
    try:
        days = [float(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise InputError(f"--predict {spec!r} is not a list of days", "use e.g. --predict 100,200") from None
    if not all(math.isfinite(d) for d in days):
        raise InputError(f"--predict {spec!r} has a non-finite day", "use finite numbers")
    return days


def add_fit_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("fit", help="fit tumour growth models to size series",
                              description=__doc__.splitlines()[0])
    p.add_argument("table", type=Path, help="CSV with columns series (optional), time_days, value")
    p.add_argument("--models", default="all", help="all, or comma-separated model names")
    p.add_argument("--predict", default="", help="comma-separated days to forecast, e.g. 100,200")
    p.add_argument("--unit", default="mm", choices=("mm", "mm3"), help="diameters (mm) or volumes (mm3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stein-convention", default="as_given", choices=("as_given", "tumgr"),
                   help="tumgr: t = days since first measurement + 1, least squares on value/first (R tumgr); "
                        "such Stein fits are reported but kept out of the ensemble")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=run_fit)
    return p


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4g}"


def run_fit(args: argparse.Namespace) -> int:
    try:
        days = _parse_days(args.predict)
        out = fit_table(read_table(Path(args.table)), args.models, days, args.unit, args.seed,
                        stein_convention=args.stein_convention)
    except DTTError as exc:
        print(f"dtt fit: {exc.message}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    for s in out["series"]:
        print(f"series {s['series']}: n={s['n']} status: {s['detail']}")
        for name, m in s["models"].items():
            ps = ", ".join(f"{k}={_fmt(v)}" for k, v in m["params"].items())
            print(f"  {name:24s} w={m['akaike_weight']:.3f} AIC={_fmt(m['aic'])} BIC={_fmt(m['bic'])} "
                  f"{'ok' if m['converged'] else 'NOT CONVERGED'}"
                  + (f" (at bound: {', '.join(m['at_bound'])})" if m["at_bound"] else "") + f"  {ps}"
                  + (f"  [not in ensemble: {m['ensemble_excluded']}]" if m["ensemble_excluded"] else ""))
        if s["selected"]:
            print(f"  selected: {s['selected']} (by {s['criterion']})")
        for p in s["predictions"]:
            h = p["how"]
            print(f"  day {p['day']:g}: mean {_fmt(p['mean'])} 80% [{_fmt(p['lo80'])}, {_fmt(p['hi80'])}] "
                  f"95% [{_fmt(p['lo95'])}, {_fmt(p['hi95'])}]  (mean = {p['method']}; ensemble mean "
                  f"{_fmt(p['ensemble_mean'])}, weight of last value {h['weight_last_observation']:.2f})")
    return 0
