"""iRECIST (Seymour et al. 2017, Lancet Oncol 18:e143): iUPD, iCPD, reset, new lesions.

Hand-computed from the guideline; arithmetic in the comments. Baseline SOD of the
standard case is L1 30 + L2 20 = 50 mm, so RECIST PD needs ≥ 60 mm (1.2 × 50, +10 mm).
"""

from __future__ import annotations

import pytest

from DTTLib.response.cli import recist_case_from_json


def les(lid, ld, organ="liver"):
    return {"id": lid, "organ": organ, "nodal": False, "ld_mm": ld, "target": None}


def tp(day, lesions, non_target="none", new=False, new_measured=None, **extra):
    d = {"day": day, "lesions": lesions, "non_target": non_target, "new_lesions": new, **extra}
    if new_measured is not None:
        d["new_lesion_measurements"] = new_measured
    return d


def run(*tps, immunotherapy=True, **settings):
    obj = {"immunotherapy": immunotherapy, "confirmation_required": False, "min_sd_days": 42}
    obj.update(settings)
    obj["timepoints"] = list(tps)
    return recist_case_from_json(obj)


def targets(l1, l2):
    return [les("L1", l1), les("L2", l2, "lung")]


BASE = tp(0, targets(30.0, 20.0))
IUPD = tp(56, targets(42.0, 20.0))  # 62 mm: ≥ 60 and +12 → RECIST PD → iUPD


@pytest.mark.parametrize("name, follow, expected", [
    ("+5 mm SOM confirms iCPD", [tp(112, targets(47.0, 20.0))], ["iUPD", "iCPD"]),   # 67 = 62 + 5
    ("+4 mm SOM stays iUPD", [tp(112, targets(46.0, 20.0))], ["iUPD", "iUPD"]),      # 66: < +5, still ≥ 60
    ("back to baseline resets to iSD", [tp(112, targets(30.0, 20.0))], ["iUPD", "iSD"]),  # 50 vs nadir 50
    ("shrinks below -30 % resets to iPR", [tp(112, targets(20.0, 10.0))], ["iUPD", "iPR"]),  # 30 ≤ 35
    ("new lesion after iUPD confirms iCPD",
     [tp(112, targets(42.0, 20.0), new=True, new_measured=[les("NL1", 8.0, "bone")])],
     ["iUPD", "iCPD"]),
    ("reset, then a later progression is iUPD again before iCPD",
     [tp(112, targets(30.0, 20.0)), tp(168, targets(42.0, 20.0)), tp(224, targets(47.0, 20.0))],
     ["iUPD", "iSD", "iUPD", "iCPD"]),
    ("NE after iUPD keeps it pending",
     [tp(112, [les("L1", "not_evaluable"), les("L2", 20.0, "lung")]), tp(168, targets(47.0, 20.0))],
     ["iUPD", "NE", "iCPD"]),
    ("iCPD is final", [tp(112, targets(47.0, 20.0)), tp(168, targets(30.0, 20.0))],
     ["iUPD", "iCPD", "iCPD"]),
])
def test_target_driven_iupd(name, follow, expected):
    out = run(BASE, IUPD, *follow)
    assert [t["overall"] for t in out["timepoints"][1:]] == expected
    assert out["timepoints"][1]["recist_overall"] == "PD"


def test_same_case_under_recist_is_pd():
    out = run(BASE, IUPD, tp(112, targets(30.0, 20.0)), immunotherapy=False)
    assert out["criteria"] == "RECIST 1.1"
    assert out["timepoints"][1]["overall"] == "PD"
    assert out["best_overall_response"] == "PD"


# --- new lesions -----------------------------------------------------------------------

NL_IUPD = tp(56, targets(30.0, 20.0), new=True, new_measured=[les("NL1", 15.0)])


