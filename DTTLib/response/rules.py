"""The numbers of RECIST 1.1 and iRECIST, kept as data with their sources.

Keeping every threshold in one frozen record (instead of literals scattered through the
code) lets a reader check each one against the guideline and lets tests name the rule.

References
----------
* RECIST 1.1: Eisenhauer EA et al. New response evaluation criteria in solid tumours:
  revised RECIST guideline (version 1.1). Eur J Cancer 2009;45:228–247.
* RECIST 1.1 clarifications: Schwartz LH et al. RECIST 1.1 — Update and clarification:
  from the RECIST committee. Eur J Cancer 2016;62:132–137.
* iRECIST: Seymour L et al. iRECIST: guidelines for response criteria for use in trials
  testing immunotherapeutics. Lancet Oncol 2017;18:e143–e152.
"""

from __future__ import annotations

from dataclasses import dataclass

RECIST_REFERENCE = (
    "Eisenhauer EA et al. New response evaluation criteria in solid tumours: revised "
    "RECIST guideline (version 1.1). Eur J Cancer 2009;45:228-247"
)
RECIST_UPDATE_REFERENCE = (
    "Schwartz LH et al. RECIST 1.1 - Update and clarification: from the RECIST committee. "
    "Eur J Cancer 2016;62:132-137"
)
IRECIST_REFERENCE = (
    "Seymour L et al. iRECIST: guidelines for response criteria for use in trials testing "
    "immunotherapeutics. Lancet Oncol 2017;18:e143-e152"
)

#: All lymph nodes form one "organ" for the per-organ target limit (RECIST 1.1 §4.2).
NODE_ORGAN_GROUP = "lymph node"


@dataclass(frozen=True)
class RecistRules:
    """RECIST 1.1 thresholds; the comment on each field gives the guideline section."""

    #: §3.1.1 measurable non-nodal lesion: longest diameter ≥ 10 mm on CT ...
    min_measurable_ld_mm: float = 10.0
    #: §3.1.1 ... with slices ≤ 5 mm; thicker slices need ≥ 2 × slice thickness.
    thin_slice_max_mm: float = 5.0
    thick_slice_factor: float = 2.0
    #: §3.1.1 pathological node measurable (target-eligible): short axis ≥ 15 mm.
    node_measurable_min_sa_mm: float = 15.0
    #: §3.1.2 / §4.3.2 node with SA ≥ 10 mm is pathological; < 10 mm is normal.
    node_pathological_min_sa_mm: float = 10.0
    #: §4.2 at most five target lesions in total, at most two per organ.
    max_targets: int = 5
    max_targets_per_organ: int = 2
    #: §4.3.2 a target that is present but too small to measure counts as 5 mm.
    too_small_default_mm: float = 5.0
    #: §4.3.1 PR: ≥ 30 % decrease of the sum versus the baseline sum.
    pr_max_fraction_of_baseline: float = 0.70
    #: §4.3.1 PD: ≥ 20 % increase over the smallest sum on study (nadir) ...
    pd_min_fraction_of_nadir: float = 1.20
    #: §4.3.1 ... and an absolute increase of at least 5 mm.
    pd_min_absolute_increase_mm: float = 5.0
    #: §4.6.1 CR/PR confirmation: repeat assessment no less than 4 weeks later.
    confirmation_min_days: float = 28.0
    #: §4.6.3 SD minimum duration from baseline; protocol-specific, "in general not less
    #: than 6–8 weeks". Used when a case does not give ``min_sd_days``.
    default_min_sd_days: float = 42.0
    #: Relative tolerance for threshold comparisons, so that a change computed as
    #: −29.9999999 % because of binary floating point still counts as −30 %.
    rel_tolerance: float = 1e-9


@dataclass(frozen=True)
class IRecistRules:
    """iRECIST additions (Seymour et al. 2017); sections refer to that paper."""

    #: "Confirmation of progression": the next assessment 4–8 weeks after iUPD.
    confirmation_window_min_days: float = 28.0
    confirmation_window_max_days: float = 56.0
    #: iCPD: further increase of ≥ 5 mm in the target sum of measures (SOM) or in the
    #: sum of new-lesion targets.
    further_increase_mm: float = 5.0
    #: "New lesions": up to five measurable new lesions (two per organ) are new-lesion
    #: targets, measured apart and never added to the baseline SOM.
    max_new_lesion_targets: int = 5
    max_new_lesion_targets_per_organ: int = 2


RULES = RecistRules()
IRULES = IRecistRules()


def is_at_least(value: float, threshold: float, rules: RecistRules = RULES) -> bool:
    """``value ≥ threshold`` allowing for binary rounding (see ``rel_tolerance``)."""
    return value >= threshold - rules.rel_tolerance * max(1.0, abs(threshold))


def is_at_most(value: float, threshold: float, rules: RecistRules = RULES) -> bool:
    """``value ≤ threshold`` allowing for binary rounding (see ``rel_tolerance``)."""
    return value <= threshold + rules.rel_tolerance * max(1.0, abs(threshold))
