"""The ``case.json`` of a case folder: timepoints, therapy log and box prompts.

Example (see docs/CASE_FORMAT.md)::

    {"patient": "PHANTOM-001",
     "timepoints": [{"id": "t0", "path": "tp0.nrrd", "day": 0},
                    {"id": "t1", "path": "dicom/followup", "date": "2024-03-01"}],
     "therapy": [{"start_day": 28, "end_day": 196, "dose_level": 1.0, "agent": "drug"}],
     "immunotherapy": false,
     "lesions": [{"id": "L1", "organ": "liver", "nodal": false,
                  "box": {"timepoint": "t0", "ijk": [40, 52, 20, 75, 80, 20]}}]}

Days are relative to the first timepoint; ``date`` (ISO) may be given instead of ``day``.
A timepoint may carry the reader's ``non_target`` status and ``new_lesions`` flag (RECIST
inputs that box prompts cannot give).
``modality`` ("CT", "MR", …) may be given for the case and overridden per timepoint; DICOM
series carry their own. It selects how slices are prepared for segmentation (the rules by
modality and organ are data: the "segmentation" section of ``window_presets.json``).
A box is ``ijk`` (voxel indices I0,J0,K0,I1,J1,K1 of that timepoint's image as read) or
``ras`` (the same six numbers in RAS millimetres), as in ``dtt segment``. More boxes for
later timepoints go in ``boxes``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from DTTLib.errors import InputError

NON_TARGET_STATES = ("none", "CR", "nonCR_nonPD", "PD", "NE")


@dataclass(frozen=True)
class TimepointSpec:
    timepoint_id: str
    path: Path
    day: float
    non_target: str = "none"  # RECIST non-target status the reader assessed: none|CR|nonCR_nonPD|PD|NE
    new_lesions: bool = False  # unequivocal new lesions seen by the reader
    modality: str = ""  # "CT", "MR", … ("" = the case's, or the DICOM series' own)


@dataclass(frozen=True)
class BoxPrompt:
    timepoint_id: str
    coordinates: tuple[float, float, float, float, float, float]
    space: str  # "ijk" or "ras"


@dataclass(frozen=True)
class LesionSpec:
    lesion_id: str
    organ: str
    nodal: bool
    boxes: tuple[BoxPrompt, ...]


@dataclass(frozen=True)
class TherapySpec:
    start_day: float
    end_day: float
    dose_level: float
    agent: str = ""


@dataclass(frozen=True)
class CaseSpec:
    case_dir: Path
    patient: str
    timepoints: tuple[TimepointSpec, ...]
    lesions: tuple[LesionSpec, ...]
    therapy: tuple[TherapySpec, ...] = ()
    immunotherapy: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    modality: str = ""

    def timepoint(self, timepoint_id: str) -> TimepointSpec:
        return next(t for t in self.timepoints if t.timepoint_id == timepoint_id)


def load_case(case_dir: str | Path) -> CaseSpec:
    """Read and check ``CASE_DIR/case.json``; every problem is named with its fix."""
    case_dir = Path(case_dir)
    path = case_dir / "case.json"
    if not case_dir.is_dir():
        raise InputError(f"case folder '{case_dir}' does not exist", "check the path")
    if not path.exists():
        raise InputError(f"'{case_dir}' has no case.json", "write one (see docs/CASE_FORMAT.md)")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputError(f"case.json is not valid JSON (line {error.lineno}: {error.msg})",
                         "fix the syntax") from None
    if not isinstance(raw, dict):
        raise InputError("case.json must hold an object", "see docs/CASE_FORMAT.md")
    modality = _modality(raw.get("modality", ""), "modality")
    timepoints = _timepoints(raw.get("timepoints"), case_dir)
    known = {t.timepoint_id for t in timepoints}
    lesions = _lesions(raw.get("lesions", []), known)
    return CaseSpec(case_dir=case_dir, patient=str(raw.get("patient") or case_dir.name),
                    timepoints=timepoints, lesions=lesions,
                    therapy=_therapy(raw.get("therapy", [])),
                    immunotherapy=bool(raw.get("immunotherapy", False)),
                    options=dict(raw.get("options", {})), modality=modality)


def _modality(raw: Any, where: str) -> str:
    if raw in (None, ""):
        return ""
    if not isinstance(raw, str) or not raw.strip().isalnum():
        raise InputError(f"{where} {raw!r} is not a modality code", 'use a DICOM modality such as "CT" or "MR"')
    return raw.strip().upper()


def _timepoints(raw: Any, case_dir: Path) -> tuple[TimepointSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise InputError("case.json lists no timepoints", 'add "timepoints": [{"id", "path", "day"}, …]')
    first_date: dt.date | None = None
    out = []
    for number, entry in enumerate(raw):
        where = f"timepoints[{number}]"
        if not isinstance(entry, dict) or "path" not in entry:
            raise InputError(f"{where} needs a 'path'", "give the image file or DICOM folder of that scan")
        timepoint_id = str(entry.get("id") or f"t{number}")
        path = case_dir / str(entry["path"])
        if not path.exists():
            raise InputError(f"{where} ('{timepoint_id}'): '{entry['path']}' not found in the case folder",
                             "check the file name, or remove the timepoint")
        if "day" in entry:
            day = _number(entry["day"], f"{where}.day")
        elif "date" in entry:
            try:
                date = dt.date.fromisoformat(str(entry["date"]))
            except ValueError:
                raise InputError(f"{where}.date '{entry['date']}' is not an ISO date", "use YYYY-MM-DD") from None
            first_date = first_date or date
            day = float((date - first_date).days)
        else:
            raise InputError(f"{where} ('{timepoint_id}') has neither 'day' nor 'date'", "add one")
        non_target = str(entry.get("non_target", "none"))
        if non_target not in NON_TARGET_STATES:
            raise InputError(f"{where}.non_target '{non_target}' is not one of {NON_TARGET_STATES}",
                             "use the RECIST non-target status as assessed by the reader")
        out.append(TimepointSpec(timepoint_id, path, day, non_target, bool(entry.get("new_lesions", False)),
                                 _modality(entry.get("modality", ""), f"{where}.modality")))
    ids = [t.timepoint_id for t in out]
    if len(set(ids)) != len(ids):
        raise InputError(f"timepoint ids repeat: {ids}", "give each timepoint its own id")
    days = [t.day for t in out]
    if any(b <= a for a, b in zip(days, days[1:])):
        raise InputError(f"timepoint days must increase in the order listed, got {days}",
                         "list the scans from first to last")
    return tuple(out)


def _lesions(raw: Any, known: set[str]) -> tuple[LesionSpec, ...]:
    if not isinstance(raw, list):
        raise InputError("'lesions' must be a list", "see docs/CASE_FORMAT.md")
    out, seen = [], set()
    for number, entry in enumerate(raw):
        where = f"lesions[{number}]"
        if not isinstance(entry, dict) or not entry.get("id"):
            raise InputError(f"{where} needs an 'id'", "e.g. \"L1\"")
        lesion_id = str(entry["id"])
        if lesion_id in seen:
            raise InputError(f"lesion id '{lesion_id}' appears twice", "give each lesion its own id")
        seen.add(lesion_id)
        boxes = [entry["box"]] if "box" in entry else []
        boxes += list(entry.get("boxes", []))
        if not boxes:
            raise InputError(f"lesion '{lesion_id}' has no box", 'add "box": {"timepoint": "t0", "ijk": [...]}')
        prompts = tuple(_box(box, f"{where} ('{lesion_id}')", known) for box in boxes)
        out.append(LesionSpec(lesion_id, str(entry.get("organ", "unknown")), bool(entry.get("nodal", False)), prompts))
    return tuple(out)


def _box(raw: Any, where: str, known: set[str]) -> BoxPrompt:
    if not isinstance(raw, dict):
        raise InputError(f"{where}: a box must be an object", 'e.g. {"timepoint": "t0", "ijk": [...]}')
    timepoint = str(raw.get("timepoint", ""))
    if timepoint not in known:
        raise InputError(f"{where}: box timepoint '{timepoint}' is not one of {sorted(known)}",
                         "use a timepoint id from the list")
    spaces = [space for space in ("ijk", "ras") if space in raw]
    if len(spaces) != 1:
        raise InputError(f"{where}: give the box as exactly one of 'ijk' or 'ras'", "six numbers")
    values = raw[spaces[0]]
    if not isinstance(values, list) or len(values) != 6:
        raise InputError(f"{where}: box needs six numbers I0,J0,K0,I1,J1,K1", "see dtt segment --help")
    numbers = tuple(_number(v, f"{where} box") for v in values)
    if spaces[0] == "ijk" and any(v != int(v) for v in numbers):
        raise InputError(f"{where}: voxel box has non-integer indices {numbers}", "use whole voxel indices")
    return BoxPrompt(timepoint, numbers, spaces[0])  # type: ignore[arg-type]


def _therapy(raw: Any) -> tuple[TherapySpec, ...]:
    if not isinstance(raw, list):
        raise InputError("'therapy' must be a list", 'e.g. [{"start_day": 0, "end_day": 84, "dose_level": 1}]')
    out = []
    for number, entry in enumerate(raw):
        where = f"therapy[{number}]"
        start = _number(entry.get("start_day"), f"{where}.start_day")
        end = _number(entry.get("end_day", math.inf), f"{where}.end_day")
        level = _number(entry.get("dose_level", 1.0), f"{where}.dose_level")
        if end <= start or level < 0:
            raise InputError(f"{where}: needs end_day > start_day and dose_level ≥ 0", "fix the entry")
        out.append(TherapySpec(start, end, level, str(entry.get("agent", ""))))
    return tuple(out)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise InputError(f"{where} must be a number, got {value!r}", "fix case.json")
    return float(value)
