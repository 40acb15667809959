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
inputs that box prompts cannot give), and for iRECIST ``non_target_further_increase``
(true / false; omitted or null = not assessed) on a follow-up whose non-target status is PD.
``modality`` ("CT", "MR", …) may be given for the case and overridden per timepoint; DICOM
series carry their own. It selects how slices are prepared for segmentation (the rules by
modality and organ are data: the "segmentation" section of ``window_presets.json``).
A box is ``ijk`` (voxel indices I0,J0,K0,I1,J1,K1 of that timepoint's image as read) or
``ras`` (the same six numbers in RAS millimetres), as in ``dtt segment``. More boxes go in
``boxes``: for later timepoints, or several on one timepoint for a lesion in separate pieces
(one box per piece; the segmentation is their union).
An optional ``proposals`` section runs an nnU-Net model on every scan: its lesions prompt the
segmentation of known lesions at follow-ups, and the rest are listed for the reader, never
counted until ``decisions`` confirms them (see docs/CASE_FORMAT.md).
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
#: what the reader may decide about an nnU-Net proposal that matched no prompted lesion
PROPOSAL_DECISIONS = ("new", "reject")


@dataclass(frozen=True)
class TimepointSpec:
    timepoint_id: str
    path: Path
    day: float
    non_target: str = "none"  # RECIST non-target status the reader assessed: none|CR|nonCR_nonPD|PD|NE
    new_lesions: bool = False  # unequivocal new lesions seen by the reader
    modality: str = ""  # "CT", "MR", … ("" = the case's, or the DICOM series' own)
    #: iRECIST: did a PD non-target increase further since the last visit? True / False, None = not
    #: assessed (a non-target iUPD then stays iUPD: DTTLib.response.irecist)
    non_target_further_increase: bool | None = None


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
class ProposalDecision:
    timepoint_id: str
    proposal_id: str  # "P1", "P2", … as the previous run listed them
    decision: str  # "new" (an unequivocal new lesion) or "reject"
    reason: str = ""


@dataclass(frozen=True)
class ProposalSpec:
    """Automatic lesion proposals (nnU-Net) for every scan of the case."""

    model: str  # "nnunet:<model folder or catalog id>"; a relative folder is read from the case folder
    min_volume_mm3: float = 10.0
    use_mirroring: bool = True
    decisions: tuple[ProposalDecision, ...] = ()

    def decision(self, timepoint_id: str, proposal_id: str) -> ProposalDecision | None:
        return next((d for d in self.decisions if (d.timepoint_id, d.proposal_id) == (timepoint_id, proposal_id)),
                    None)


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
    proposals: ProposalSpec | None = None

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
                    options=dict(raw.get("options", {})), modality=modality,
                    proposals=_proposals(raw.get("proposals"), timepoints, case_dir))


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
                                 _modality(entry.get("modality", ""), f"{where}.modality"),
                                 _further_increase(entry, where, number == 0, non_target)))
    ids = [t.timepoint_id for t in out]
    if len(set(ids)) != len(ids):
        raise InputError(f"timepoint ids repeat: {ids}", "give each timepoint its own id")
    days = [t.day for t in out]
    if any(b <= a for a, b in zip(days, days[1:])):
        raise InputError(f"timepoint days must increase in the order listed, got {days}",
                         "list the scans from first to last")
    return tuple(out)


def _further_increase(entry: dict[str, Any], where: str, baseline: bool, non_target: str) -> bool | None:
    """The reader's iRECIST non-target further increase: true, false, or not assessed (omitted / null)."""
    value = entry.get("non_target_further_increase")
    field_name = f"{where}.non_target_further_increase"
    if value is None:
        return None
    if not isinstance(value, bool):
        raise InputError(f"{field_name} must be true, false or null, got {value!r}",
                         "true: the PD non-target disease grew further since the last visit; false: it did "
                         "not; leave it out when not assessed")
    if baseline:
        raise InputError(f"{field_name} is set on the first timepoint", "remove it: the baseline has nothing "
                         "to increase from")
    if value and non_target != "PD":
        raise InputError(f"{field_name} is true but {where}.non_target is '{non_target}'",
                         "a further increase is a progression: set non_target to PD, or the increase to false")
    return value


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


def _proposals(raw: Any, timepoints: tuple[TimepointSpec, ...], case_dir: Path) -> ProposalSpec | None:
    if raw is None:
        return None
    from DTTLib.segmentation.nnunet_model import PREFIX  # noqa: PLC0415 - light: no torch

    if not isinstance(raw, dict) or not str(raw.get("model", "")).lower().startswith(PREFIX):
        raise InputError("proposals needs a 'model' of the form \"nnunet:<model folder or catalog id>\"",
                         'e.g. "proposals": {"model": "nnunet:models/Dataset003_Liver"}')
    model = str(raw["model"])
    local = case_dir / model[len(PREFIX):]
    if model[len(PREFIX):] and local.exists():
        model = f"{PREFIX}{local.absolute()}"
    minimum = _number(raw.get("min_volume_mm3", 10.0), "proposals.min_volume_mm3")
    if minimum < 0:
        raise InputError("proposals.min_volume_mm3 must be ≥ 0", "give a volume in mm³ (default 10)")
    known = [t.timepoint_id for t in timepoints]
    decisions, seen = [], set()
    entries = raw.get("decisions", [])
    if not isinstance(entries, list):
        raise InputError("proposals.decisions must be a list",
                         'e.g. [{"timepoint": "t1", "proposal": "P2", "decision": "new"}]')
    for number, entry in enumerate(entries):
        where = f"proposals.decisions[{number}]"
        if not isinstance(entry, dict):
            raise InputError(f"{where} must be an object", '{"timepoint": "t1", "proposal": "P2", "decision": "new"}')
        timepoint, proposal = str(entry.get("timepoint", "")), str(entry.get("proposal", ""))
        decision = str(entry.get("decision", ""))
        if timepoint not in known:
            raise InputError(f"{where}: timepoint '{timepoint}' is not one of {known}", "use a timepoint id")
        if not proposal:
            raise InputError(f"{where} names no proposal", "copy its id (P1, P2, …) from the previous run's report")
        if decision not in PROPOSAL_DECISIONS:
            raise InputError(f"{where}: decision '{decision}' is not one of {PROPOSAL_DECISIONS}",
                             '"new" counts it as a new lesion at that timepoint; "reject" dismisses it')
        if decision == "new" and timepoint == known[0]:
            raise InputError(f"{where}: a lesion on the first scan cannot be new",
                             "give it a box in 'lesions' to measure it, or reject it")
        if (timepoint, proposal) in seen:
            raise InputError(f"{where}: {proposal} at {timepoint} is decided twice", "keep one decision")
        seen.add((timepoint, proposal))
        decisions.append(ProposalDecision(timepoint, proposal, decision, str(entry.get("reason", ""))))
    return ProposalSpec(model, minimum, bool(raw.get("mirroring", True)), tuple(decisions))


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
