"""Curves ↔ ``vtkMRMLPlotSeriesNode`` / ``vtkMRMLPlotChartNode`` (each series on its own table).

Each series keeps its numbers in a small ``vtkMRMLTableNode`` (columns ``x``, ``y`` and, for bar
charts, ``label``) so the chart saves as .tsv files plus MRML and reloads with the scene. The
node names are the series' names, so a reader of the saved scene sees what each line is
(e.g. "HYPOTHESIS …" for what-if curves). Live updates change the table in place. Values are
rounded to 6 significant digits, the precision Slicer's table storage writes (0.0001 mm at 100 mm).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from DTTLib.errors import InputError
from DTTLib.mrml.runtime import get_scene, import_slicer
from DTTLib.mrml.tables import add_table_node, rows_from_table_node, update_table_node

ROLE = "DTT.PlotRole"


@dataclass
class SeriesSpec:
    """One series: name, x and y (None = missing), and how to draw it."""

    name: str
    x: Sequence[float | None]
    y: Sequence[float | None]
    kind: str = "line"  # line | points | bar
    color: tuple[float, float, float] = (0.2, 0.2, 0.2)
    style: str = "solid"  # solid | dash | dot
    labels: Sequence[str] | None = None  # bar labels
    role: str = ""  # e.g. "observed", "fit", "band80", "hypothesis", "threshold"


def _rows(spec: SeriesSpec) -> list[dict[str, Any]]:
    if len(spec.x) != len(spec.y):
        raise InputError(f"series '{spec.name}' has {len(spec.x)} x and {len(spec.y)} y values",
                         "give one y per x")
    rows = []
    for i, (x, y) in enumerate(zip(spec.x, spec.y)):
        row = {"x": _num(x), "y": _num(y)}
        if spec.labels is not None:
            row["label"] = str(spec.labels[i])
        rows.append(row)
    return rows


def _num(v: Any) -> float:
    """6 significant digits: what a table's .tsv keeps, so saved and live values are identical."""
    return math.nan if v is None else float(f"{float(v):.6g}")


def _style(series: Any, spec: SeriesSpec) -> None:
    slicer = import_slicer()
    cls = slicer.vtkMRMLPlotSeriesNode
    series.SetPlotType({"line": cls.PlotTypeScatter, "points": cls.PlotTypeScatter, "bar": cls.PlotTypeBar}[spec.kind])
    series.SetMarkerStyle(cls.MarkerStyleCircle if spec.kind == "points" else cls.MarkerStyleNone)
    series.SetLineStyle(cls.LineStyleNone if spec.kind == "points" else
                        {"solid": cls.LineStyleSolid, "dash": cls.LineStyleDash, "dot": cls.LineStyleDot}[spec.style])
    series.SetColor(*spec.color)
    if spec.kind == "bar" and spec.labels is not None:
        series.SetLabelColumnName("label")


def add_series(spec: SeriesSpec, scene: Any = None) -> Any:
    """A plot series node and the table node that holds its values."""
    if spec.kind not in ("line", "points", "bar"):
        raise InputError(f"series kind {spec.kind!r} is unknown", "use line, points or bar")
    scene = scene or get_scene()
    columns = ["x", "y"] + (["label"] if spec.labels is not None else [])
    table = add_table_node(_rows(spec), f"{spec.name} (data)", columns, scene=scene)
    table.SetAttribute(ROLE, "series data")
    series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", spec.name)
    series.SetAndObserveTableNodeID(table.GetID())
    series.SetXColumnName("x")
    series.SetYColumnName("y")
    series.SetAttribute(ROLE, spec.role)
    _style(series, spec)
    return series


def add_chart(name: str, specs: Sequence[SeriesSpec], title: str = "", x_title: str = "day",
              y_title: str = "", scene: Any = None) -> Any:
    """A chart node showing the given series, in order."""
    scene = scene or get_scene()
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
    chart.SetTitle(title or name)
    chart.SetXAxisTitle(x_title)
    chart.SetYAxisTitle(y_title)
    chart.SetLegendVisibility(True)
    for spec in specs:
        chart.AddAndObservePlotSeriesNodeID(add_series(spec, scene).GetID())
    return chart


def update_series(series: Any, x: Sequence[float | None], y: Sequence[float | None]) -> None:
    """Replace a series' values in place (live what-if)."""
    table = series.GetTableNode()
    labels = None
    if table.GetTable().GetColumnByName("label") is not None:
        labels = [r["label"] for r in rows_from_table_node(table)]
    spec = SeriesSpec(series.GetName(), list(x), list(y), labels=labels)
    update_table_node(table, _rows(spec), ["x", "y"] + (["label"] if labels is not None else []))
    series.Modified()


def chart_series_nodes(chart: Any) -> list[Any]:
    return [chart.GetNthPlotSeriesNode(i) for i in range(chart.GetNumberOfPlotSeriesNodes())]


def chart_series(chart: Any) -> list[dict[str, Any]]:
    """Each series of a chart as {name, role, x, y[, labels]} (NaN for missing values)."""
    out = []
    for s in chart_series_nodes(chart):
        rows = rows_from_table_node(s.GetTableNode())
        d = {"name": s.GetName(), "role": s.GetAttribute(ROLE) or "",
             "x": [r["x"] for r in rows], "y": [r["y"] for r in rows]}
        if rows and "label" in rows[0]:
            d["labels"] = [r["label"] for r in rows]
        out.append(d)
    return out


def remove_chart(chart: Any, scene: Any = None) -> None:
    """Remove a chart, its series and their tables."""
    scene = scene or get_scene()
    for s in chart_series_nodes(chart):
        table = s.GetTableNode()
        scene.RemoveNode(s)
        if table is not None:
            scene.RemoveNode(table)
    scene.RemoveNode(chart)
