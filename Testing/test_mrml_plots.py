"""Twin tables and charts live in the scene as table / plot / text nodes and survive a .mrb."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_twin_assembly import M, five_timepoints

from DTTLib.errors import InputError
from DTTLib.mrml.plots import SeriesSpec, add_chart, chart_series, update_series
from DTTLib.mrml.storage import load_scene_mrb, save_scene_mrb
from DTTLib.mrml.tables import rows_from_table_node
from DTTLib.mrml.twin_nodes import find_twin_nodes, load_twin_state, publish_twin, update_whatif_curve
from DTTLib.twin import TherapyEntry, TimepointInfo, TwinInputs, WhatIfControls, build_twin


def _same(a, b):
    return len(a) == len(b) and all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b))


@pytest.fixture(scope="module")
def twin():
    inputs, _ = five_timepoints()
    return build_twin(inputs)


def test_twin_nodes_show_the_right_numbers_and_reload_from_mrb(mrml, tmp_path, twin):
    state, whatif = twin
    nodes = publish_twin(state)
    assert set(nodes) == {"lesions", "recist", "sod", "waterfall", "spider", "growth", "state"}
    sod = {s["name"]: s for s in chart_series(nodes["sod"])}
    observed = [t["sod_mm"] for t in state.recist["timepoints"]]
    assert sod["SOD (target lesions)"]["y"] == pytest.approx(observed)
    nadir = min(observed)
    assert sod["PR threshold: -30 % of baseline SOD"]["y"] == pytest.approx([0.7 * observed[0]] * 2)
    # PD: each visit against the nadir of the visits before it, drawn as steps ending at each visit
    prior_nadirs = [min(observed[:i]) for i in range(1, len(observed))]
    pd = sod["PD threshold: +20 % and +5 mm over the nadir of the earlier visits"]
    assert pd["y"][1::2] == pytest.approx([max(1.2 * n, n + 5) for n in prior_nadirs])
    assert pd["x"][1::2] == [t["day"] for t in state.recist["timepoints"][1:]]
    assert sod["Nadir"]["y"] == pytest.approx([nadir])
    # waterfall: best % change per lesion, largest first, computed here from the raw measurements
    lds = {}
    for m in five_timepoints()[0].measurements:
        lds.setdefault(m.lesion_id, []).append(m.ld_mm)
    best = sorted(((k, min(100 * (v - x[0]) / x[0] for v in x[1:])) for k, x in lds.items()), key=lambda b: -b[1])
    (water,) = chart_series(nodes["waterfall"])
    assert water["labels"] == [b[0] for b in best] and water["y"] == pytest.approx([b[1] for b in best])
    growth = chart_series(nodes["growth"])
    names = [s["name"] for s in growth]
    assert names[0] == "SOD observed" and "SOD fit median" in names and "SOD fit 95 % high" in names
    hyp = [s for s in growth if s["role"].startswith("hypothesis")]
    assert hyp and all(s["name"].startswith("HYPOTHESIS") for s in hyp)
    lesion_rows = rows_from_table_node(nodes["lesions"])
    assert [r["ld_mm"] for r in lesion_rows] == pytest.approx([r["ld_mm"] for r in state.lesion_table])
    assert [r["overall"] for r in rows_from_table_node(nodes["recist"])][1:] == \
        [t["overall"] for t in state.recist["timepoints"][1:]]

    before = {role: chart_series(nodes[role]) for role in ("sod", "waterfall", "spider", "growth")}
    path = save_scene_mrb(tmp_path / "twin.mrb")
    mrml.clear()
    load_scene_mrb(path)
    again = find_twin_nodes(state.patient)
    assert set(again) == set(nodes)
    for role, series in before.items():
        after = chart_series(again[role])
        assert [s["name"] for s in after] == [s["name"] for s in series]
        for a, b in zip(after, series):
            assert _same(a["x"], b["x"]) and _same(a["y"], b["y"]) and a["role"] == b["role"]
    assert again["growth"].GetXAxisTitle() == "day"
    assert load_twin_state(state.patient).to_dict() == state.to_dict()
    assert rows_from_table_node(again["recist"])[1]["sod_mm"] == pytest.approx(observed[1])


def test_live_whatif_updates_in_place(mrml, twin):
    state, whatif = twin
    chart = publish_twin(state)["growth"]
    n_before = chart.GetNumberOfPlotSeriesNodes()
    first = whatif.run_controls(WhatIfControls(shift_weeks=2))
    live = update_whatif_curve(chart, first)
    second = whatif.run_controls(WhatIfControls(effect_multiplier=0.5))
    live2 = update_whatif_curve(chart, second)
    assert [s.GetID() for s in live] == [s.GetID() for s in live2]  # same nodes, new values
    assert chart.GetNumberOfPlotSeriesNodes() == n_before + 3
    values = {s["name"]: s for s in chart_series(chart)}
    assert values["HYPOTHESIS — what-if (live) median"]["y"] == pytest.approx(np.array(second.median, float))
    assert live2[0].GetAttribute("DTT.Label") == second.label


def test_generic_chart_checks_its_input(mrml):
    chart = add_chart("c", [SeriesSpec("s", [0, 1], [2, None])])
    (s,) = chart_series(chart)
    assert s["y"][0] == 2 and math.isnan(s["y"][1])
    update_series(chart.GetNthPlotSeriesNode(0), [0, 1, 2], [1, 2, 3])
    assert chart_series(chart)[0]["y"] == [1, 2, 3]
    with pytest.raises(InputError, match="one y per x"):
        add_chart("d", [SeriesSpec("s", [0, 1], [2])])


def _expected_pd_thresholds(sod):
    """RECIST 1.1 §4.3.1, written out: visit i is PD at SOD >= 1.2 x nadir and >= nadir + 5 mm,
    nadir = the smallest SOD of visits 0..i-1 (baseline included)."""
    out = [None]
    for i in range(1, len(sod)):
        nadir = min(sod[:i])
        out.append(max(1.2 * nadir, nadir + 5.0))
    return out


def test_pd_threshold_uses_the_nadir_of_earlier_visits_not_the_overall_minimum(mrml):
    # one target lesion, so SOD = its LD. Day 84 is PD against the nadir so far (30 mm: 40 >= 36 and
    # >= 35); the smallest SOD of all visits (20 mm) only comes later, at day 126
    days = [0.0, 42, 84, 126, 168]
    sods = [50.0, 30.0, 40.0, 20.0, 26.0]
    inputs = TwinInputs("PNADIR", [TimepointInfo(d) for d in days],
                        [M("L1", i, v, organ="liver") for i, v in enumerate(sods)], [TherapyEntry(0.0)])
    state, _ = build_twin(inputs)
    assert [t["sod_mm"] for t in state.recist["timepoints"]] == sods
    expected = _expected_pd_thresholds(sods)
    assert expected[2] == pytest.approx(36.0) and expected[4] == pytest.approx(25.0)  # 20 %, then 5 mm rule
    assert state.recist["timepoints"][2]["target_response"] == "PD"  # the engine agrees day 84 is PD
    nodes = publish_twin(state)
    pd = {s["name"]: s for s in chart_series(nodes["sod"])}[
        "PD threshold: +20 % and +5 mm over the nadir of the earlier visits"]
    # steps: between visit i-1 and visit i at visit i's threshold
    assert pd["x"] == [days[0], days[1], days[1], days[2], days[2], days[3], days[3], days[4]]
    assert pd["y"] == pytest.approx([e for e in expected[1:] for _ in (0, 1)])
    # at the PD visit the threshold is the one from the earlier nadir, not 1.2 x 20 / 20 + 5 = 25 mm
    at_84 = [y for x, y in zip(pd["x"], pd["y"]) if x == 84.0][0]
    assert at_84 == pytest.approx(36.0) and sods[2] >= at_84
    pr = {s["name"]: s for s in chart_series(nodes["sod"])}["PR threshold: -30 % of baseline SOD"]
    assert pr["y"] == pytest.approx([0.7 * 50.0] * 2)
    rows = rows_from_table_node(nodes["recist"])
    assert math.isnan(rows[0]["pd_threshold_mm"]) or rows[0]["pd_threshold_mm"] is None
    assert [r["pd_threshold_mm"] for r in rows[1:]] == pytest.approx(expected[1:])
