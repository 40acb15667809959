"""RECIST 1.1 overall response (Tables 1–2) and best overall response (Table 3, §4.6).

Expected values are read off the guideline tables (Eisenhauer et al. 2009, Eur J Cancer
45:228–247, §4.4.1, §4.4.3, §4.6.1, §4.6.3), not produced by the code.
"""

from __future__ import annotations

import pytest

from DTTLib.errors import InputError
from DTTLib.response import Assessment, best_overall_response, overall_response
from DTTLib.response.cli import recist_case_from_json


def les(lid, ld, organ="liver"):
    return {"id": lid, "organ": organ, "nodal": False, "ld_mm": ld, "target": None}


def tp(day, lesions, non_target="none", new=False):
    return {"day": day, "lesions": lesions, "non_target": non_target, "new_lesions": new}


def run(*tps, **settings):
    obj = {"immunotherapy": False, "confirmation_required": False, "min_sd_days": 42}
    obj.update(settings)
    obj["timepoints"] = list(tps)
    return recist_case_from_json(obj)


# --- Table 1 (target lesions present) and Table 2 (non-target only) -------------------

TABLE_1 = [
    ("CR", "CR", False, "CR"),
    ("CR", "none", False, "CR"),          # no non-target disease at all
    ("CR", "nonCR_nonPD", False, "PR"),
    ("CR", "NE", False, "PR"),            # "CR / not evaluated / no → PR"
    ("PR", "nonCR_nonPD", False, "PR"),
    ("PR", "NE", False, "PR"),            # "PR / non-PD or not all evaluated → PR"
    ("PR", "CR", False, "PR"),
    ("SD", "nonCR_nonPD", False, "SD"),
    ("SD", "NE", False, "SD"),
    ("SD", "CR", False, "SD"),
    ("NE", "nonCR_nonPD", False, "NE"),   # "not all evaluated / non-PD → NE"
    ("NE", "CR", False, "NE"),
    ("PD", "CR", False, "PD"),
    ("PD", "nonCR_nonPD", True, "PD"),
    ("CR", "PD", False, "PD"),            # non-target PD alone
    ("NE", "PD", False, "PD"),
    ("CR", "CR", True, "PD"),             # new lesion alone
    ("NE", "NE", True, "PD"),
]
TABLE_2 = [
    ("CR", False, "CR"),
    ("nonCR_nonPD", False, "nonCR_nonPD"),
    ("NE", False, "NE"),
    ("PD", False, "PD"),
    ("nonCR_nonPD", True, "PD"),
    ("CR", True, "PD"),
]


@pytest.mark.parametrize("target, non_target, new, expected", TABLE_1)
def test_table_1(target, non_target, new, expected):
    assert overall_response(target, non_target, new) == expected


@pytest.mark.parametrize("non_target, new, expected", TABLE_2)
def test_table_2_no_targets(non_target, new, expected):
    assert overall_response(None, non_target, new) == expected


# --- the same through whole cases ----------------------------------------------------

BASE = tp(0, [les("L1", 30.0), les("M1", 8.0, "lung")], non_target="nonCR_nonPD")


@pytest.mark.parametrize("follow, expected_target, expected_overall", [
    # L1 30 → 28 (SD); new lesion → PD
    (tp(56, [les("L1", 28.0)], "nonCR_nonPD", True), "SD", "PD"),
    # targets SD; unequivocal non-target progression alone → PD
    (tp(56, [les("L1", 28.0)], "PD", False), "SD", "PD"),
    # targets CR (0 mm), non-target present → PR
    (tp(56, [les("L1", 0.0)], "nonCR_nonPD", False), "CR", "PR"),
    # targets CR, non-target not evaluated → PR
    (tp(56, [les("L1", 0.0)], "NE", False), "CR", "PR"),
    # targets CR and non-target CR → CR
    (tp(56, [les("L1", 0.0)], "CR", False), "CR", "CR"),
    # target NE, non-target non-PD → NE
    (tp(56, [les("L1", "not_evaluable")], "nonCR_nonPD", False), "NE", "NE"),
    # non_target "none" although non-target disease existed → treated as not evaluated
    (tp(56, [les("L1", 20.0)], "none", False), "PR", "PR"),
])
def test_overall_in_a_case(follow, expected_target, expected_overall):
    out = run(BASE, follow)
    t = out["timepoints"][1]
    assert (t["target_response"], t["overall"]) == (expected_target, expected_overall)


def test_non_target_only_case_uses_table_2():
    # Only an 8 mm lesion (non-measurable) and a 12 mm node: no targets.
    base = tp(0, [les("M1", 8.0), {"id": "N1", "organ": "neck", "nodal": True, "ld_mm": 15.0,
                                   "sa_mm": 12.0}])
    out = run(base, tp(56, [], "nonCR_nonPD"), tp(112, [], "nonCR_nonPD"))
    assert out["targets"] == []
    assert [t["overall"] for t in out["timepoints"][1:]] == ["nonCR_nonPD", "nonCR_nonPD"]
    assert out["timepoints"][1]["sod_mm"] is None
    assert out["best_overall_response"] == "nonCR_nonPD"


