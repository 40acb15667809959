"""RECIST 1.1 rules: parsing, measurability, target selection, SOD and target response.

Every expected value is worked out by hand from the guideline (Eisenhauer et al. 2009,
Eur J Cancer 45:228–247); the arithmetic is in the comments.
"""

from __future__ import annotations

import math

import pytest

from DTTLib.errors import InputError
from DTTLib.response import (
    case_from_json,
    diameter_change_from_volume_change,
    evaluate_case,
    min_measurable_ld_mm,
    select_targets,
    volume_change_from_diameter_change,
)
from DTTLib.response.cli import recist_case_from_json


def les(lid, ld, organ="liver", *, nodal=False, sa=None, target=None, volume=None):
    d = {"id": lid, "organ": organ, "nodal": nodal, "ld_mm": ld, "target": target}
    if sa is not None:
        d["sa_mm"] = sa
    if volume is not None:
        d["volume_mm3"] = volume
    return d


def node(lid, sa, organ="mediastinum", *, target=None, ld=None):
    return les(lid, ld if ld is not None else (sa if isinstance(sa, str) else sa + 5), organ,
               nodal=True, sa=sa, target=target)


def tp(day, lesions, non_target="none", new=False, **extra):
    return {"day": day, "lesions": lesions, "non_target": non_target, "new_lesions": new, **extra}


def case(*tps, **settings):
    obj = {"immunotherapy": False, "confirmation_required": False, "min_sd_days": 42}
    obj.update(settings)
    obj["timepoints"] = list(tps)
    return obj


def selection_of(lesions, slice_mm=None):
    c = case_from_json(case(tp(0, lesions), **({"slice_thickness_mm": slice_mm} if slice_mm else {})))
    return select_targets(c.baseline.lesions, c.slice_thickness_mm)


# --- parsing -------------------------------------------------------------------------

BASE = tp(0, [les("L1", 30.0)])


@pytest.mark.parametrize("obj, words", [
    (case(tp(0, [les("L1", 30.0)], non_target="stable")), ["non_target", "'stable'"]),
    (case(), ["baseline"]),
    ({"timepoints": "x"}, ["baseline"]),
    (case(BASE, tp(56, [les("L1", 20.0)]), tp(56, [les("L1", 20.0)])), ["day", "not after"]),
    (case(BASE, tp(56, [les("L1", 20.0)]), tp(30, [les("L1", 20.0)])), ["day", "not after"]),
    (case(tp(0, [les("L1", 30.0), les("L1", 20.0, "lung")])), ["'L1' twice"]),
    (case(tp(0, [les("L1", -3.0)])), ["ld_mm", "negative"]),
    (case(tp(0, [les("L1", float("nan"))])), ["ld_mm", "nan"]),
    (case(tp(0, [les("L1", "big")])), ["ld_mm", "too_small"]),
    (case(tp(0, [les("L1", True)])), ["ld_mm", "not a number"]),
    (case(tp(0, [les("N1", 20.0, nodal=True)])), ["sa_mm"]),
    (case(BASE, tp(56, [les("L9", 20.0)])), ["'L9'", "new_lesion_measurements"]),
    (case(BASE, {"day": 56, "lesions": [les("L1", 20.0)], "non_target": "none"}), ["new_lesions"]),
    (case(tp(0, [])), ["no lesions"]),
    (case(tp(0, [les("L1", 20.0, sa=25.0)])), ["sa_mm", "larger"]),
    (case(tp(0, [les("L1", 30.0, target=True)]), tp(56, [les("L1", 20.0, target=False)])),
     ["target=false", "baseline"]),
])
def test_bad_input_names_the_field(obj, words):
    with pytest.raises(InputError) as err:
        case_from_json(obj)
    text = err.value.message.lower()
    for word in words:
        assert word.lower() in text
    assert err.value.fix


def test_too_small_and_not_evaluable_markers_parse():
    c = case_from_json(case(BASE, tp(56, [les("L1", "TOO SMALL TO MEASURE")]),
                            tp(90, [les("L1", "not_evaluable")])))
    assert c.timepoints[1].lesions[0].ld_mm == "too_small"
    assert c.timepoints[2].lesions[0].ld_mm == "not_evaluable"


# --- measurability -------------------------------------------------------------------

@pytest.mark.parametrize("slice_mm, expected", [
    (None, 10.0), (1.0, 10.0), (5.0, 10.0),   # ≤ 5 mm slices: 10 mm
    (6.0, 12.0), (8.0, 16.0),                  # > 5 mm slices: 2 × slice thickness
])
def test_min_measurable_ld(slice_mm, expected):
    assert min_measurable_ld_mm(slice_mm) == expected


