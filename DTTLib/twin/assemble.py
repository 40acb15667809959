"""Measurements + identities + therapy log → RECIST case → responses → growth fits → what-if.

``build_twin`` is the one entry point; it never crashes on too few timepoints: each part says
what it could not do in ``TwinState.messages`` and in the per-series ``status``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from DTTLib.errors import InputError
from DTTLib.growth.cli import default_calibration
from DTTLib.growth.fit import FitOptions, SeriesFit, fit_series
from DTTLib.growth.models import Exposure, get_model
from DTTLib.growth.series import clean_series
from DTTLib.growth.uncertainty import Calibration, prediction_intervals
from DTTLib.response.cli import recist_case_from_json
from DTTLib.tracking.records import IdentityGraph
from DTTLib.twin.identity import Identities, resolve
from DTTLib.twin.records import (
    Curve,
    LesionMeasurement,
    SeriesGrowth,
    TherapyEntry,
    TwinInputs,
    TwinState,
    floats,
)
from DTTLib.twin.whatif import DEFAULT_SCENARIOS, TwinWhatIf

DEFAULT_MODELS = ("exponential", "gompertz", "stein", "claret")
SOD_SERIES = "SOD"
TOO_SMALL, NOT_EVALUABLE = "too_small", "not_evaluable"


def exposure_of(inputs: TwinInputs) -> Exposure | None:
    """The therapy log as E(t); None (continuous therapy from day 0) when no log is given."""
    return exposure_from_log(inputs.therapy)


def exposure_from_log(therapy: Sequence[TherapyEntry]) -> Exposure | None:
    return Exposure.from_log([t.as_tuple() for t in therapy]) if therapy else None


def _combine(values: list[LesionMeasurement]) -> tuple[Any, float | None]:
    """Fragments of one lesion (split) → one LD (sum) and SA (largest)."""
    lds = [v.ld_mm for v in values]
    if any(ld is None or ld == NOT_EVALUABLE for ld in lds):
        return NOT_EVALUABLE, None
    if all(ld == TOO_SMALL for ld in lds):
        return TOO_SMALL, None
    total = sum(5.0 if ld == TOO_SMALL else float(ld) for ld in lds)
    sas = [v.sa_mm for v in values if v.sa_mm is not None]
    return total, (max(sas) if sas else None)


def _lesion_json(lid: str, base: LesionMeasurement, ld: Any, sa: float | None, target: Any = None) -> dict:
    d = {"id": lid, "organ": base.organ, "nodal": base.nodal, "ld_mm": ld, "target": target}
    if sa is not None or base.nodal:
        d["sa_mm"] = sa if sa is not None else (0.0 if ld == 0 else None)
    if isinstance(ld, (int, float)) and d.get("sa_mm") is not None and d["sa_mm"] > ld:
        d["sa_mm"] = ld
    return d


def recist_case(inputs: TwinInputs, ids: Identities) -> tuple[dict[str, Any], dict[str, list], list[str]]:
    """The RECIST case JSON (issue 4 schema), each baseline lesion's LD series, and notes."""
    notes: list[str] = []
    by_key = {(m.timepoint, m.lesion_id): m for m in inputs.measurements}
    baseline = [m for m in inputs.measurements if m.timepoint == 0]
    first: dict[str, LesionMeasurement] = {}
    for k in sorted(by_key):
        first.setdefault(ids.owner[k], by_key[k])
    series: dict[str, list] = {m.lesion_id: [] for m in baseline}
    tps = []
    for t, info in enumerate(inputs.timepoints):
        groups: dict[str, list[LesionMeasurement]] = {}
        for k in sorted(by_key):
            if k[0] == t:
                groups.setdefault(ids.owner[k], []).append(by_key[k])
        lesions, new = [], []
        for b in baseline:
            lid = b.lesion_id
            if lid in groups:
                ld, sa = _combine(groups[lid])
                if len(groups[lid]) > 1:
                    notes.append(f"day {info.day:g}: {lid} split into {len(groups[lid])} parts; LDs summed (RECIST 1.1)")
            elif (t, lid) in ids.merged_away:
                ld, sa = 0.0, (0.0 if b.nodal else None)
                notes.append(f"day {info.day:g}: {lid} merged into {ids.merged_away[(t, lid)]}; counted 0 mm (RECIST 1.1)")
            elif (t, lid) in ids.disappeared:
                ld, sa = 0.0, (0.0 if b.nodal else None)
                notes.append(f"day {info.day:g}: {lid} not found by tracking; counted as gone (0 mm) — check the scan")
            else:
                ld, sa = NOT_EVALUABLE, None
                if t > 0:
                    notes.append(f"day {info.day:g}: {lid} not measured; not evaluable")
            lesions.append(_lesion_json(lid, b, ld, sa, b.target if t == 0 else None))
            series[lid].append((float(info.day), ld))
        for owner, group in groups.items():
            if owner in ids.new_tracks:
                ld, sa = _combine(group)
                new.append(_lesion_json(owner, first[owner], ld, sa))
        tp: dict[str, Any] = {"day": float(info.day), "lesions": lesions, "non_target": info.non_target}
        if t > 0:
            tracked_new = any(n["ld_mm"] != 0 for n in new)
            flag = tracked_new if info.new_lesions is None else bool(info.new_lesions)
            if info.new_lesions is not None and info.new_lesions != tracked_new:
                notes.append(f"day {info.day:g}: new lesions set to {flag} by the user (tracking found {tracked_new})")
            tp["new_lesions"] = flag
            if flag:
                tp["new_lesion_measurements"] = new
            if info.non_target_further_increase is not None:
                tp["non_target_further_increase"] = bool(info.non_target_further_increase)
        tps.append(tp)
    case = {"immunotherapy": inputs.immunotherapy, "confirmation_required": inputs.confirmation_required,
            "min_sd_days": inputs.min_sd_days, "timepoints": tps}
    return case, series, notes