@pytest.mark.parametrize("name, follow, expected", [
    ("additional new lesion confirms iCPD",
     tp(112, targets(30.0, 20.0), new=True, new_measured=[les("NL1", 15.0), les("NL2", 6.0, "lung")]),
     "iCPD"),
    ("new-lesion target +5 mm confirms iCPD",          # NL1 15 → 20
     tp(112, targets(30.0, 20.0), new=True, new_measured=[les("NL1", 20.0)]), "iCPD"),
    ("new-lesion target +3 mm stays iUPD",             # NL1 15 → 18, still present
     tp(112, targets(30.0, 20.0), new=True, new_measured=[les("NL1", 18.0)]), "iUPD"),
    ("new lesion gone resets to iSD",                  # SOD 50 vs nadir 50 → SD
     tp(112, targets(30.0, 20.0), new=False, new_measured=[les("NL1", 0.0)]), "iSD"),
    ("targets now meet PD after new-lesion iUPD",      # 62 ≥ 60 and +12
     tp(112, targets(42.0, 20.0), new=True, new_measured=[les("NL1", 15.0)]), "iCPD"),
])
def test_new_lesion_driven_iupd(name, follow, expected):
    out = run(BASE, NL_IUPD, follow)
    assert [t["overall"] for t in out["timepoints"][1:]] == ["iUPD", expected]


def test_new_lesions_are_not_added_to_the_som():
    out = run(BASE, NL_IUPD)
    t = out["timepoints"][1]
    assert t["sod_mm"] == 50.0                  # L1 30 + L2 20 only
    assert t["change_from_baseline_pct"] == 0.0
    assert t["target_response"] == "SD"
    assert t["new_lesion_target_sum_mm"] == 15.0
    assert t["recist_overall"] == "PD" and t["overall"] == "iUPD"


def test_new_lesion_targets_follow_five_and_two_per_organ():
    new = [les("NL1", 20.0), les("NL2", 15.0), les("NL3", 12.0), les("NL4", 5.0, "lung")]
    out = run(BASE, tp(56, targets(30.0, 20.0), new=True, new_measured=new))
    roles = {d["id"]: d["role"] for d in out["new_lesion_targets"]}
    # NL1, NL2: the two liver targets; NL3: liver limit reached; NL4 < 10 mm: non-measurable.
    assert roles == {"NL1": "target", "NL2": "target", "NL3": "non_target", "NL4": "non_target"}
    assert out["timepoints"][1]["new_lesion_target_sum_mm"] == 35.0
    assert out["timepoints"][1]["sod_mm"] == 50.0


# --- non-target lesions --------------------------------------------------------------

NT_BASE = tp(0, targets(30.0, 20.0) + [les("M1", 8.0, "bone")], non_target="nonCR_nonPD")
NT_IUPD = tp(56, targets(30.0, 20.0), non_target="PD")


@pytest.mark.parametrize("follow, expected, reason", [
    (tp(112, targets(30.0, 20.0), non_target="PD", non_target_further_increase=True), "iCPD",
     "further non-target increase"),
    (tp(112, targets(30.0, 20.0), non_target="PD", non_target_further_increase=False), "iUPD",
     "no further increase"),
    # not assessed: "PD" again is no evidence of growth since iUPD, so no confirmation, and it says so
    (tp(112, targets(30.0, 20.0), non_target="PD"), "iUPD", "further increase not assessed"),
    (tp(112, targets(30.0, 20.0), non_target="nonCR_nonPD"), "iSD", "reset"),  # not progressed
])
def test_non_target_driven_iupd(follow, expected, reason):
    out = run(NT_BASE, NT_IUPD, follow)
    assert [t["overall"] for t in out["timepoints"][1:]] == ["iUPD", expected]
    assert reason in out["timepoints"][2]["overall_reason"]


