"""The twin's facts — the only source of numbers a narrative may use.

Read from the twin summary JSON the pipeline writes (schema in ``docs/TWIN_SUMMARY.md``).
Every number here may appear in the narrative (within its rounding); nothing else may.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from DTTLib.errors import InputError

#: Measurements below this confidence are named as low-confidence in every narrative.
LOW_CONFIDENCE = 0.5
#: How a narrative (or a caveat) names a lesion: "lesion X1" or a bare "L3"; the grounding check uses it.
LESION_ID = re.compile(r"\b(?:lesion|Lesion|LESION)\s+([A-Za-z]*\d[\w-]*)|\b(L\d+[A-Za-z]?)\b")


@dataclass(frozen=True)
class Measurement:
    lesion_id: str
    timepoint: str
    day: float
    ld_mm: float | None = None
    sa_mm: float | None = None
    volume_ml: float | None = None
    confidence: float | None = None
    source: str = ""

    @property
    def low_confidence(self) -> bool:
        return self.confidence is not None and self.confidence < LOW_CONFIDENCE


@dataclass(frozen=True)
class ResponseRow:
    timepoint: str
    day: float
    sum_mm: float | None = None
    change_from_baseline_pct: float | None = None
    change_from_nadir_pct: float | None = None
    response: str = ""


@dataclass(frozen=True)
class Parameter:
    name: str
    value: float
    low: float | None = None
    high: float | None = None
    unit: str = ""


@dataclass(frozen=True)
class GrowthFacts:
    model: str
    parameters: tuple[Parameter, ...] = ()
    doubling_time_days: float | None = None
    forecast_day: float | None = None
    forecast_mm: float | None = None
    forecast_low_mm: float | None = None
    forecast_high_mm: float | None = None


@dataclass(frozen=True)
class WhatIfFacts:
    scenario: str
    description: str = ""
    day: float | None = None
    difference_mm: float | None = None
    difference_pct: float | None = None


@dataclass(frozen=True)
class TherapyFacts:
    name: str
    start_day: float
    end_day: float | None = None


@dataclass(frozen=True)
class TwinFacts:
    patient_id: str
    measurements: tuple[Measurement, ...]
    response: tuple[ResponseRow, ...] = ()
    best_response: str = ""
    criteria: str = "RECIST 1.1"
    growth: GrowthFacts | None = None
    whatif: tuple[WhatIfFacts, ...] = ()
    therapy: tuple[TherapyFacts, ...] = ()
    clinical_notes: str = ""
    images: tuple[str, ...] = ()
    #: the response engine's warnings, verbatim: each qualifies the response, so every narrative shows them
    caveats: tuple[str, ...] = ()

    @property
    def lesion_ids(self) -> list[str]:
        return sorted({m.lesion_id for m in self.measurements})

    @property
    def timepoints(self) -> list[tuple[str, float]]:
        seen: dict[str, float] = {}
        for m in self.measurements:
            seen.setdefault(m.timepoint, m.day)
        for r in self.response:
            seen.setdefault(r.timepoint, r.day)
        return sorted(seen.items(), key=lambda item: item[1])

    @property
    def multi_timepoint(self) -> bool:
        return len(self.timepoints) > 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _num(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{where} must be a number, got {value!r}", "Fix the twin summary JSON.")
    return float(value)


def _rows(obj: dict[str, Any], key: str) -> list[dict[str, Any]]:
    rows = obj.get(key) or []
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise InputError(f"'{key}' must be a list of objects", "See docs/TWIN_SUMMARY.md.")
    return rows


def facts_from_dict(obj: dict[str, Any]) -> TwinFacts:
    """Parse and check a twin summary (see docs/TWIN_SUMMARY.md)."""
    if not isinstance(obj, dict):
        raise InputError("The twin summary must be a JSON object", "See docs/TWIN_SUMMARY.md.")
    measurements = []
    for i, row in enumerate(_rows(obj, "measurements")):
        where = f"measurements[{i}]"
        if "lesion_id" not in row or "timepoint" not in row or "day" not in row:
            raise InputError(f"{where} needs lesion_id, timepoint and day", "See docs/TWIN_SUMMARY.md.")
        measurements.append(Measurement(
            str(row["lesion_id"]), str(row["timepoint"]), _num(row["day"], f"{where}.day") or 0.0,
            _num(row.get("ld_mm"), f"{where}.ld_mm"), _num(row.get("sa_mm"), f"{where}.sa_mm"),
            _num(row.get("volume_ml"), f"{where}.volume_ml"),
            _num(row.get("confidence"), f"{where}.confidence"), str(row.get("source", ""))))
    if not measurements:
        raise InputError("The twin summary has no measurements", "Measure at least one lesion first.")
    response = tuple(ResponseRow(str(r["timepoint"]), _num(r.get("day"), "response.day") or 0.0,
                                 _num(r.get("sum_mm"), "response.sum_mm"),
                                 _num(r.get("change_from_baseline_pct"), "response.change_from_baseline_pct"),
                                 _num(r.get("change_from_nadir_pct"), "response.change_from_nadir_pct"),
                                 str(r.get("response", ""))) for r in _rows(obj, "response"))
    growth = None
    if obj.get("growth"):
        g = obj["growth"]
        params = tuple(Parameter(str(p["name"]), _num(p["value"], "growth.parameters.value") or 0.0,
                                 _num(p.get("low"), "growth.low"), _num(p.get("high"), "growth.high"),
                                 str(p.get("unit", ""))) for p in _rows(g, "parameters"))
        growth = GrowthFacts(str(g.get("model", "")), params,
                             _num(g.get("doubling_time_days"), "growth.doubling_time_days"),
                             _num(g.get("forecast_day"), "growth.forecast_day"),
                             _num(g.get("forecast_mm"), "growth.forecast_mm"),
                             _num(g.get("forecast_low_mm"), "growth.forecast_low_mm"),
                             _num(g.get("forecast_high_mm"), "growth.forecast_high_mm"))
    whatif = tuple(WhatIfFacts(str(w["scenario"]), str(w.get("description", "")),
                               _num(w.get("day"), "whatif.day"), _num(w.get("difference_mm"), "whatif.difference_mm"),
                               _num(w.get("difference_pct"), "whatif.difference_pct"))
                   for w in _rows(obj, "whatif"))
    therapy = tuple(TherapyFacts(str(t["name"]), _num(t["start_day"], "therapy.start_day") or 0.0,
                                 _num(t.get("end_day"), "therapy.end_day")) for t in _rows(obj, "therapy"))
    notes = obj.get("clinical_notes") or ""
    if not isinstance(notes, str):
        raise InputError("clinical_notes must be text", "See docs/TWIN_SUMMARY.md.")
    images = tuple(str(p) for p in (obj.get("images") or []))
    caveats = obj.get("caveats") or []  # absent in summaries written before caveats existed
    if not isinstance(caveats, list) or not all(isinstance(c, str) for c in caveats):
        raise InputError("caveats must be a list of text", "See docs/TWIN_SUMMARY.md.")
    return TwinFacts(str(obj.get("patient_id", "")), tuple(measurements), response,
                     str(obj.get("best_response", "")), str(obj.get("criteria", "RECIST 1.1")),
                     growth, whatif, therapy, notes, images, tuple(c.strip() for c in caveats if c.strip()))


def load_facts(path: Path | str) -> TwinFacts:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Twin summary not found: {path}", "Give the JSON file the pipeline wrote.")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno})",
                         "Fix the file or write it again.") from exc
    return facts_from_dict(obj)


def fact_numbers(facts: TwinFacts) -> list[float]:
    """Every number a narrative may cite: the facts, their absolute values, and simple counts."""
    values: list[float] = []

    def walk(value: Any) -> None:
        if isinstance(value, bool):
            return
        if isinstance(value, (int, float)):
            values.append(float(value))
            values.append(abs(float(value)))
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    data = facts.to_dict()
    data.pop("clinical_notes", None)
    walk(data)
    for m in facts.measurements:
        if m.confidence is not None:
            values.append(round(m.confidence * 100, 6))  # "confidence 40%"
    lows = [m for m in facts.measurements if m.low_confidence]
    values += [len(facts.lesion_ids), len(facts.timepoints), len(facts.measurements), len(lows),
               len(facts.therapy), len(facts.whatif)]
    for (_, d0), (_, d1) in zip(facts.timepoints, facts.timepoints[1:]):
        values.append(d1 - d0)
    values.append(LOW_CONFIDENCE)
    # structured labels written by the pipeline (not clinician free text) may hold numbers
    labels = [w.description for w in facts.whatif] + [w.scenario for w in facts.whatif]
    labels += [t.name for t in facts.therapy]
    for label in labels:
        values += [abs(float(x)) for x in re.findall(r"\d+(?:\.\d+)?", label)]
    # the engine's caveats are facts too (a narrative quotes them), signs included ("-30%")
    for caveat in facts.caveats:
        for x in re.findall(r"[-+−]?\d+(?:\.\d+)?", caveat):
            value = float(x.replace("−", "-"))
            values += [value, abs(value)]
    return values


def caveat_lesion_ids(facts: TwinFacts) -> set[str]:
    """Lesion ids the caveats name (e.g. a new lesion the engine set aside): a narrative that quotes
    a caveat names them from the facts."""
    found: set[str] = set()
    for caveat in facts.caveats:
        found.update(m.group(1) or m.group(2) for m in LESION_ID.finditer(caveat))
    return found
