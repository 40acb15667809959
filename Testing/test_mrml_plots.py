"""Twin tables and charts live in the scene as table / plot / text nodes and survive a .mrb."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_twin_assembly import five_timepoints

from DTTLib.errors import InputError
from DTTLib.mrml.plots import SeriesSpec, add_chart, chart_series, update_series
from DTTLib.mrml.storage import load_scene_mrb, save_scene_mrb
from DTTLib.mrml.tables import rows_from_table_node
from DTTLib.mrml.twin_nodes import find_twin_nodes, load_twin_state, publish_twin, update_whatif_curve
from DTTLib.twin import WhatIfControls, build_twin


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
    assert sod["PD threshold: +20 % and +5 mm over nadir"]["y"] == pytest.approx([max(1.2 * nadir, nadir + 5)] * 2)
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
