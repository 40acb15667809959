"""Evaluate a whole case: targets, SOD, per-timepoint responses, best overall response.

This is the one place that walks the timepoints in order, because nadir, "in CR" and the
iRECIST iUPD state all depend on history. Each rule lives in its own module.
"""

from __future__ import annotations

from dataclasses import dataclass

from DTTLib.errors import InputError
from DTTLib.response.best_response import Assessment, BestResponse, best_overall_response
from DTTLib.response.irecist import IRecistStep, IRecistTracker, NewLesionTracker
from DTTLib.response.overall import overall_response
from DTTLib.response.records import Case
from DTTLib.response.rules import IRULES, RULES, IRecistRules, RecistRules
from DTTLib.response.sod import sum_of_diameters
from DTTLib.response.target_response import assess_targets
from DTTLib.response.targets import LesionDecision, TargetSelection, select_targets
from DTTLib.response.volumetric import VolumetricReadout, total_target_volume, volumetric_readout


@dataclass(frozen=True)
class TimepointResult:
    """Everything decided at one timepoint (baseline: responses are None)."""

    day: float
    is_baseline: bool
    sod_mm: float | None
    sod_evaluable_mm: float | None
    nadir_mm: float | None
    change_from_baseline_pct: float | None
    change_from_nadir_pct: float | None
    target_response: str | None
    target_reason: str
    non_target: str
    #: the reader's iRECIST call on a PD non-target (True / False / None = not assessed), as given
    non_target_further_increase: bool | None
    new_lesions: bool
    recist_overall: str | None
    overall: str | None
    overall_reason: str
    new_lesion_target_sum_mm: float | None
    volumetric: VolumetricReadout | None


@dataclass(frozen=True)
class CaseResult:
    criteria: str
    case: Case
    selection: TargetSelection
    timepoints: tuple[TimepointResult, ...]
    best: BestResponse
    new_lesion_targets: tuple[LesionDecision, ...]
    warnings: tuple[str, ...]

    @property
    def baseline_sod_mm(self) -> float | None:
        return self.timepoints[0].sod_mm


