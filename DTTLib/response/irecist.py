"""iRECIST timepoint responses (Seymour et al. 2017, Lancet Oncol 18:e143).

Immunotherapy can cause pseudo-progression, so the first RECIST 1.1 progression is only
"unconfirmed" (iUPD). At the next assessment (planned 4–8 weeks later) progression is
confirmed (iCPD) when (Seymour 2017, "Confirming progression", Table 2):

* the target sum of measures (SOM) grew a further ≥ 5 mm since the last iUPD assessment;
* the non-target lesions progressed further (a definite increase, need not be
  unequivocal) — entered as ``non_target: "PD"`` with ``non_target_further_increase:
  true``; ``false`` means "still progressed, no further increase" and stays iUPD, and so
  does a further increase that was not assessed (``None``, see below);
* the sum of new-lesion targets grew ≥ 5 mm, or any additional new lesion appeared;
* a category that had not progressed at iUPD now meets RECIST 1.1 PD (e.g. new lesions
  appear after a target-driven iUPD).

Otherwise the status stays iUPD while any category still meets RECIST PD criteria (e.g.
SOM still ≥ 20 % and 5 mm over the nadir, new lesions still present), or — when nothing
is progressed any more — it resets to iCR/iPR/iSD judged against baseline and nadir; a
later progression is then again iUPD first.

A non-target further increase that was not assessed does not confirm progression. "PD"
at the next visit says the non-target disease is still unequivocally progressed against
baseline / nadir, which was already true at iUPD; it does not say it grew again since.
iCPD confirms progression (and usually ends treatment beyond progression), so it must rest
on an observed further increase, never on a missing answer: the timepoint stays iUPD and its
reason says that the further increase was not assessed, so the reader knows the one answer
that would settle it.
(An older reading counted ``None`` as a further increase, which could call iCPD on no
evidence.) A non-target that was *not* progressed at iUPD and now is PD still confirms:
that is a new category meeting RECIST 1.1 PD, no comparison with the last visit needed.

New lesions are assessed with RECIST 1.1 measurability; up to five measurable ones (two
per organ) become new-lesion targets (chosen when they first appear, while slots remain),
summed apart and never added to the SOM; the others are new-lesion non-targets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from DTTLib.response.measurability import classify_lesion
from DTTLib.response.records import TOO_SMALL, Timepoint
from DTTLib.response.rules import IRULES, RULES, IRecistRules, RecistRules, is_at_least
from DTTLib.response.sod import SumOfDiameters, sum_of_diameters
from DTTLib.response.targets import LesionDecision, pick_largest

I_CATEGORY = {"CR": "iCR", "PR": "iPR", "SD": "iSD", "nonCR_nonPD": "non-iCR/non-iUPD",
              "NE": "NE"}


@dataclass(frozen=True)
class NewLesionStatus:
    """New lesions at one timepoint: ids present (None if not measured) and target values."""

    measured: bool
    present_ids: frozenset[str]
    target_sum: SumOfDiameters | None


class NewLesionTracker:
    """Chooses new-lesion targets as new lesions appear and sums them per timepoint."""

    def __init__(self, slice_thickness_mm: float | None = None, rules: RecistRules = RULES,
                 irules: IRecistRules = IRULES) -> None:
        self.slice_thickness_mm = slice_thickness_mm
        self.rules = rules
        self.irules = irules
        self.target_ids: list[str] = []
        self.decisions: list[LesionDecision] = []
        self._by_organ: dict[str, int] = {}
        self._seen: set[str] = set()

    def update(self, tp: Timepoint) -> NewLesionStatus:
        measured = tp.new_lesion_measurements
        present = frozenset(
            nl.id for nl in measured
            if nl.recist_size in (TOO_SMALL, "not_evaluable")
            or (isinstance(nl.recist_size, float) and nl.recist_size > 0))
        fresh = [nl for nl in measured if nl.id not in self._seen and nl.id in present]
        status = {nl.id: classify_lesion(nl, self.slice_thickness_mm, self.rules) for nl in fresh}
        candidates = [(nl, status[nl.id].size_mm) for nl in fresh if status[nl.id].eligible]
        picked, rejected = pick_largest(candidates, self.irules.max_new_lesion_targets,
                                        self.irules.max_new_lesion_targets_per_organ,
                                        self._by_organ)
        for nl in fresh:
            self._seen.add(nl.id)
            m = status[nl.id]
            if nl.id in picked:
                self.target_ids.append(nl.id)
                self._by_organ[nl.organ_group] = self._by_organ.get(nl.organ_group, 0) + 1
                role, reason = "target", f"new-lesion target (day {tp.day:g}): {picked[nl.id]}"
            else:
                role = "non_target"
                reason = f"new-lesion non-target (day {tp.day:g}): {rejected.get(nl.id, m.reason)}"
            self.decisions.append(LesionDecision(
                id=nl.id, organ=nl.organ, organ_group=nl.organ_group, nodal=nl.nodal, role=role,
                size_mm=m.size_mm, measure=nl.measure_name, reason=reason))
        target_sum = (sum_of_diameters(measured, self.target_ids, self.rules)
                      if self.target_ids else None)
        return NewLesionStatus(bool(measured), present, target_sum)


@dataclass(frozen=True)
class IRecistStep:
    """What iRECIST needs from the RECIST 1.1 evaluation of one follow-up."""

    day: float
    recist_overall: str
    target_response: str | None
    sod: SumOfDiameters | None
    non_target: str
    non_target_further_increase: bool | None
    new_lesions: bool
    new: NewLesionStatus


@dataclass
class _Pending:
    """State of an unconfirmed progression (iUPD) awaiting confirmation."""

    day: float
    target: bool
    non_target: bool
    new: bool
    sod_values: Mapping[str, float | None]
    nlt_values: Mapping[str, float | None]
    new_seen: frozenset[str] | None
    categories: list[str] = field(default_factory=list)


#: why a still-progressed non-target keeps iUPD, by the reader's further-increase call (True never
#: gets here: it confirms iCPD)
_NON_TARGET_STILL = {
    False: "non-target still progressed, no further increase (the reader's call)",
    None: "non-target still progressed, further increase not assessed (iCPD needs the reader's call: "
          "was there a further increase since iUPD?)",
}


def _increase(ref: Mapping[str, float | None], now: Mapping[str, float | None]) -> float | None:
    """Change of the sum over lesions evaluable both times (None if none are)."""
    common = [k for k, v in ref.items() if v is not None and now.get(k) is not None]
    if not common:
        return None
    return sum(now[k] for k in common) - sum(ref[k] for k in common)  # type: ignore[misc]


class IRecistTracker:
    """Turns RECIST 1.1 timepoint results into iRECIST categories, keeping iUPD state."""

    def __init__(self, irules: IRecistRules = IRULES, rules: RecistRules = RULES) -> None:
        self.irules = irules
        self.rules = rules
        self.pending: _Pending | None = None
        self.confirmed = False
        self.notes: list[str] = []

    def _start(self, step: IRecistStep) -> _Pending:
        return _Pending(
            day=step.day,
            target=step.target_response == "PD",
            non_target=step.non_target == "PD",
            new=step.new_lesions,
            sod_values=dict(step.sod.values) if step.sod else {},
            nlt_values=dict(step.new.target_sum.values) if step.new.target_sum else {},
            new_seen=step.new.present_ids if step.new.measured else None,
        )

    def assess(self, step: IRecistStep) -> tuple[str, str]:
        """iRECIST category and reason for one follow-up, in time order."""
        if self.confirmed:
            return "iCPD", "progression already confirmed (iCPD is final)"
        if self.pending is None:
            if step.recist_overall == "PD":
                self.pending = self._start(step)
                return "iUPD", "RECIST 1.1 progression, unconfirmed under iRECIST"
            return I_CATEGORY[step.recist_overall], "as RECIST 1.1"
        reasons = self._confirmations(step)
        if reasons:
            self.confirmed = True
            self.pending = None
            return "iCPD", "; ".join(reasons)
        still = []
        if step.target_response == "PD":
            still.append("target sum still meets PD")
        if step.non_target == "PD":
            still.append(_NON_TARGET_STILL[step.non_target_further_increase])  # True has confirmed iCPD
        if step.new_lesions:
            still.append("new lesions still present")
        if still:
            p = self.pending
            if step.sod is not None and step.sod.complete:
                p.sod_values = dict(step.sod.values)
            if step.new.target_sum is not None:
                p.nlt_values = {k: v if v is not None else p.nlt_values.get(k)
                                for k, v in step.new.target_sum.values.items()}
            if step.new.measured:
                p.new_seen = (p.new_seen or frozenset()) | step.new.present_ids
            p.day = step.day
            return "iUPD", "remains iUPD without further progression: " + ", ".join(still)
        if step.recist_overall == "NE":
            return "NE", "not evaluable; iUPD still awaits confirmation"
        self.pending = None
        return (I_CATEGORY[step.recist_overall],
                "iUPD not confirmed: reset, judged against baseline and nadir")

    def _confirmations(self, step: IRecistStep) -> list[str]:
        p = self.pending
        assert p is not None
        found = []
        mm = self.irules.further_increase_mm
        if step.sod is not None:
            if p.target:
                grew = _increase(p.sod_values, step.sod.values)
                if grew is not None and is_at_least(grew, mm, self.rules):
                    found.append(f"target SOM +{grew:g} mm since iUPD (≥ {mm:g} mm)")
            elif step.target_response == "PD":
                found.append("target lesions now meet RECIST 1.1 PD")
        if step.non_target == "PD":
            if not p.non_target:
                found.append("non-target progression after iUPD")
            elif step.non_target_further_increase is True:  # None: not assessed, no evidence (module docs)
                found.append("further non-target increase since iUPD (the reader's call)")
        elif step.non_target_further_increase is True:
            self.notes.append(
                f"day {step.day:g}: non-target further increase is set but the non-target status is "
                f"{step.non_target!r}, not PD; the increase was not counted (set the status to PD if "
                "the non-target disease progressed further)")
        if step.new_lesions:
            if not p.new:
                found.append("new lesion(s) after iUPD")
            elif step.new.measured and p.new_seen is not None:
                extra = sorted(step.new.present_ids - p.new_seen)
                if extra:
                    found.append(f"additional new lesion(s) {', '.join(extra)}")
                if step.new.target_sum is not None:
                    grew = _increase(p.nlt_values, step.new.target_sum.values)
                    if grew is not None and is_at_least(grew, mm, self.rules):
                        found.append(f"new-lesion target sum +{grew:g} mm (≥ {mm:g} mm)")
            else:
                self.notes.append(
                    f"day {step.day:g}: new lesions are present, but they were not measured both at "
                    f"this visit and at the iUPD visit (day {p.day:g}), so iRECIST cannot check whether "
                    "they grew or whether more new lesions appeared (measure each new lesion at both visits)")
        return found
