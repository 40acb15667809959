"""Sum of diameters (SOD) of the target lesions at one timepoint (RECIST 1.1 §4.2, §4.3.2).

SOD = longest diameters of non-nodal targets + short axes of nodal targets. A target that
is present but too small to measure counts as 5 mm; one that disappeared is recorded as
0 mm. A nodal target reported "too small" also gets 5 mm: the guideline's default for
faint lesions, and below the 10 mm normal-node limit, so it still allows CR. A target that
is missing or not evaluable leaves the sum undefined (only the evaluable part is kept,
for the PD exception of §4.4.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from DTTLib.response.records import NOT_EVALUABLE, TOO_SMALL, LesionMeasurement, SizeValue
from DTTLib.response.rules import RULES, RecistRules


@dataclass(frozen=True)
class SumOfDiameters:
    """Per-target values used (mm, ``None`` = not evaluable) and their sums."""

    values: dict[str, float | None]
    evaluable_sum_mm: float
    not_evaluable_ids: tuple[str, ...]
    too_small_ids: tuple[str, ...]
    missing_ids: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.not_evaluable_ids

    @property
    def sod_mm(self) -> float | None:
        """The SOD, or ``None`` when any target is not evaluable."""
        return self.evaluable_sum_mm if self.complete else None


def size_value_mm(size: SizeValue | None, rules: RecistRules = RULES) -> float | None:
    """mm used in sums: numbers as given, "too small" → 5 mm, not evaluable/missing → None."""
    if size is None or size == NOT_EVALUABLE:
        return None
    if size == TOO_SMALL:
        return rules.too_small_default_mm
    return float(size)


def sum_of_diameters(lesions: Iterable[LesionMeasurement], target_ids: Iterable[str],
                     rules: RecistRules = RULES) -> SumOfDiameters:
    """Sum the RECIST measure of each target id among ``lesions`` (missing → not evaluable)."""
    by_id = {lesion.id: lesion for lesion in lesions}
    values: dict[str, float | None] = {}
    ne, small, missing = [], [], []
    for target_id in target_ids:
        lesion = by_id.get(target_id)
        if lesion is None:
            missing.append(target_id)
            values[target_id] = None
        else:
            values[target_id] = size_value_mm(lesion.recist_size, rules)
            if lesion.recist_size == TOO_SMALL:
                small.append(target_id)
        if values[target_id] is None:
            ne.append(target_id)
    total = sum(v for v in values.values() if v is not None)
    return SumOfDiameters(values=values, evaluable_sum_mm=float(total),
                          not_evaluable_ids=tuple(ne), too_small_ids=tuple(small),
                          missing_ids=tuple(missing))