def test_no_disease_at_baseline_is_an_error():
    base = tp(0, [{"id": "N1", "organ": "neck", "nodal": True, "ld_mm": 9.0, "sa_mm": 6.0}])
    with pytest.raises(InputError):
        run(base, tp(56, [], "none"))


# --- best overall response (Table 3 and §4.6) ----------------------------------------

A = Assessment
BOR_CASES = [
    # name, assessments, confirmation required, min SD days, expected BOR
    ("PR confirmed 28 d later", [A(56, "PR"), A(84, "PR")], True, 42, "PR"),
    ("PR repeat only 21 d later: SD", [A(56, "PR"), A(77, "PR")], True, 42, "SD"),
    ("PR then CR confirms PR", [A(56, "PR"), A(84, "CR")], True, 42, "PR"),
    ("single PR, no confirmation needed", [A(56, "PR")], False, 42, "PR"),
    ("single PR, confirmation needed: SD", [A(56, "PR")], True, 42, "SD"),
    ("CR confirmed", [A(56, "CR"), A(84, "CR")], True, 42, "CR"),
    ("CR then PR: not CR, not PR (Table 3 a)", [A(56, "CR"), A(84, "PR")], True, 42, "SD"),
    ("CR then SD → SD", [A(56, "CR"), A(84, "SD")], True, 42, "SD"),
    ("CR then PD, duration met → SD", [A(56, "CR"), A(84, "PD")], True, 42, "SD"),
    ("CR then PD, duration not met → PD", [A(28, "CR"), A(56, "PD")], True, 42, "PD"),
    ("PR then SD → SD", [A(56, "PR"), A(84, "SD")], True, 42, "SD"),
    ("PR then PD, duration not met → PD", [A(28, "PR"), A(56, "PD")], True, 42, "PD"),
    ("PR then NE, duration not met → NE", [A(28, "PR"), A(56, "NE")], True, 42, "NE"),
    ("PR then NE, duration met → SD", [A(42, "PR"), A(70, "NE")], True, 42, "SD"),
    ("NE then NE → NE", [A(56, "NE"), A(84, "NE")], True, 42, "NE"),
    ("NE between two PRs still confirms", [A(28, "PR"), A(42, "NE"), A(70, "PR")], True, 42, "PR"),
    ("SD between two PRs breaks confirmation",
     [A(28, "PR"), A(42, "SD"), A(70, "PR")], True, 42, "SD"),
    ("SD shorter than min_sd_days then PD → PD", [A(28, "SD"), A(56, "PD")], False, 42, "PD"),
    ("SD shorter than min_sd_days then NE → NE", [A(28, "SD"), A(56, "NE")], False, 42, "NE"),
    ("SD at exactly min_sd_days → SD", [A(42, "SD"), A(70, "PD")], False, 42, "SD"),
    ("nothing counts after PD", [A(28, "PD"), A(56, "CR"), A(84, "CR")], False, 42, "PD"),
    ("CR not confirmed but PR earlier confirmed by it",
     [A(28, "PR"), A(56, "CR")], True, 42, "PR"),
    ("best of unconfirmed CR, no confirmation needed", [A(28, "SD"), A(56, "CR")], False, 42, "CR"),
]


@pytest.mark.parametrize("name, assessments, confirm, min_sd, expected", BOR_CASES,
                         ids=[c[0] for c in BOR_CASES])
def test_best_overall_response(name, assessments, confirm, min_sd, expected):
    best = best_overall_response(assessments, 0.0, confirmation_required=confirm,
                                 min_sd_days=min_sd)
    assert best.category == expected


def test_non_target_only_bor_needs_duration_too():
    best = best_overall_response([A(28, "nonCR_nonPD"), A(56, "PD")], 0.0,
                                 confirmation_required=False, min_sd_days=42, has_targets=False)
    assert best.category == "PD"


@pytest.mark.parametrize("confirm, expected", [(False, "PR"), (True, "SD")])
def test_confirmation_switch_in_a_case(confirm, expected):
    # 40 → 24 (−40 %, PR) at day 56 → 28.5 at day 84: > 28 (0.7 × 40, not PR) and
    # < 28.8 (1.2 × nadir 24, not PD) → SD.
    out = run(tp(0, [les("L1", 40.0)]), tp(56, [les("L1", 24.0)]), tp(84, [les("L1", 28.5)]),
              confirmation_required=confirm)
    assert [t["overall"] for t in out["timepoints"][1:]] == ["PR", "SD"]
    assert out["best_overall_response"] == expected


@pytest.mark.parametrize("min_sd, expected", [(42, "PD"), (28, "SD")])
def test_sd_minimum_duration_in_a_case(min_sd, expected):
    # day 35: 30 → 29 (SD); day 70: 29 → 40 (≥ 34.8 and +11 → PD).
    out = run(tp(0, [les("L1", 30.0)]), tp(35, [les("L1", 29.0)]), tp(70, [les("L1", 40.0)]),
              min_sd_days=min_sd)
    assert [t["overall"] for t in out["timepoints"][1:]] == ["SD", "PD"]
    assert out["best_overall_response"] == expected


def test_baseline_day_need_not_be_zero():
    # SD at day 140 is 40 days after a day-100 baseline: < 42 → NE
    out = run(tp(100, [les("L1", 30.0)]), tp(140, [les("L1", 29.0)]))
    assert out["best_overall_response"] == "NE"