@pytest.mark.parametrize("lesion, slice_mm, role", [
    (les("L1", 10.0), None, "target"),            # LD 10 = threshold → measurable
    (les("L1", 9.9), None, "non_target"),          # below 10 mm
    (les("L1", 12.0), 8.0, "non_target"),          # 8 mm slices need 16 mm
    (les("L1", 16.0), 8.0, "target"),
    (les("L1", "too_small"), None, "non_target"),
    (node("N1", 15.0), None, "target"),            # node SA ≥ 15 mm
    (node("N1", 14.9), None, "non_target"),        # 10 ≤ SA < 15: pathological non-target
    (node("N1", 10.0), None, "non_target"),
    (node("N1", 9.9), None, "normal_node"),        # SA < 10: normal
])
def test_measurability_roles(lesion, slice_mm, role):
    sel = selection_of([lesion, les("X", 9.0, "bone")], slice_mm)
    assert sel.decisions[0].role == role


# --- target selection ----------------------------------------------------------------

def test_six_lesions_in_one_organ_gives_two_targets():
    sizes = [21.0, 35.0, 12.0, 40.0, 33.0, 18.0]
    sel = selection_of([les(f"L{i}", s) for i, s in enumerate(sizes, 1)])
    # Largest two in the liver: L4 (40) and L2 (35); the rest hit the 2-per-organ limit.
    assert set(sel.target_ids) == {"L4", "L2"}
    rest = [d for d in sel.decisions if d.role == "non_target"]
    assert len(rest) == 4 and all("organ limit" in d.reason for d in rest)


def test_all_nodes_count_as_one_organ():
    sel = selection_of([node("N1", 20.0, "mediastinum"), node("N2", 30.0, "axilla"),
                        node("N3", 25.0, "groin"), les("L1", 11.0, "lung")])
    # Nodes SA 30 (N2) and 25 (N3) are the two "lymph node organ" targets, plus the lung.
    assert set(sel.target_ids) == {"N2", "N3", "L1"}
    assert "organ limit" in next(d for d in sel.decisions if d.id == "N1").reason


def test_at_most_five_targets_and_every_organ_first():
    lesions = [les("A1", 50.0, "liver"), les("A2", 48.0, "liver"), les("B", 46.0, "lung"),
               les("C", 44.0, "kidney"), les("D", 42.0, "adrenal"), les("E", 40.0, "spleen"),
               les("F", 38.0, "peritoneum")]
    sel = selection_of(lesions)
    # "Representative of all involved organs" (§4.2): pass 1 takes the largest lesion of each
    # organ in size order — A1 50, B 46, C 44, D 42, E 40 — which fills the five slots, so
    # the 2nd liver lesion A2 (48) and F (38) stay non-target.
    assert sel.target_ids == ("A1", "B", "C", "D", "E")
    assert "total limit" in next(d for d in sel.decisions if d.id == "A2").reason
    assert len(sel.target_ids) == 5


def test_tie_break_is_input_order():
    sel = selection_of([les("L1", 20.0), les("L2", 20.0), les("L3", 20.0)])
    assert sel.target_ids == ("L1", "L2")


def test_override_false_lets_next_largest_in():
    sel = selection_of([les("L1", 40.0, target=False), les("L2", 30.0), les("L3", 20.0),
                        les("L4", 10.0)])
    assert sel.target_ids == ("L2", "L3")
    assert "override" in sel.decisions[0].reason


def test_override_true_is_kept_and_fills_rest():
    sel = selection_of([les("L1", 40.0), les("L2", 30.0), les("L3", 11.0, target=True)])
    # L3 forced; one liver slot left → L1 (largest).
    assert set(sel.target_ids) == {"L1", "L3"}


@pytest.mark.parametrize("lesions, rule", [
    ([les("L1", 8.0, target=True)], "measurability"),
    ([node("N1", 12.0, target=True)], "measurability"),
    ([les("L1", "too_small", target=True)], "measurability"),
    ([les(f"L{i}", 20.0, target=True) for i in range(3)], "per organ"),
    ([node("N1", 20.0, "axilla", target=True), node("N2", 20.0, "groin", target=True),
      node("N3", 20.0, "neck", target=True)], "per organ"),
    ([les(f"L{i}", 20.0, o, target=True) for i, o in
      enumerate(["a", "b", "c", "d", "e", "f"])], "at most 5"),
])
def test_override_breaking_rules_is_an_error(lesions, rule):
    with pytest.raises(InputError) as err:
        selection_of(lesions)
    assert rule in err.value.message