def test_not_assessed_then_a_further_increase_confirms():
    out = run(NT_BASE, NT_IUPD, tp(112, targets(30.0, 20.0), non_target="PD"),
              tp(168, targets(30.0, 20.0), non_target="PD", non_target_further_increase=True))
    assert [t["overall"] for t in out["timepoints"][1:]] == ["iUPD", "iUPD", "iCPD"]


def test_a_further_increase_without_non_target_pd_is_not_counted_and_said():
    out = run(NT_BASE, NT_IUPD,
              tp(112, targets(30.0, 20.0), non_target="nonCR_nonPD", non_target_further_increase=True))
    assert out["timepoints"][2]["overall"] == "iSD"
    assert any("day 112" in w and "not counted" in w for w in out["warnings"])


def test_non_target_progression_after_target_iupd_confirms():
    out = run(NT_BASE, tp(56, targets(42.0, 20.0), non_target="nonCR_nonPD"),
              tp(112, targets(42.0, 20.0), non_target="PD"))
    assert [t["overall"] for t in out["timepoints"][1:]] == ["iUPD", "iCPD"]


# --- best overall response and warnings --------------------------------------------

@pytest.mark.parametrize("follow, expected", [
    ([IUPD, tp(112, targets(47.0, 20.0))], "iCPD"),
    ([IUPD, tp(112, targets(46.0, 20.0))], "iUPD"),           # never confirmed
    ([IUPD, tp(112, targets(30.0, 20.0)), tp(168, targets(42.0, 20.0)),
      tp(224, targets(47.0, 20.0))], "iSD"),                  # iSD at day 112 ≥ 42 days
    ([tp(28, targets(30.0, 20.0)), tp(56, targets(42.0, 20.0)), tp(112, targets(47.0, 20.0))],
     "iCPD"),                                                 # iSD only at day 28 < 42
    ([tp(56, targets(20.0, 10.0))], "iPR"),                   # 30 ≤ 35
])
def test_irecist_best_overall_response(follow, expected):
    out = run(BASE, *follow)
    assert out["criteria"] == "iRECIST"
    assert out["best_overall_response"] == expected


def test_confirmation_window_warnings():
    late = run(BASE, IUPD, tp(140, targets(47.0, 20.0)))        # 84 days after iUPD
    assert any("outside" in w and "day 56" in w for w in late["warnings"])
    ok = run(BASE, IUPD, tp(98, targets(47.0, 20.0)))           # 42 days: inside 28–56
    assert not any("outside" in w for w in ok["warnings"])
    open_ = run(BASE, IUPD)
    assert any("unconfirmed" in w for w in open_["warnings"])


@pytest.mark.parametrize("iupd, unmeasured", [
    (tp(56, targets(30.0, 20.0), new=True), "days 56, 112"),  # measured at neither visit
    (NL_IUPD, "day 112"),                                      # measured at the iUPD visit only
])
def test_unmeasured_new_lesions_are_warned_in_a_readers_words(iupd, unmeasured):
    # iUPD at day 56 from new lesions; at day 112 they are still present but not measured, so
    # neither growth of new-lesion targets (≥ 5 mm) nor additional new lesions can confirm iCPD
    out = run(BASE, iupd, tp(112, targets(30.0, 20.0), new=True))
    assert [t["overall"] for t in out["timepoints"][1:]] == ["iUPD", "iUPD"]
    warnings = out["warnings"]
    unchecked = [w for w in warnings if w.startswith("day 112: new lesions are present")]
    assert len(unchecked) == 1, warnings
    assert "iUPD visit (day 56)" in unchecked[0] and "cannot check whether they grew" in unchecked[0]
    reported = [w for w in warnings if w.startswith("new lesions reported but not measured")]
    assert reported == [f"new lesions reported but not measured ({unmeasured}): iRECIST cannot select or "
                        "follow new-lesion target lesions, nor count additional new lesions "
                        "(measure each new lesion)"]
    # a radiologist reads these in Slicer: no case.json field names
    assert not any("new_lesion" in w for w in warnings), warnings
