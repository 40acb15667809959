"""The twin in the scene: lesion and RECIST tables, four charts and the state as a text node.

All of them are table / plot / text nodes, so they save in a .mrb and reload; the state's JSON
text node lets the module (or the narrative) rebuild the twin after a reload without refitting.
Re-publishing replaces the previous nodes of the same patient (found by attribute).
"""

from __future__ import annotations

from typing import Any

from DTTLib.mrml.plots import add_chart, chart_series_nodes, remove_chart, update_series
from DTTLib.mrml.runtime import get_scene
from DTTLib.mrml.tables import add_table_node
from DTTLib.mrml.texts import add_text_node
from DTTLib.response.display import further_increase_text
from DTTLib.response.target_response import pd_threshold_mm
from DTTLib.twin import charts
from DTTLib.twin.records import Curve, TwinState

PATIENT = "DTT.TwinPatient"
ROLE = "DTT.TwinRole"
LESION_COLUMNS = ["track", "lesion", "timepoint", "day", "ld_mm", "ld_note", "sa_mm", "volume_mm3", "organ",
                  "nodal", "role", "source"]
RECIST_COLUMNS = ["day", "sod_mm", "change_from_baseline_pct", "nadir_mm", "change_from_nadir_pct",
                  "pd_threshold_mm", "target_response", "non_target", "non_target_further_increase", "new_lesions",
                  "overall", "overall_reason"]


def recist_rows(state: TwinState) -> list[dict[str, Any]]:
    """The RECIST table's rows. ``non_target_further_increase`` is the reader's iRECIST call the engine
    was given ("yes" / "no" / "not assessed" where a PD non-target needs it, as ``dtt recist`` words it);
    empty under RECIST 1.1, where no such call exists."""
    irecist = (state.recist or {}).get("criteria") == "iRECIST"
    rows = []
    for t in (state.recist or {}).get("timepoints", []):
        row = {c: t.get(c) for c in RECIST_COLUMNS}
        row["day"] = float(t["day"])
        # nadir_mm is the nadir of the earlier visits (baseline included), the one this visit is judged against
        row["pd_threshold_mm"] = pd_threshold_mm(t["nadir_mm"]) if t.get("nadir_mm") is not None else None
        row["target_response"] = t["target_response"] or ("baseline" if t["is_baseline"] else "")
        row["overall"] = "baseline" if t["is_baseline"] else (t["overall"] or "")
        row["non_target_further_increase"] = (further_increase_text(t) or "") if irecist else ""
        row["new_lesions"] = "yes" if t["new_lesions"] else "no"
        row["overall_reason"] = t.get("overall_reason") or ""
        rows.append(row)
    return rows


def _tag(node: Any, patient: str, role: str) -> Any:
    node.SetAttribute(PATIENT, patient)
    node.SetAttribute(ROLE, role)
    return node


def find_twin_nodes(patient: str, scene: Any = None) -> dict[str, Any]:
    scene = scene or get_scene()
    out = {}
    for cls in ("vtkMRMLTableNode", "vtkMRMLPlotChartNode", "vtkMRMLTextNode"):
        for i in range(scene.GetNumberOfNodesByClass(cls)):
            n = scene.GetNthNodeByClass(i, cls)
            if n.GetAttribute(PATIENT) == patient and n.GetAttribute(ROLE):
                out[n.GetAttribute(ROLE)] = n
    return out


def remove_twin_nodes(patient: str, scene: Any = None) -> None:
    scene = scene or get_scene()
    for role, n in find_twin_nodes(patient, scene).items():
        if n.IsA("vtkMRMLPlotChartNode"):
            remove_chart(n, scene)
        else:
            scene.RemoveNode(n)


def publish_twin(state: TwinState, scene: Any = None) -> dict[str, Any]:
    """Create (or replace) the twin's nodes; returns them by role."""
    scene = scene or get_scene()
    remove_twin_nodes(state.patient, scene)
    p = state.patient
    nodes = {"lesions": _tag(add_table_node(state.lesion_table, f"{p} lesions", LESION_COLUMNS, scene), p, "lesions")}
    if state.recist:
        nodes["recist"] = _tag(add_table_node(recist_rows(state), f"{p} RECIST", RECIST_COLUMNS, scene), p, "recist")
    for role, title, specs, y in (
            ("sod", "SOD timeline", charts.sod_timeline(state), "SOD (mm)"),
            ("waterfall", "Waterfall: best change per lesion", charts.waterfall(state), "% change from baseline"),
            ("spider", "Spider: change per lesion", charts.spider(state), "% change from baseline"),
            ("growth", "Growth: fitted ensemble and what-if hypotheses", charts.growth(state), "SOD (mm)")):
        if specs:
            nodes[role] = _tag(add_chart(f"{p} {title}", specs, title, "lesion" if role == "waterfall" else "day",
                                         y, scene), p, role)
    nodes["state"] = _tag(add_text_node(state.to_json(), f"{p} twin state", scene), p, "state")
    return nodes


def update_whatif_curve(chart: Any, curve: Curve, scene: Any = None) -> list[Any]:
    """Live update: replace the values of the chart's 'live' hypothesis series, creating them once."""
    from DTTLib.mrml.plots import add_series  # noqa: PLC0415

    scene = scene or get_scene()
    specs = charts.curve_specs(Curve("what-if (live)", "hypothesis", curve.label, curve.t, curve.median,
                                     curve.lo80, curve.hi80, curve.lo95, curve.hi95), charts.RED, bands95=False)
    live = [s for s in chart_series_nodes(chart) if s.GetAttribute("DTT.Live") == "1"]
    if len(live) != len(specs):
        for s in live:
            chart.RemovePlotSeriesNodeID(s.GetID())
        live = []
        for spec in specs:
            s = add_series(spec, scene)
            s.SetAttribute("DTT.Live", "1")
            chart.AddAndObservePlotSeriesNodeID(s.GetID())
            live.append(s)
    for s, spec in zip(live, specs):
        update_series(s, spec.x, spec.y)
    live[0].SetAttribute("DTT.Label", curve.label)
    return live


def load_twin_state(patient: str, scene: Any = None) -> TwinState | None:
    node = find_twin_nodes(patient, scene).get("state")
    return TwinState.from_json(node.GetText()) if node is not None else None