# --- SOD and target response ---------------------------------------------------------

def run(*tps, **settings):
    return recist_case_from_json(case(*tps, **settings))


TARGET_CASES = [
    # id, baseline lesions, follow-up lesion lists, expected target responses,
    #   expected SOD of the last follow-up, expected % change from baseline of last follow-up
    ("exactly -30% is PR",                      # 100 → 70: 70 ≤ 0.7×100
     [les("L1", 50.0), les("L2", 50.0, "lung")],
     [[les("L1", 35.0), les("L2", 35.0, "lung")]], ["PR"], 70.0, -30.0),
    ("-29.9% is SD",                            # 100 → 70.1 > 70
     [les("L1", 50.0), les("L2", 50.0, "lung")],
     [[les("L1", 35.0), les("L2", 35.1, "lung")]], ["SD"], 70.1, -29.9),
    ("-30% with binary rounding is PR",         # 20.7 → 14.49 = 0.7 × 20.7 exactly
     [les("L1", 10.0), les("L2", 10.7, "lung")],
     [[les("L1", 10.0), les("L2", 4.49, "lung")]], ["PR"], 14.49, -30.0),
    ("+20% but only +4 mm is SD",               # nadir 20 → 24: +20 % yet +4 mm < 5 mm
     [les("L1", 20.0)], [[les("L1", 24.0)]], ["SD"], 24.0, 20.0),
    ("+20% and +5 mm is PD",                    # nadir 25 → 30: ≥ 30 and +5 mm
     [les("L1", 25.0)], [[les("L1", 30.0)]], ["PD"], 30.0, 20.0),
    ("+19.9% is SD",                            # nadir 50 → 59.95 < 60
     [les("L1", 50.0)], [[les("L1", 59.95)]], ["SD"], 59.95, 19.9),
    ("PD from nadir checked before PR",         # 100 → 40 (PR); 40 → 50: ≥ 48 and +10 → PD
     [les("L1", 50.0), les("L2", 50.0, "lung")],
     [[les("L1", 20.0), les("L2", 20.0, "lung")], [les("L1", 25.0), les("L2", 25.0, "lung")]],
     ["PR", "PD"], 50.0, -50.0),
    ("nadir 60: 71 is SD (< 72 and > 70)",
     [les("L1", 50.0), les("L2", 50.0, "lung")],
     [[les("L1", 30.0), les("L2", 30.0, "lung")], [les("L1", 36.0), les("L2", 35.0, "lung")]],
     ["PR", "SD"], 71.0, -29.0),
    ("nadir 0 then reappearance 3 mm is PD",    # CR (sum 0); any reappearance after CR = PD
     [les("L1", 20.0)], [[les("L1", 0.0)], [les("L1", 3.0)]], ["CR", "PD"], 3.0, -85.0),
    ("reappearance as too small after CR is PD",
     [les("L1", 20.0)], [[les("L1", 0.0)], [les("L1", "too_small")]], ["CR", "PD"], 5.0, -75.0),
    ("node below 10 mm: CR with SOD > 0",       # L1 gone, N1 SA 8 < 10 → CR, SOD 8
     [les("L1", 20.0), node("N1", 20.0)], [[les("L1", 0.0), node("N1", 8.0)]], ["CR"], 8.0, -80.0),
    ("node at 10 mm is not CR",                 # 40 → 10: ≤ 28 → PR
     [les("L1", 20.0), node("N1", 20.0)], [[les("L1", 0.0), node("N1", 10.0)]], ["PR"], 10.0, -75.0),
    ("too small counts 5 mm",                   # 40 → 5 + 9 = 14 → PR (not CR: lesion present)
     [les("L1", 20.0), les("L2", 20.0, "lung")],
     [[les("L1", "too_small"), les("L2", 9.0, "lung")]], ["PR"], 14.0, -65.0),
    ("node too small counts 5 mm and is normal",  # L1 0, N1 5 mm (< 10) → CR, SOD 5
     [les("L1", 20.0), node("N1", 16.0)], [[les("L1", 0.0), node("N1", "too_small")]],
     ["CR"], 5.0, -86.1111),
    ("not evaluable target gives NE",           # 60 → L2 28 + L1 unknown
     [les("L1", 30.0), les("L2", 30.0, "lung")],
     [[les("L1", "not_evaluable"), les("L2", 28.0, "lung")]], ["NE"], None, None),
    ("missing target gives NE",
     [les("L1", 30.0), les("L2", 30.0, "lung")], [[les("L2", 28.0, "lung")]], ["NE"], None, None),
    ("NE target but evaluable sum already PD",  # nadir 60; L2 alone 80 ≥ 72 and +20 (§4.4.2)
     [les("L1", 30.0), les("L2", 30.0, "lung")],
     [[les("L1", "not_evaluable"), les("L2", 80.0, "lung")]], ["PD"], None, None),
]


