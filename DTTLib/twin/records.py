"""Records of the twin: what goes in (measurements, timepoints, therapy) and what comes out.

Every output number carries where it came from: lesion rows name their measurement source,
SOD and responses come from the RECIST engine on those rows, growth series name the rows they
were built from, and what-if curves are labelled hypotheses with their bands.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

SizeValue = float | str | None  # mm, "too_small", "not_evaluable", or None (not measured)


@dataclass
class LesionMeasurement:
    """One lesion at one timepoint, as measured (ids are the ids at *that* timepoint)."""

    lesion_id: str
    timepoint: int
    ld_mm: SizeValue
    sa_mm: float | None = None
    volume_mm3: float | None = None
    organ: str = "unspecified"
    nodal: bool = False
    target: bool | None = None  # baseline only; None = let RECIST choose
    source: str = "manual entry"


@dataclass
class TimepointInfo:
    day: float
    non_target: str = "none"  # none | CR | nonCR_nonPD | PD | NE
    scan: str = ""
    new_lesions: bool | None = None  # None = from tracking (a lesion with no earlier identity)
    #: iRECIST, the reader's call on a PD non-target after a non-target iUPD: True = increased further
    #: since the last visit (confirms iCPD), False = no further increase, None = not assessed (stays iUPD)
    non_target_further_increase: bool | None = None


@dataclass
class TherapyEntry:
    start_day: float
    end_day: float | None = None  # None = ongoing
    level: float = 1.0
    name: str = "therapy"

    def as_tuple(self) -> tuple[float, float, float]:
        return (float(self.start_day), math.inf if self.end_day is None else float(self.end_day), float(self.level))


@dataclass
class TwinInputs:
    patient: str
    timepoints: list[TimepointInfo]
    measurements: list[LesionMeasurement]
    therapy: list[TherapyEntry] = field(default_factory=list)
    identity: dict[str, Any] | None = None  # IdentityGraph.to_dict(); None = same id, same lesion
    immunotherapy: bool = False
    confirmation_required: bool = False
    min_sd_days: float = 42.0
    unit: str = "mm"


@dataclass
class Curve:
    """A curve on a day grid with bands; ``kind`` says what it is (fit or hypothesis)."""

    name: str
    kind: str  # "fitted ensemble" | "hypothesis"
    label: str
    t: list[float]
    median: list[float | None]
    lo80: list[float | None]
    hi80: list[float | None]
    lo95: list[float | None]
    hi95: list[float | None]


@dataclass
class SeriesGrowth:
    """Growth of one series (SOD or one lesion): observed points, fit status, fit and bands."""

    name: str
    unit: str
    source: str
    status: str
    detail: str
    t: list[float]
    y: list[float]
    selected: str | None = None
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    fit: Curve | None = None
    two_point_rate_per_day: float | None = None  # ln(y1/y0)/(t1-t0): measured, not modelled
    doubling_time_days: float | None = None  # ln 2 / rate (negative = halving time)


@dataclass
class TwinState:
    """The whole twin; JSON-serialisable, read by the module, the narrative and the report."""

    patient: str
    criteria: str
    timepoints: list[dict[str, Any]]
    therapy: list[dict[str, Any]]
    lesion_table: list[dict[str, Any]]
    recist_case: dict[str, Any] | None
    recist: dict[str, Any] | None
    growth: list[SeriesGrowth]
    whatif: list[Curve]
    messages: list[str]
    identity: dict[str, Any] | None = None
    tracks: dict[str, list[list[Any]]] = field(default_factory=dict)  # track id -> [[timepoint, lesion id], ...]

    def series(self, name: str) -> SeriesGrowth | None:
        return next((s for s in self.growth if s.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return _clean(asdict(self))

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TwinState":
        growth = []
        for g in d.get("growth", []):
            g = dict(g)
            g["fit"] = Curve(**g["fit"]) if g.get("fit") else None
            growth.append(SeriesGrowth(**g))
        return cls(**{**d, "growth": growth, "whatif": [Curve(**c) for c in d.get("whatif", [])]})

    @classmethod
    def from_json(cls, text: str) -> "TwinState":
        return cls.from_dict(json.loads(text))


def _clean(v: Any) -> Any:
    """NaN/inf → None, numpy → Python, tuples → lists: strict JSON."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.ndarray):
        return [_clean(x) for x in v.tolist()]
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def floats(a: Any) -> list[float | None]:
    return _clean(np.asarray(a, float))


def parse_therapy_log(text: str) -> list[TherapyEntry]:
    """``"0-120:1; 150-:0.5"`` → entries (start-end:level; an empty end means ongoing; level 1 if omitted)."""
    from DTTLib.errors import InputError  # noqa: PLC0415

    out = []
    for part in (p.strip() for p in (text or "").replace(",", ";").split(";")):
        if not part:
            continue
        span, _, level = part.partition(":")
        start, dash, end = span.strip().partition("-") if not span.strip().startswith("-") else \
            ("-" + span.strip()[1:].partition("-")[0], "-", span.strip()[1:].partition("-")[2])
        try:
            entry = TherapyEntry(float(start), float(end) if end.strip() else None,
                                 float(level) if level.strip() else 1.0)
        except ValueError:
            raise InputError(f"therapy log entry {part!r} is not start-end:level",
                             "write e.g. '0-120:1; 150-:0.5' (days from baseline; empty end = ongoing)") from None
        if not dash or (entry.end_day is not None and entry.end_day <= entry.start_day) or entry.level < 0:
            raise InputError(f"therapy log entry {part!r} is invalid",
                             "use start-end:level with end after start and level >= 0 (e.g. '0-:1')")
        out.append(entry)
    return out
