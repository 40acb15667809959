"""RECIST 1.1 and iRECIST response assessment (pure Python; no MRML, Qt or numpy).

Typical use::

    from DTTLib.response import case_from_json, evaluate_case
    result = evaluate_case(case_from_json(obj))
    result.best.category, [t.overall for t in result.timepoints]

Rules follow Eisenhauer et al. 2009 (Eur J Cancer 45:228–247) with the 2016 clarifications
(Schwartz et al., Eur J Cancer 62:132–137), and Seymour et al. 2017 (Lancet Oncol
18:e143) for iRECIST; thresholds are in :mod:`DTTLib.response.rules`.
"""

from DTTLib.response.best_response import Assessment, BestResponse, best_overall_response
from DTTLib.response.engine import CaseResult, TimepointResult, evaluate_case
from DTTLib.response.measurability import Measurability, classify_lesion, min_measurable_ld_mm
from DTTLib.response.overall import overall_response
from DTTLib.response.parse import case_from_json
from DTTLib.response.records import Case, LesionMeasurement, Timepoint
from DTTLib.response.rules import IRULES, RULES, IRecistRules, RecistRules
from DTTLib.response.sod import SumOfDiameters, size_value_mm, sum_of_diameters
from DTTLib.response.target_response import TargetAssessment, assess_targets, meets_pd, meets_pr
from DTTLib.response.targets import LesionDecision, TargetSelection, select_targets
from DTTLib.response.volumetric import (
    VOLUME_PD_PCT,
    VOLUME_PR_PCT,
    diameter_change_from_volume_change,
    volume_change_from_diameter_change,
)

__all__ = [
    "IRULES", "RULES", "VOLUME_PD_PCT", "VOLUME_PR_PCT",
    "Assessment", "BestResponse", "Case", "CaseResult", "IRecistRules", "LesionDecision",
    "LesionMeasurement", "Measurability", "RecistRules", "SumOfDiameters", "TargetAssessment",
    "TargetSelection", "Timepoint", "TimepointResult",
    "assess_targets", "best_overall_response", "case_from_json", "classify_lesion",
    "diameter_change_from_volume_change", "evaluate_case", "meets_pd", "meets_pr",
    "min_measurable_ld_mm", "overall_response", "select_targets", "size_value_mm",
    "sum_of_diameters", "volume_change_from_diameter_change",
]