@pytest.mark.parametrize("name, base, follow, responses, sod, change", TARGET_CASES,
                         ids=[c[0] for c in TARGET_CASES])
def test_target_response(name, base, follow, responses, sod, change):
    out = run(tp(0, base), *[tp(56 * (i + 1), f) for i, f in enumerate(follow)])
    got = [t["target_response"] for t in out["timepoints"][1:]]
    assert got == responses
    last = out["timepoints"][-1]
    if sod is None:
        assert last["sod_mm"] is None
    else:
        assert last["sod_mm"] == pytest.approx(sod)
    if change is None:
        assert last["change_from_baseline_pct"] is None
    else:
        assert last["change_from_baseline_pct"] == pytest.approx(change, abs=1e-3)


def test_nadir_and_change_from_nadir():
    # 100 → 60 → 75: nadir before day 112 is 60; +25 % from nadir, ≥ 72 and +15 → PD
    out = run(tp(0, [les("L1", 50.0), les("L2", 50.0, "lung")]),
              tp(56, [les("L1", 30.0), les("L2", 30.0, "lung")]),
              tp(112, [les("L1", 40.0), les("L2", 35.0, "lung")]))
    t = out["timepoints"][2]
    assert t["nadir_mm"] == 60.0
    assert t["change_from_nadir_pct"] == pytest.approx(25.0)
    assert t["target_response"] == "PD"


def test_baseline_sod_is_ld_plus_node_sa():
    # L1 LD 32 + N1 SA 20 (its LD 25 is not used) = 52; N2 SA 12 is a non-target.
    out = run(tp(0, [les("L1", 32.0), node("N1", 20.0, ld=25.0), node("N2", 12.0)]))
    assert out["baseline_sod_mm"] == 52.0
    assert {t["id"] for t in out["targets"]} == {"L1", "N1"}


# --- volumetric (supplementary) ------------------------------------------------------

@pytest.mark.parametrize("diameter_pct, volume_pct", [
    (20.0, 72.8),     # 1.2³ = 1.728
    (-30.0, -65.7),   # 0.7³ = 0.343
    (0.0, 0.0),
    (-100.0, -100.0),
])
def test_sphere_relation(diameter_pct, volume_pct):
    assert volume_change_from_diameter_change(diameter_pct) == pytest.approx(volume_pct)
    assert diameter_change_from_volume_change(volume_pct) == pytest.approx(diameter_pct, abs=1e-9)


def test_volumetric_readout_is_labelled_supplementary():
    # Target volumes 1000 + 1000 → 300 + 0 (L2 gone, 0 mm) : −85 % ≤ −65.7 % → vPR.
    out = run(tp(0, [les("L1", 20.0, volume=1000.0), les("L2", 20.0, "lung", volume=1000.0)]),
              tp(56, [les("L1", 12.0, volume=300.0), les("L2", 0.0, "lung")]))
    vol = out["timepoints"][1]["volumetric"]
    assert vol["total_volume_mm3"] == 300.0
    assert vol["change_from_baseline_pct"] == pytest.approx(-85.0)
    assert vol["category"] == "vPR"
    assert vol["label"] == "supplementary, not RECIST"
    assert out["timepoints"][1]["target_response"] == "PR"  # 40 → 12: −70 %


def test_no_volumes_no_volumetric_readout():
    out = run(tp(0, [les("L1", 20.0)]), tp(56, [les("L1", 20.0)]))
    assert out["timepoints"][1]["volumetric"] is None


def test_case_is_reusable_and_pure():
    obj = case(tp(0, [les("L1", 20.0)]), tp(56, [les("L1", 20.0)]))
    assert evaluate_case(case_from_json(obj)).best == evaluate_case(case_from_json(obj)).best
    assert not math.isnan(run(*obj["timepoints"])["timepoints"][1]["sod_mm"])
