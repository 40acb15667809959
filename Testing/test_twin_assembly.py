"""The twin: measurements → RECIST case → responses → growth → what-if, checked against
independent arithmetic and the known truth of simulated series."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from DTTLib.errors import InputError
from DTTLib.growth.models import Exposure, get_model
from DTTLib.tracking import Event, IdentityGraph, Link
from DTTLib.twin import (
    LesionMeasurement,
    TherapyEntry,
    TimepointInfo,
    TwinInputs,
    TwinState,
    WhatIfControls,
    build_twin,
)

M = LesionMeasurement


def two_timepoints() -> TwinInputs:
    ms = [M("L1", 0, 40.0, organ="liver", source="seg t0 L1"), M("L2", 0, 20.0, organ="lung"),
          M("L1", 1, 28.0, organ="liver"), M("L2", 1, 14.0, organ="lung")]
    return TwinInputs("P2", [TimepointInfo(0), TimepointInfo(56)], ms, [TherapyEntry(0)])


def five_timepoints() -> tuple[TwinInputs, np.ndarray]:
    days = np.array([0.0, 42, 84, 126, 168])
    ex = Exposure.from_log([(0.0, math.inf, 1.0)])
    noise = np.exp(0.02 * np.random.default_rng(7).standard_normal((2, days.size)))
    l1 = get_model("claret").predict(days, [40.0, 0.004, 0.015, 0.012], ex) * noise[0]
    l2 = get_model("claret").predict(days, [25.0, 0.004, 0.015, 0.012], ex) * noise[1]
    ms = [M("L1", i, round(float(a), 1), organ="liver") for i, a in enumerate(l1)]
    ms += [M("L2", i, round(float(b), 1), organ="lung") for i, b in enumerate(l2)]
    tps = [TimepointInfo(float(d), "none" if i == 0 else "nonCR_nonPD") for i, d in enumerate(days)]
    return TwinInputs("P5", tps, ms, [TherapyEntry(0.0, None, 1.0, "drug A")]), days


def test_two_timepoints_gives_response_and_a_clear_fit_status():
    state, whatif = build_twin(two_timepoints())
    last = state.recist["timepoints"][1]
    assert last["sod_mm"] == 42.0 and last["change_from_baseline_pct"] == pytest.approx(-30.0)
    assert last["overall"] == "PR"  # exactly -30 % is PR
    sod = state.series("SOD")
    assert sod.status == "too few points" and sod.fit is None and whatif is None
    assert sod.two_point_rate_per_day == pytest.approx(math.log(42 / 60) / 56)
    assert sod.doubling_time_days == pytest.approx(math.log(2) / (math.log(42 / 60) / 56))
    assert any("need >= 3" in m for m in state.messages)
    assert state.lesion_table[0]["source"] == "seg t0 L1"
    assert TwinState.from_json(state.to_json()).to_dict() == json.loads(state.to_json())


def test_five_timepoints_fit_and_whatif():
    inputs, days = five_timepoints()
    state, whatif = build_twin(inputs)
    by_tp = {}
    for m in inputs.measurements:
        by_tp[m.timepoint] = by_tp.get(m.timepoint, 0.0) + m.ld_mm
    sod = state.series("SOD")
    assert sod.y == pytest.approx([by_tp[i] for i in range(5)])
    assert sod.status == "ok" and sod.fit is not None and sod.selected in sod.models
    t = np.array(sod.fit.t)
    med = np.array(sod.fit.median, float)
    at_obs = np.interp(days, t, med)
    assert np.all(np.abs(at_obs / np.array(sod.y) - 1) < 0.1)  # the fit follows the data
    lo80, hi80 = np.array(sod.fit.lo80, float), np.array(sod.fit.hi80, float)
    lo95, hi95 = np.array(sod.fit.lo95, float), np.array(sod.fit.hi95, float)
    assert np.all(lo95 <= lo80 + 1e-9) and np.all(lo80 <= med + 1e-9) and np.all(hi80 <= hi95 + 1e-9)
    assert [c.kind for c in state.whatif] == ["hypothesis", "hypothesis"]
    assert all(c.label.startswith("HYPOTHESIS") for c in state.whatif)
    given, natural = state.whatif
    assert natural.median[-1] > given.median[-1]  # no therapy: larger tumour
    later = whatif.run_controls(WhatIfControls(shift_weeks=4))
    i = int(np.searchsorted(whatif.t, 100))
    assert later.median[i] > given.median[i]
    start = time.perf_counter()
    combo = whatif.run_controls(WhatIfControls(shift_weeks=-2, effect_multiplier=1.5, holiday_start_day=100,
                                               holiday_end_day=130, resistance_day=200))
    assert time.perf_counter() - start < 0.05  # live sliders: ≤ 50 ms per update
    for words in ("earlier", "× 1.5", "holiday", "resistance"):
        assert words in combo.label
    assert json.loads(state.to_json())["growth"][0]["name"] == "SOD"


def test_identity_graph_split_merge_disappear_new_follow_recist_rules():
    ms = [M("A", 0, 30.0, organ="liver"), M("B", 0, 20.0, organ="lung"), M("C", 0, 15.0, organ="lung"),
          M("a1", 1, 12.0, organ="liver"), M("a2", 1, 10.0, organ="liver"),  # A split
          M("b", 1, 18.0, organ="lung"), M("n", 1, 11.0, organ="bone")]  # C gone, n new
    g = IdentityGraph("P", [0.0, 60.0], [(0, "A"), (0, "B"), (0, "C"), (1, "a1"), (1, "a2"), (1, "b"), (1, "n")])
    g.links = [Link((0, "A"), (1, "a1"), 0.9, "overlap"), Link((0, "A"), (1, "a2"), 0.9, "overlap"),
               Link((0, "B"), (1, "b"), 0.95, "registration+hungarian")]
    g.events = [Event("split", [(0, "A")], [(1, "a1"), (1, "a2")], 0.9, "overlap"),
                Event("disappeared", [(0, "C")], [], 0.8, "registration+hungarian"),
                Event("new", [], [(1, "n")], 0.8, "registration+hungarian")]
    inputs = TwinInputs("P", [TimepointInfo(0), TimepointInfo(60, "none")], ms, identity=g.to_dict())
    state, _ = build_twin(inputs)
    fu = state.recist_case["timepoints"][1]
    lds = {les["id"]: les["ld_mm"] for les in fu["lesions"]}
    assert lds == {"A": 22.0, "B": 18.0, "C": 0.0}  # split summed, gone = 0
    assert fu["new_lesions"] is True and fu["new_lesion_measurements"][0]["id"] == "n"
    r = state.recist["timepoints"][1]
    assert r["sod_mm"] == pytest.approx(40.0) and r["change_from_baseline_pct"] == pytest.approx((40 - 65) / 65 * 100, abs=1e-3)
    assert r["overall"] == "PD"  # a new lesion is progression whatever the SOD does
    roles = {row["lesion"]: row["role"] for row in state.lesion_table}
    assert roles["n"] == "new lesion" and roles["a1"] == roles["A"]
    assert state.tracks["A"] == [[0, "A"], [1, "a1"], [1, "a2"]]
    # merge: E1 + E2 -> e; the merged LD goes to E1, E2 counts 0
    g2 = IdentityGraph("Q", [0.0, 30.0], [(0, "E1"), (0, "E2"), (1, "e")])
    g2.links = [Link((0, "E1"), (1, "e"), 0.9, "overlap"), Link((0, "E2"), (1, "e"), 0.9, "overlap")]
    ms2 = [M("E1", 0, 12.0, organ="liver"), M("E2", 0, 11.0, organ="liver"), M("e", 1, 25.0, organ="liver")]
    s2, _ = build_twin(TwinInputs("Q", [TimepointInfo(0), TimepointInfo(30)], ms2, identity=g2.to_dict()))
    assert {x["id"]: x["ld_mm"] for x in s2.recist_case["timepoints"][1]["lesions"]} == {"E1": 25.0, "E2": 0.0}


def test_single_timepoint_and_bad_input():
    state, whatif = build_twin(TwinInputs("P1", [TimepointInfo(0)], [M("L1", 0, 22.0, organ="liver")]))
    assert whatif is None and state.recist["timepoints"][0]["sod_mm"] == 22.0
    assert any("single timepoint" in m for m in state.messages)
    with pytest.raises(InputError, match="baseline"):
        build_twin(TwinInputs("P", [TimepointInfo(0), TimepointInfo(9)], [M("L1", 1, 22.0)]))
    with pytest.raises(InputError, match="timepoint 3"):
        build_twin(TwinInputs("P", [TimepointInfo(0)], [M("L1", 0, 22.0), M("L1", 3, 20.0)]))


def test_a_fragmented_lesion_mask_enters_the_twin_with_its_summed_ld_and_says_so(shared_data):
    from DTTLib.imaging import read_image  # noqa: PLC0415
    from DTTLib.measurement import measure_lesion  # noqa: PLC0415
    from DTTLib.twin.from_masks import TimepointMasks, measure_timepoint  # noqa: PLC0415

    label = read_image(shared_data / "imaging" / "brain1_label.nrrd")  # two pieces apart in 3-D
    _, (measured,) = measure_timepoint(TimepointMasks(0.0, label, {"L1": label.array}, source="t0"), 0)
    m = measure_lesion(label.array, label)
    assert len(m.pieces) == 2
    assert measured.ld_mm == round(m.pieces[0].longest_diameter_mm + m.pieces[1].longest_diameter_mm, 2)
    assert measured.sa_mm == round(m.pieces[0].short_axis_mm, 2)
    assert measured.source.startswith(
        f"t0 segment 'L1': LD summed over 2 pieces, SA of the largest on slice k={m.pieces[0].slice_index} (")
    assert "RECIST fragments" in measured.source
