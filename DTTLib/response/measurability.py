"""Baseline measurability (RECIST 1.1 §3.1): which lesions may become targets.

A lesion's role at baseline decides everything after: only measurable lesions can be
followed by their diameters; the rest are followed qualitatively as non-targets, and
normal-sized nodes are not disease at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from DTTLib.response.records import LesionMeasurement
from DTTLib.response.rules import RULES, RecistRules, is_at_least

Role = Literal["target_eligible", "non_target", "normal_node"]


@dataclass(frozen=True)
class Measurability:
    """The baseline role of one lesion and the reason, in words a reader can check."""

    role: Role
    size_mm: float | None
    reason: str

    @property
    def eligible(self) -> bool:
        return self.role == "target_eligible"


def min_measurable_ld_mm(slice_thickness_mm: float | None, rules: RecistRules = RULES) -> float:
    """Smallest measurable non-nodal LD: 10 mm, or 2 × slice thickness if slices > 5 mm (§3.1.1)."""
    if slice_thickness_mm is not None and slice_thickness_mm > rules.thin_slice_max_mm:
        return max(rules.min_measurable_ld_mm, rules.thick_slice_factor * slice_thickness_mm)
    return rules.min_measurable_ld_mm


def classify_lesion(lesion: LesionMeasurement, slice_thickness_mm: float | None = None,
                    rules: RecistRules = RULES) -> Measurability:
    """Classify a lesion as seen at baseline (or a new lesion when it first appears).

    Nodes are judged by short axis: ≥ 15 mm measurable, 10–15 mm pathological but
    non-measurable (non-target), < 10 mm normal (§3.1.1, §3.1.2). The 15 mm node threshold
    is used whatever the slice thickness (the guideline gives no thick-slice rule for
    nodes). Non-nodal lesions need LD ≥ :func:`min_measurable_ld_mm`.
    """
    size = lesion.recist_size
    name = lesion.measure_name
    if isinstance(size, str) or size is None:
        label = "too small to measure" if size == "too_small" else "not evaluable"
        if lesion.nodal and size == "too_small":
            return Measurability("normal_node", None, f"node {label}: normal size, not disease")
        return Measurability("non_target", None, f"{label} at baseline: non-measurable (§3.1.2)")
    if lesion.nodal:
        if is_at_least(size, rules.node_measurable_min_sa_mm, rules):
            return Measurability("target_eligible", size,
                                 f"node SA {size:g} mm ≥ {rules.node_measurable_min_sa_mm:g} mm")
        if is_at_least(size, rules.node_pathological_min_sa_mm, rules):
            return Measurability(
                "non_target", size,
                f"pathological node SA {size:g} mm in [{rules.node_pathological_min_sa_mm:g}, "
                f"{rules.node_measurable_min_sa_mm:g}) mm: non-target (§3.1.2)")
        return Measurability("normal_node", size,
                             f"node SA {size:g} mm < {rules.node_pathological_min_sa_mm:g} mm: "
                             "normal, not disease (§3.1.2)")
    threshold = min_measurable_ld_mm(slice_thickness_mm, rules)
    if is_at_least(size, threshold, rules):
        return Measurability("target_eligible", size, f"{name} {size:g} mm ≥ {threshold:g} mm")
    return Measurability("non_target", size,
                         f"{name} {size:g} mm < {threshold:g} mm: non-measurable (§3.1.2)")