def _pct(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return (value - reference) / reference * 100.0


def evaluate_case(case: Case, rules: RecistRules = RULES, irules: IRecistRules = IRULES
                  ) -> CaseResult:
    """Apply RECIST 1.1 (or iRECIST when ``case.immunotherapy``) to every timepoint."""
    warnings: list[str] = []
    base = case.baseline
    selection = select_targets(base.lesions, case.slice_thickness_mm, rules)
    target_ids = selection.target_ids
    nodal = {d.id: d.nodal for d in selection.targets}
    has_targets = bool(target_ids)
    has_non_target = bool(selection.non_target_ids) or base.non_target != "none"
    if base.non_target in ("CR", "PD"):
        warnings.append(f"baseline non-target status {base.non_target!r} has no meaning at baseline; "
                        "read as 'non-target disease present'")
    if not has_targets and not has_non_target:
        raise InputError("the baseline has no target lesions and no non-target disease "
                         "(all lesions are normal-sized nodes)",
                         "check the baseline sizes; there is no disease to follow")
    for d in selection.decisions:
        if d.role == "normal_node":
            warnings.append(f"baseline node {d.id} is not disease: {d.reason}")

    base_sum = sum_of_diameters(base.lesions, target_ids, rules)
    baseline_sod = base_sum.sod_mm if has_targets else None
    base_volume = total_target_volume(base.lesions, target_ids) if has_targets else None
    results = [TimepointResult(
        day=base.day, is_baseline=True, sod_mm=baseline_sod,
        sod_evaluable_mm=baseline_sod, nadir_mm=None, change_from_baseline_pct=None,
        change_from_nadir_pct=None, target_response=None, target_reason="baseline",
        non_target=("present" if base.non_target == "none" and selection.non_target_ids
                    else base.non_target),
        non_target_further_increase=None, new_lesions=False, recist_overall=None, overall=None,
        overall_reason="baseline", new_lesion_target_sum_mm=None,
        volumetric=(VolumetricReadout(base_volume, None, None, None)
                    if base_volume is not None else None))]

    nadir = baseline_sod
    volume_nadir = base_volume
    in_cr = False
    tracker = IRecistTracker(irules, rules) if case.immunotherapy else None
    new_tracker = NewLesionTracker(case.slice_thickness_mm, rules, irules)
    first_pd_day: float | None = None
    for tp in case.follow_ups:
        non_target = tp.non_target
        if non_target == "none" and has_non_target:
            warnings.append(f"day {tp.day:g}: non-target status 'none' although non-target disease was "
                            "present at baseline; treated as NE (not evaluated)")
            non_target = "NE"
        elif non_target in ("CR", "nonCR_nonPD") and not has_non_target:
            warnings.append(f"day {tp.day:g}: non-target status {non_target!r} but no non-target "
                            "disease at baseline; used as given")
        sod = target_reason = target_response = None
        if has_targets:
            sod = sum_of_diameters(tp.lesions, target_ids, rules)
            for missing in sod.missing_ids:
                warnings.append(f"day {tp.day:g}: target {missing} not reported; treated as "
                                "not evaluable")
            assessment = assess_targets(sod, nodal, baseline_sod, nadir, in_cr, rules)
            target_response, target_reason = assessment.response, assessment.reason
        recist = overall_response(target_response, non_target, tp.new_lesions)
        new_status = new_tracker.update(tp)
        if tracker is not None:
            overall, reason = tracker.assess(IRecistStep(
                day=tp.day, recist_overall=recist, target_response=target_response, sod=sod,
                non_target=non_target, non_target_further_increase=tp.non_target_further_increase,
                new_lesions=tp.new_lesions, new=new_status))
        else:
            overall, reason = recist, target_reason or "non-target disease only (Table 2)"
            if first_pd_day is not None:
                reason += f"; after PD at day {first_pd_day:g}, does not change the best response"
        if recist == "PD" and first_pd_day is None:
            first_pd_day = tp.day
        sod_mm = sod.sod_mm if sod else None
        volume = total_target_volume(tp.lesions, target_ids) if has_targets else None
        results.append(TimepointResult(
            day=tp.day, is_baseline=False, sod_mm=sod_mm,
            sod_evaluable_mm=sod.evaluable_sum_mm if sod else None, nadir_mm=nadir,
            change_from_baseline_pct=_pct(sod_mm, baseline_sod),
            change_from_nadir_pct=_pct(sod_mm, nadir),
            target_response=target_response, target_reason=target_reason or "",
            non_target=non_target, non_target_further_increase=tp.non_target_further_increase,
            new_lesions=tp.new_lesions, recist_overall=recist,
            overall=overall, overall_reason=reason,
            new_lesion_target_sum_mm=(new_status.target_sum.sod_mm
                                      if new_status.target_sum else None),
            volumetric=volumetric_readout(volume, base_volume, volume_nadir)))
        if sod_mm is not None:
            nadir = min(nadir, sod_mm)
        if volume is not None and volume_nadir is not None:
            volume_nadir = min(volume_nadir, volume)
        if target_response is not None and target_response != "NE":
            in_cr = target_response == "CR"

    follow = results[1:]
    best = best_overall_response(
        [Assessment(r.day, r.overall) for r in follow], base.day,
        confirmation_required=case.confirmation_required, min_sd_days=case.min_sd_days,
        has_targets=has_targets, irecist=case.immunotherapy, rules=rules)
    warnings += _interval_warnings(case, follow, best, irules, rules)
    if tracker is not None:
        warnings += tracker.notes
        unmeasured = [f"{tp.day:g}" for tp in case.follow_ups if tp.new_lesions and not tp.new_lesion_measurements]
        if unmeasured:
            days = f"day{'s' if len(unmeasured) > 1 else ''} {', '.join(unmeasured)}"
            warnings.append(f"new lesions reported but not measured ({days}): iRECIST "
                            "cannot select or follow new-lesion target lesions, nor count additional new "
                            "lesions (measure each new lesion)")
    return CaseResult(
        criteria="iRECIST" if case.immunotherapy else "RECIST 1.1", case=case,
        selection=selection, timepoints=tuple(results), best=best,
        new_lesion_targets=tuple(new_tracker.decisions), warnings=tuple(warnings))


def _interval_warnings(case: Case, follow: list[TimepointResult], best: BestResponse,
                       irules: IRecistRules, rules: RecistRules) -> list[str]:
    """Follow-up timing the guidelines ask for: iUPD confirmation 4–8 weeks; PD ends RECIST."""
    out = []
    lo, hi = irules.confirmation_window_min_days, irules.confirmation_window_max_days
    for i, r in enumerate(follow):
        if case.immunotherapy and r.overall == "iUPD":
            if i + 1 < len(follow):
                gap = follow[i + 1].day - r.day
                if not lo <= gap <= hi:
                    out.append(f"iUPD at day {r.day:g}: next assessment {gap:g} days later, outside "
                               f"the {lo:g}–{hi:g} day window for iRECIST confirmation")
            else:
                out.append(f"iUPD at day {r.day:g} is unconfirmed: confirm at the next "
                           f"assessment {lo:g}–{hi:g} days later")
    if not case.immunotherapy:
        pd_index = next((i for i, r in enumerate(follow) if r.overall == "PD"), None)
        if pd_index is not None and pd_index + 1 < len(follow):
            out.append(f"assessments after PD at day {follow[pd_index].day:g} do not change the "
                       "best overall response (RECIST 1.1 §4.4.3)")
    if case.confirmation_required:
        last = follow[-1] if follow else None
        if (last is not None and last.overall in ("CR", "PR", "iCR", "iPR")
                and not (best.confirmed and best.category == last.overall)):
            out.append(f"{last.overall} at day {last.day:g} is not yet confirmed: repeat "
                       f"≥ {rules.confirmation_min_days:g} days later (§4.6.1)")
    return out
