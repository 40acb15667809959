"""Read a case from its JSON form (issue 4) and reject what the rules cannot use.

Every error names the JSON field and the fix, so ``dtt recist`` can print one line.
"""

from __future__ import annotations

import math
from typing import Any

from DTTLib.errors import InputError
from DTTLib.response.records import (
    NON_TARGET_VALUES,
    NOT_EVALUABLE,
    TOO_SMALL,
    Case,
    LesionMeasurement,
    SizeValue,
    Timepoint,
)
from DTTLib.response.rules import RULES

_MARKER_ALIASES = {
    "too_small": TOO_SMALL,
    "too_small_to_measure": TOO_SMALL,
    "not_evaluable": NOT_EVALUABLE,
    "ne": NOT_EVALUABLE,
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value: Any, where: str, *, allow_none: bool = False, minimum: float | None = 0.0
            ) -> float | None:
    if value is None and allow_none:
        return None
    if not _is_number(value):
        raise InputError(f"{where} is {value!r}, not a number", f"give {where} as a number")
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        raise InputError(f"{where} is {value!r}", f"give {where} as a finite number")
    if minimum is not None and number < minimum:
        raise InputError(f"{where} is negative ({number:g})",
                         f"give {where} as a size ≥ {minimum:g}")
    return number


def _bool(value: Any, where: str, default: bool | None = None) -> bool:
    if value is None and default is not None:
        return default
    if not isinstance(value, bool):
        raise InputError(f"{where} is {value!r}, not true/false", f"set {where} to true or false")
    return value


def _size(value: Any, where: str) -> SizeValue | None:
    """A diameter: a number ≥ 0 in mm, "too_small", "not_evaluable", or null."""
    if value is None:
        return None
    if isinstance(value, str):
        key = value.strip().lower().replace(" ", "_").replace("-", "_")
        if key in _MARKER_ALIASES:
            return _MARKER_ALIASES[key]
        raise InputError(f"{where} is {value!r}",
                         f'give {where} as millimetres, "too_small" or "not_evaluable"')
    return _number(value, where)


def _lesion(obj: Any, where: str) -> LesionMeasurement:
    if not isinstance(obj, dict):
        raise InputError(f"{where} is not an object", f"give {where} as {{\"id\": ..., ...}}")
    lesion_id = obj.get("id")
    if isinstance(lesion_id, int) and not isinstance(lesion_id, bool):
        lesion_id = str(lesion_id)
    if not isinstance(lesion_id, str) or not lesion_id.strip():
        raise InputError(f"{where}.id is missing or empty", f"give every lesion an id such as \"L1\"")
    lesion_id = lesion_id.strip()
    where = f"{where} ({lesion_id})"
    nodal = _bool(obj.get("nodal"), f"{where}.nodal", default=False)
    organ = obj.get("organ")
    if organ is None and nodal:
        organ = "lymph node"
    if not isinstance(organ, str) or not organ.strip():
        raise InputError(f"{where}.organ is missing", "name the organ, e.g. \"liver\"")
    ld = _size(obj.get("ld_mm"), f"{where}.ld_mm")
    sa = _size(obj.get("sa_mm"), f"{where}.sa_mm")
    if nodal and sa is None and not isinstance(ld, str):
        raise InputError(f"{where} is a lymph node without sa_mm",
                         "give the short axis (sa_mm): RECIST measures nodes by short axis")
    if not nodal and ld is None:
        raise InputError(f"{where}.ld_mm is missing",
                         'give the longest diameter, "too_small" or "not_evaluable"')
    if _is_number(ld) and _is_number(sa) and sa > ld * (1 + RULES.rel_tolerance):
        raise InputError(f"{where}.sa_mm ({sa:g}) is larger than ld_mm ({ld:g})",
                         "check whether the two diameters are swapped")
    target = obj.get("target")
    if target is not None:
        target = _bool(target, f"{where}.target")
    volume = _number(obj.get("volume_mm3"), f"{where}.volume_mm3", allow_none=True)
    return LesionMeasurement(id=lesion_id, organ=organ.strip(), nodal=nodal, ld_mm=ld,
                             sa_mm=sa, target=target, volume_mm3=volume)


