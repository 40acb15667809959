"""Target-lesion selection at baseline (RECIST 1.1 §4.2), with user overrides.

The guideline asks for at most five targets, at most two per organ (all lymph nodes
together count as one organ), "selected on the basis of their size" and "representative
of all involved organs". The automatic choice therefore works in two passes:

1. each involved organ not yet covered gets its largest measurable lesion, organs taken
   in order of that lesion's size, while slots remain;
2. remaining slots go to the largest remaining measurable lesions, within the organ limit.

Ties in size are broken by the order of the lesions in the input (earlier first), so the
result is deterministic. Overrides ``target: true`` are kept first and checked against
the rules; ``target: false`` makes a lesion non-target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

from DTTLib.errors import InputError
from DTTLib.response.measurability import Measurability, classify_lesion
from DTTLib.response.records import LesionMeasurement
from DTTLib.response.rules import NODE_ORGAN_GROUP, RULES, RecistRules

Decision = Literal["target", "non_target", "normal_node"]


@dataclass(frozen=True)
class LesionDecision:
    """The baseline role given to one lesion and why."""

    id: str
    organ: str
    organ_group: str
    nodal: bool
    role: Decision
    size_mm: float | None
    measure: str
    reason: str


@dataclass(frozen=True)
class TargetSelection:
    """All baseline decisions, in input order."""

    decisions: tuple[LesionDecision, ...]

    @property
    def targets(self) -> tuple[LesionDecision, ...]:
        return tuple(d for d in self.decisions if d.role == "target")

    @property
    def target_ids(self) -> tuple[str, ...]:
        return tuple(d.id for d in self.targets)

    @property
    def non_target_ids(self) -> tuple[str, ...]:
        return tuple(d.id for d in self.decisions if d.role == "non_target")


def _organ_label(group: str) -> str:
    return "lymph nodes (one organ)" if group == NODE_ORGAN_GROUP else group


def pick_largest(
    candidates: Sequence[tuple[LesionMeasurement, float]],
    max_total: int,
    max_per_organ: int,
    already_by_organ: dict[str, int] | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """Choose among eligible ``(lesion, size)`` pairs (in input order) by the two passes.

    Returns ``(picked, rejected)``: lesion id → reason. ``already_by_organ`` holds targets
    fixed beforehand (overrides, or earlier new-lesion targets) that use up slots.
    """
    by_organ = dict(already_by_organ or {})
    slots = max_total - sum(by_organ.values())
    order = {lesion.id: i for i, (lesion, _) in enumerate(candidates)}
    ranked = sorted(candidates, key=lambda c: (-c[1], order[c[0].id]))
    picked: dict[str, str] = {}

    # Pass 1: one lesion per involved organ that has none yet.
    firsts: list[tuple[LesionMeasurement, float]] = []
    seen_organs = set(by_organ)
    for lesion, size in ranked:
        if lesion.organ_group not in seen_organs:
            seen_organs.add(lesion.organ_group)
            firsts.append((lesion, size))
    for lesion, size in firsts:
        if slots <= 0:
            break
        picked[lesion.id] = (f"largest measurable lesion in {_organ_label(lesion.organ_group)} "
                             f"({lesion.measure_name} {size:g} mm); every involved organ first")
        by_organ[lesion.organ_group] = by_organ.get(lesion.organ_group, 0) + 1
        slots -= 1
    # Pass 2: fill by size within the organ limit.
    rejected: dict[str, str] = {}
    for lesion, size in ranked:
        if lesion.id in picked:
            continue
        if slots <= 0:
            rejected[lesion.id] = f"total limit reached ({max_total} targets, §4.2)"
            continue
        if by_organ.get(lesion.organ_group, 0) >= max_per_organ:
            rejected[lesion.id] = (f"organ limit reached ({max_per_organ} per organ in "
                                   f"{_organ_label(lesion.organ_group)}, §4.2)")
            continue
        picked[lesion.id] = f"next largest measurable lesion ({lesion.measure_name} {size:g} mm)"
        by_organ[lesion.organ_group] = by_organ.get(lesion.organ_group, 0) + 1
        slots -= 1
    return picked, rejected


def _check_overrides(forced: list[LesionMeasurement], status: dict[str, Measurability],
                     rules: RecistRules) -> None:
    for lesion in forced:
        m = status[lesion.id]
        if not m.eligible:
            raise InputError(
                f"lesion {lesion.id!r} has target=true but breaks the measurability rule "
                f"(RECIST 1.1 §3.1.1): {m.reason}",
                "set its target to false or null, or correct its size")
    if len(forced) > rules.max_targets:
        raise InputError(
            f"{len(forced)} lesions have target=true, breaking the rule of at most "
            f"{rules.max_targets} target lesions (RECIST 1.1 §4.2)",
            "set target to null or false on the extra lesions")
    counts: dict[str, list[str]] = {}
    for lesion in forced:
        counts.setdefault(lesion.organ_group, []).append(lesion.id)
    for group, ids in counts.items():
        if len(ids) > rules.max_targets_per_organ:
            raise InputError(
                f"lesions {', '.join(ids)} have target=true in {_organ_label(group)}, breaking "
                f"the rule of at most {rules.max_targets_per_organ} targets per organ "
                "(RECIST 1.1 §4.2; all lymph nodes count as one organ)",
                "keep at most two targets per organ")


def select_targets(lesions: Iterable[LesionMeasurement], slice_thickness_mm: float | None = None,
                   rules: RecistRules = RULES) -> TargetSelection:
    """Decide target / non-target / normal node for every baseline lesion.

    Raises :class:`InputError` naming the broken rule when overrides are impossible.
    """
    lesions = list(lesions)
    status = {lesion.id: classify_lesion(lesion, slice_thickness_mm, rules) for lesion in lesions}
    forced = [lesion for lesion in lesions if lesion.target is True]
    _check_overrides(forced, status, rules)
    already: dict[str, int] = {}
    for lesion in forced:
        already[lesion.organ_group] = already.get(lesion.organ_group, 0) + 1
    candidates = [(lesion, status[lesion.id].size_mm) for lesion in lesions
                  if lesion.target is None and status[lesion.id].eligible]
    picked, rejected = pick_largest(candidates, rules.max_targets, rules.max_targets_per_organ,
                                    already)
    decisions = []
    for lesion in lesions:
        m = status[lesion.id]
        role: Decision
        if lesion.target is True:
            role, reason = "target", f"user override target=true ({m.reason})"
        elif lesion.id in picked:
            role, reason = "target", picked[lesion.id]
        elif m.role == "normal_node":
            role, reason = "normal_node", m.reason
        elif lesion.target is False:
            role, reason = "non_target", "user override target=false"
        elif lesion.id in rejected:
            role, reason = "non_target", rejected[lesion.id]
        else:
            role, reason = "non_target", m.reason
        decisions.append(LesionDecision(
            id=lesion.id, organ=lesion.organ, organ_group=lesion.organ_group, nodal=lesion.nodal,
            role=role, size_mm=m.size_mm, measure=lesion.measure_name, reason=reason))
    return TargetSelection(tuple(decisions))
