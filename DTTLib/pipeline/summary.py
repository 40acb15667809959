"""The twin as the narrative's facts (docs/TWIN_SUMMARY.md), built only from the twin record.

Everything here is copied or rounded from :class:`TwinState` — no number is computed that the
twin, the report and twin.json do not also hold — so the narrative's grounding check compares
its text with exactly what the user can see.
"""

from __future__ import annotations

from typing import Any

from DTTLib.response.display import recist_warnings
from DTTLib.twin.records import TwinState

SOD = "SOD"


def _r(value: Any, digits: int = 1) -> float | None:
    return None if value is None else round(float(value), digits)


def twin_summary(state: TwinState, timepoint_labels: list[str], images: list[str] | None = None,
                 confidences: dict[tuple[str, int], float] | None = None,
                 clinical_notes: str = "") -> dict[str, Any]:
    """The twin-summary dict for ``DTTLib.narrative.facts.facts_from_dict``."""
    confidences = confidences or {}
    measurements = []
    for row in state.lesion_table:
        index = int(row["timepoint"])
        entry: dict[str, Any] = {"lesion_id": row["lesion"], "timepoint": timepoint_labels[index],
                                 "day": row["day"], "ld_mm": _r(row["ld_mm"]), "sa_mm": _r(row["sa_mm"]),
                                 "volume_ml": _r(None if row["volume_mm3"] is None else row["volume_mm3"] / 1000.0, 2),
                                 "source": row.get("source", "")}
        if (row["lesion"], index) in confidences:
            entry["confidence"] = round(confidences[(row["lesion"], index)], 2)
        measurements.append(entry)
    response = []
    if state.recist:
        for index, tp in enumerate(state.recist["timepoints"]):
            response.append({"timepoint": timepoint_labels[index], "day": tp["day"], "sum_mm": _r(tp["sod_mm"]),
                             "change_from_baseline_pct": _r(tp["change_from_baseline_pct"]),
                             "change_from_nadir_pct": _r(tp["change_from_nadir_pct"]),
                             "response": tp["overall"] or "baseline"})
    summary: dict[str, Any] = {
        "patient_id": state.patient,
        "criteria": state.criteria,
        "measurements": measurements,
        "response": response,
        "best_response": (state.recist or {}).get("best_overall_response") or "",
        # the engine's warnings qualify the response: the narrative must pass each one on
        "caveats": recist_warnings(state.recist),
        "therapy": [{"name": t["name"], "start_day": t["start_day"], "end_day": t["end_day"]} for t in state.therapy],
        "whatif": _whatif(state),
        "clinical_notes": clinical_notes,
        "images": list(images or [])[:3],
    }
    growth = _growth(state)
    if growth:
        summary["growth"] = growth
    return summary


def _growth(state: TwinState) -> dict[str, Any] | None:
    series = state.series(SOD)
    if series is None or series.fit is None or not series.selected:
        return None
    from DTTLib.growth.models import get_model  # noqa: PLC0415

    fitted = series.models.get(series.selected, {})
    units = {p.name: p.unit.replace("value", series.unit) for p in get_model(series.selected).params}
    parameters = [{"name": name, "value": _r(value, 4), "unit": units.get(name, "")}
                  for name, value in (fitted.get("params") or {}).items() if value is not None]
    last = len(series.fit.t) - 1
    return {"model": series.selected, "parameters": parameters,
            "doubling_time_days": _r(series.doubling_time_days),
            "forecast_day": _r(series.fit.t[last], 0), "forecast_mm": _r(series.fit.median[last]),
            "forecast_low_mm": _r(series.fit.lo80[last]), "forecast_high_mm": _r(series.fit.hi80[last])}


def _whatif(state: TwinState) -> list[dict[str, Any]]:
    """Each scenario against the same engine's 'therapy as given' curve (like with like: the
    fitted SOD curve blends in the last observation after the last visit, scenarios do not)."""
    reference = next((c for c in state.whatif if "as given" in c.name), None)
    if reference is None or reference.median[-1] is None:
        return []
    rows = []
    for curve in state.whatif:
        if curve is reference or curve.median[-1] is None:
            continue
        difference = curve.median[-1] - reference.median[-1]
        rows.append({"scenario": curve.name, "description": f"{curve.label} Compared with: {reference.name}.",
                     "day": _r(curve.t[-1], 0), "difference_mm": _r(difference),
                     "difference_pct": _r(100.0 * difference / reference.median[-1]) if reference.median[-1] else None})
    return rows