def _lesion_list(value: Any, where: str) -> tuple[LesionMeasurement, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InputError(f"{where} is not a list", f"give {where} as a list of lesion objects")
    lesions = tuple(_lesion(item, f"{where}[{i}]") for i, item in enumerate(value))
    seen: set[str] = set()
    for lesion in lesions:
        if lesion.id in seen:
            raise InputError(f"{where} lists lesion id {lesion.id!r} twice",
                             "give each lesion a unique id within a timepoint")
        seen.add(lesion.id)
    return lesions


def _timepoint(obj: Any, index: int) -> Timepoint:
    where = f"timepoints[{index}]"
    if not isinstance(obj, dict):
        raise InputError(f"{where} is not an object", "give each timepoint as {\"day\": ..., ...}")
    day = _number(obj.get("day"), f"{where}.day", minimum=None)
    baseline = index == 0
    non_target = obj.get("non_target", "none" if baseline else None)
    if non_target is None:
        raise InputError(f"{where}.non_target is missing",
                         f"give one of {', '.join(NON_TARGET_VALUES)}")
    if non_target not in NON_TARGET_VALUES:
        raise InputError(f"{where}.non_target is {non_target!r}",
                         f"use one of {', '.join(NON_TARGET_VALUES)}")
    if "new_lesions" not in obj and not baseline:
        raise InputError(f"{where}.new_lesions is missing", "set it to true or false")
    new_lesions = _bool(obj.get("new_lesions"), f"{where}.new_lesions", default=False)
    if baseline and new_lesions:
        raise InputError(f"{where}.new_lesions is true at baseline",
                         "list baseline lesions in 'lesions'; new lesions only exist after baseline")
    further = obj.get("non_target_further_increase")
    if further is not None:
        further = _bool(further, f"{where}.non_target_further_increase")
    lesions = _lesion_list(obj.get("lesions", []), f"{where}.lesions")
    new_measured = _lesion_list(obj.get("new_lesion_measurements"),
                                f"{where}.new_lesion_measurements")
    present = [nl.id for nl in new_measured
               if nl.recist_size == TOO_SMALL or (_is_number(nl.recist_size) and nl.recist_size > 0)]
    if present and not new_lesions:
        raise InputError(f"{where}.new_lesion_measurements has present lesions "
                         f"({', '.join(present)}) but new_lesions is false",
                         "set new_lesions to true, or record the new lesion as 0 mm if it is gone")
    clash = {lesion.id for lesion in lesions} & {nl.id for nl in new_measured}
    if clash:
        raise InputError(f"{where}: id {sorted(clash)[0]!r} is both a lesion and a new lesion",
                         "use distinct ids for new lesions")
    return Timepoint(day=day, lesions=lesions, non_target=non_target, new_lesions=new_lesions,
                     new_lesion_measurements=new_measured,
                     non_target_further_increase=further)


def _check_consistency(timepoints: tuple[Timepoint, ...]) -> None:
    """Days increase; follow-up lesions are baseline lesions with the same organ and type."""
    for i in range(1, len(timepoints)):
        if timepoints[i].day <= timepoints[i - 1].day:
            raise InputError(
                f"timepoints[{i}].day ({timepoints[i].day:g}) is not after "
                f"timepoints[{i - 1}].day ({timepoints[i - 1].day:g})",
                "list timepoints in time order, baseline first, with increasing days")
    baseline = {lesion.id: lesion for lesion in timepoints[0].lesions}
    new_seen: dict[str, LesionMeasurement] = {}
    for i, tp in enumerate(timepoints[1:], start=1):
        for lesion in tp.lesions:
            base = baseline.get(lesion.id)
            if base is None:
                raise InputError(
                    f"timepoints[{i}].lesions has {lesion.id!r}, which is not a baseline lesion",
                    "record lesions that appear after baseline in new_lesion_measurements "
                    "and set new_lesions to true")
            if base.nodal != lesion.nodal or base.organ_group != lesion.organ_group:
                raise InputError(
                    f"timepoints[{i}] lesion {lesion.id!r} changes organ or nodal flag "
                    "from baseline", "keep a lesion's organ and nodal flag fixed over time")
            if lesion.target is not None and base.target is not None and lesion.target != base.target:
                raise InputError(
                    f"timepoints[{i}] lesion {lesion.id!r} has target={lesion.target} but "
                    f"baseline says target={base.target}",
                    "targets are chosen at baseline only; set target at follow-up to null")
        for nl in tp.new_lesion_measurements:
            if nl.id in baseline:
                raise InputError(f"timepoints[{i}] new lesion id {nl.id!r} is a baseline lesion id",
                                 "use distinct ids for new lesions")
            prev = new_seen.setdefault(nl.id, nl)
            if prev.nodal != nl.nodal or prev.organ_group != nl.organ_group:
                raise InputError(f"timepoints[{i}] new lesion {nl.id!r} changes organ or nodal flag",
                                 "keep a lesion's organ and nodal flag fixed over time")


def case_from_json(obj: Any) -> Case:
    """Build a :class:`Case` from the decoded JSON object, or raise :class:`InputError`."""
    if not isinstance(obj, dict):
        raise InputError("the case is not a JSON object", "give {\"timepoints\": [...], ...}")
    timepoints_obj = obj.get("timepoints")
    if not isinstance(timepoints_obj, list) or not timepoints_obj:
        raise InputError("the case has no timepoints (baseline missing)",
                         "give a 'timepoints' list whose first entry is the baseline")
    timepoints = tuple(_timepoint(tp, i) for i, tp in enumerate(timepoints_obj))
    if not timepoints[0].lesions and timepoints[0].non_target == "none":
        raise InputError("the baseline (timepoints[0]) has no lesions and no non-target disease",
                         "list the baseline lesions, or set its non_target if only "
                         "non-measurable disease exists")
    _check_consistency(timepoints)
    slice_mm = _number(obj.get("slice_thickness_mm"), "slice_thickness_mm", allow_none=True)
    if slice_mm is not None and slice_mm == 0:
        raise InputError("slice_thickness_mm is 0", "give the CT slice thickness in mm or leave it out")
    min_sd = _number(obj.get("min_sd_days", RULES.default_min_sd_days), "min_sd_days")
    return Case(
        timepoints=timepoints,
        immunotherapy=_bool(obj.get("immunotherapy"), "immunotherapy", default=False),
        confirmation_required=_bool(obj.get("confirmation_required"), "confirmation_required",
                                    default=False),
        min_sd_days=min_sd,
        slice_thickness_mm=slice_mm,
    )