def _two_point(g: SeriesGrowth) -> None:
    if len(g.t) == 2 and g.y[0] > 0 and g.y[1] > 0 and g.t[1] > g.t[0]:
        g.two_point_rate_per_day = math.log(g.y[1] / g.y[0]) / (g.t[1] - g.t[0])
        if g.two_point_rate_per_day != 0:
            g.doubling_time_days = math.log(2.0) / g.two_point_rate_per_day


def _growth(name: str, source: str, t: Sequence, y: Sequence, models: Sequence[str], opts: FitOptions,
            ex: Exposure | None, grid: np.ndarray, cal: Calibration | None) -> tuple[SeriesGrowth, SeriesFit]:
    series = clean_series(name, t, y, opts.unit)
    sf = fit_series(series, models, opts, ex)
    g = SeriesGrowth(name, opts.unit, source, sf.status, series.describe(), series.t.tolist(), series.y.tolist(),
                     sf.selected)
    for m, f in sf.fits.items():
        g.models[m] = {"params": {k: float(v) for k, v in f.params.items()}, "aicc": f.aicc, "aic": f.aic,
                       "akaike_weight": f.akaike_weight, "converged": f.converged,
                       "uses_therapy": get_model(m).uses_exposure}
    _two_point(g)
    if sf.status in ("ok", "constant values"):
        iv = prediction_intervals(sf, grid, cal)
        weights = ", ".join(f"{m} {f.akaike_weight:.0%}" for m, f in sf.fits.items() if f.akaike_weight >= 0.005)
        label = (f"Fitted ensemble ({weights or 'last value'}) of {series.n} measurements; median with "
                 f"80 %/95 % prediction bands{' (calibrated)' if cal else ''}. Beyond the last visit this is a "
                 f"forecast under the model, not a certainty.")
        g.fit = Curve(f"{name} fit", "fitted ensemble", label, floats(grid), floats(iv.median), floats(iv.lo80),
                      floats(iv.hi80), floats(iv.lo95), floats(iv.hi95))
    return g, sf


