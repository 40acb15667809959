"""The Digital Twin Tumor RECIST table shows the reader's iRECIST non-target further-increase call.

Expectations come from the inputs, not the code: iRECIST asks "did the non-target disease increase
further since iUPD?" only at a follow-up whose non-target status is PD (Seymour et al. 2017), so the
column reads the reader's answer there ("yes" / "no"), "not assessed" where a PD visit has none,
and stays empty at the baseline, at non-PD visits without a call, and under RECIST 1.1.
"""

from __future__ import annotations

from DTTLib.mrml.storage import load_scene_mrb, save_scene_mrb
from DTTLib.mrml.tables import rows_from_table_node
from DTTLib.mrml.twin_nodes import find_twin_nodes, publish_twin
from DTTLib.twin import LesionMeasurement, TherapyEntry, TimepointInfo, TwinInputs, build_twin

COLUMN = "non_target_further_increase"
#: (day, non-target status, the reader's further-increase call) of one unchanged 20 mm liver lesion
VISITS = [(0, "nonCR_nonPD", None), (56, "nonCR_nonPD", None), (112, "PD", None), (161, "PD", False),
          (210, "PD", True)]
SHOWN = ["", "", "not assessed", "no", "yes"]


def _twin(immunotherapy: bool):
    timepoints = [TimepointInfo(day, status, new_lesions=False if day else None, non_target_further_increase=call)
                  for day, status, call in VISITS]
    measurements = [LesionMeasurement("L1", i, 20.0, organ="liver") for i in range(len(VISITS))]
    state, _ = build_twin(TwinInputs(f"FI-{int(immunotherapy)}", timepoints, measurements, [TherapyEntry(0)],
                                     immunotherapy=immunotherapy))
    return state


def test_irecist_table_has_the_readers_further_increase_call(mrml, tmp_path):
    state = _twin(immunotherapy=True)
    assert state.criteria == "iRECIST"
    # the engine got the calls as given: "no" keeps iUPD, "yes" confirms progression (iCPD)
    assert [t["overall"] for t in state.recist["timepoints"][1:]] == ["iSD", "iUPD", "iUPD", "iCPD"]
    node = publish_twin(state)["recist"]
    columns = [node.GetColumnName(i) for i in range(node.GetNumberOfColumns())]
    assert columns.index(COLUMN) == columns.index("non_target") + 1
    rows = rows_from_table_node(node)
    assert [r["day"] for r in rows] == [float(d) for d, _, _ in VISITS]
    assert [r[COLUMN] for r in rows] == SHOWN
    assert [r["non_target"] for r in rows] == [s for _, s, _ in VISITS]
    # the column is text and survives a saved scene
    path = save_scene_mrb(tmp_path / "fi.mrb")
    mrml.clear()
    load_scene_mrb(path)
    again = find_twin_nodes(state.patient)["recist"]
    assert [r[COLUMN] for r in rows_from_table_node(again)] == SHOWN


def test_recist_11_table_leaves_the_column_empty(mrml):
    state = _twin(immunotherapy=False)
    assert state.criteria == "RECIST 1.1"
    rows = rows_from_table_node(publish_twin(state)["recist"])
    assert [r[COLUMN] for r in rows] == [""] * len(VISITS)
    assert [r["overall"] for r in rows][2] == "PD"