def build_twin(inputs: TwinInputs, models: Sequence[str] = DEFAULT_MODELS, horizon_days: float = 112.0,
               grid_points: int = 121, scenarios=DEFAULT_SCENARIOS, calibration: Calibration | None = None,
               fit_lesions: bool = True) -> tuple[TwinState, TwinWhatIf | None]:
    """Assemble the twin. Returns the state and, when the SOD has a therapy-aware fit, the live
    what-if engine (its ``run`` takes a few ms, for sliders)."""
    if not inputs.timepoints:
        raise InputError("the twin has no timepoints", "assign at least a baseline scan and its day")
    if not any(m.timepoint == 0 for m in inputs.measurements):
        raise InputError("no lesion is measured at baseline (timepoint 0)", "measure the baseline lesions first")
    bad = [m for m in inputs.measurements if not 0 <= m.timepoint < len(inputs.timepoints)]
    if bad:
        raise InputError(f"lesion {bad[0].lesion_id} is at timepoint {bad[0].timepoint}, which does not exist",
                         f"use timepoint indices 0..{len(inputs.timepoints) - 1}")
    graph = IdentityGraph.from_dict(inputs.identity) if inputs.identity else None
    ids = resolve(inputs.measurements, graph)
    messages: list[str] = []
    case, ld_series, notes = recist_case(inputs, ids)
    messages += notes
    recist = recist_case_from_json(case)
    roles = {d["id"]: d["role"] for d in recist["lesions"]}
    roles.update({d["id"]: "new lesion (target)" for d in recist.get("new_lesion_targets", [])})
    days = [float(tp.day) for tp in inputs.timepoints]
    table = []
    for m in sorted(inputs.measurements, key=lambda m: (m.timepoint, m.lesion_id)):
        owner = ids.owner[(m.timepoint, m.lesion_id)]
        ld = m.ld_mm if isinstance(m.ld_mm, (int, float)) else None
        table.append({"track": owner, "lesion": m.lesion_id, "timepoint": m.timepoint, "day": days[m.timepoint],
                      "ld_mm": ld, "ld_note": "" if ld is not None else str(m.ld_mm or NOT_EVALUABLE),
                      "sa_mm": m.sa_mm, "volume_mm3": m.volume_mm3, "organ": m.organ, "nodal": m.nodal,
                      "role": "new lesion" if owner in ids.new_tracks else roles.get(owner, ""),
                      "source": m.source})
    ex = exposure_of(inputs)
    if ex is None:
        messages.append("no therapy log: therapy-aware models assume continuous therapy from day 0")
    opts = FitOptions(unit=inputs.unit)
    cal = calibration if calibration is not None else default_calibration(inputs.unit)
    grid = np.linspace(min(days), max(days) + horizon_days, grid_points)
    sod_t = [tp["day"] for tp in recist["timepoints"] if tp["sod_mm"] is not None]
    sod_y = [tp["sod_mm"] for tp in recist["timepoints"] if tp["sod_mm"] is not None]
    growth, sod_fit = [], None
    if recist["targets"]:
        g, sod_fit = _growth(SOD_SERIES, "RECIST sum of target diameters (recist.timepoints[].sod_mm)",
                             sod_t, sod_y, models, opts, ex, grid, cal)
        growth.append(g)
    if fit_lesions:
        for lid, pts in ld_series.items():
            g, _ = _growth(f"LD {lid}", f"longest diameter of {lid} per timepoint (lesion table)",
                           [p[0] for p in pts], [p[1] for p in pts], models, opts, ex, grid, cal)
            growth.append(g)
    if len(days) < 3:
        messages.append(f"{len(days)} timepoint(s): growth models need >= 3 measurements; "
                        "only the measured two-point rate is shown" if len(days) == 2 else
                        "a single timepoint: no response or growth can be assessed yet")
    engine, curves = None, []
    if sod_fit is not None and sod_fit.status == "ok":
        try:
            engine = TwinWhatIf(sod_fit, ex, grid, cal)
        except InputError as exc:
            messages.append(f"what-if unavailable: {exc.problem}")
        if engine is not None:
            curves = [engine.run(s) for s in scenarios]
    elif recist["targets"]:
        messages.append("what-if scenarios need a growth fit of the SOD (>= 3 timepoints)")
    state = TwinState(inputs.patient, recist["criteria"],
                      [{"index": i, "day": tp.day, "scan": tp.scan, "non_target": tp.non_target,
                        "non_target_further_increase": tp.non_target_further_increase}
                       for i, tp in enumerate(inputs.timepoints)],
                      [{"start_day": t.start_day, "end_day": t.end_day, "level": t.level, "name": t.name}
                       for t in inputs.therapy],
                      table, case, recist, growth, curves, messages, inputs.identity,
                      {tid: [list(k) for k in keys] for tid, keys in ids.tracks.items()})
    return state, engine


def whatif_from_state(state: TwinState, models: Sequence[str] | None = None,
                      calibration: Calibration | None = None) -> TwinWhatIf | None:
    """The live what-if engine of a saved twin (``twin.json`` or the scene's state node).

    A saved twin keeps its SOD series, the models it fitted and the day grid, not the fitted
    objects; the fit is deterministic, so refitting the saved series with the saved models
    gives the engine the run had (``Testing/test_pipeline_run.py`` checks the curves match).
    None when the saved twin had no usable SOD fit."""
    sod = state.series(SOD_SERIES)
    if sod is None or sod.status != "ok" or sod.fit is None:
        return None
    therapy = [TherapyEntry(float(t["start_day"]), None if t.get("end_day") is None else float(t["end_day"]),
                            float(t.get("level", 1.0)), str(t.get("name", "therapy"))) for t in state.therapy]
    ex = exposure_from_log(therapy)
    opts = FitOptions(unit=sod.unit)
    chosen = tuple(models or sod.models or DEFAULT_MODELS)
    fit = fit_series(clean_series(SOD_SERIES, sod.t, sod.y, sod.unit), chosen, opts, ex)
    if fit.status != "ok":
        return None
    cal = calibration if calibration is not None else default_calibration(sod.unit)
    return TwinWhatIf(fit, ex, np.asarray(sod.fit.t, float), cal)
