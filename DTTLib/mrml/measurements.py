"""A lesion's RECIST measurement in the scene: line markups and a row of the measurements table.

One table (``MEASUREMENTS_TABLE``) holds one row per lesion and timepoint, with typed
columns, so the *Digital Twin Tumor* module, the RECIST engine and a saved ``.tsv`` all read
the same numbers. Measuring again replaces that lesion/timepoint's row and moves its lines
instead of adding duplicates.

A lesion in several pieces (RECIST fragments, see ``DTTLib.measurement.diameters``) gets one
LD line per piece, each as long as that piece's LD: ``"<lesion> @ <tp> LD"`` on the largest
piece, ``"... LD 2"``, ``"... LD 3"`` … on the others, largest first; the table's
``longest_diameter_mm`` is their sum. The SA line is the largest piece's. Lines of pieces that
are gone when the lesion is measured again (fewer pieces) are removed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from DTTLib.errors import InputError
from DTTLib.measurement.diameters import LesionMeasurement
from DTTLib.mrml.lesions import lesion_segment_name
from DTTLib.mrml.markups import add_line_node
from DTTLib.mrml.runtime import get_scene
from DTTLib.mrml.tables import rows_from_table_node, update_table_node

MEASUREMENTS_TABLE = "DTT measurements"

#: column → type; the order is the table's column order
MEASUREMENT_COLUMNS: dict[str, type] = {
    "lesion": str,
    "timepoint": str,
    "longest_diameter_mm": float,
    "short_axis_mm": float,
    "volume_mm3": float,
    "centroid_r": float,
    "centroid_a": float,
    "centroid_s": float,
    "slice_index": int,
    "plane": str,
    "source": str,
    "confidence": float,
}


@dataclass(frozen=True)
class StoredMeasurement:
    long_axis_node: Any
    short_axis_node: Any | None
    table_node: Any
    row: dict[str, Any]
    #: every LD line, largest piece first (``long_axis_node`` is the first); one unless fragmented
    long_axis_nodes: tuple[Any, ...] = ()


def measurement_row(measurement: LesionMeasurement, lesion_id: str, timepoint: str,
                    source: str = "", confidence: float | None = None) -> dict[str, Any]:
    """The table row of one measurement (``confidence`` NaN when the source gives none)."""
    lesion_segment_name(lesion_id, timepoint)  # same validation as the segment names
    r, a, s = measurement.centroid_ras
    return {
        "lesion": lesion_id.strip(), "timepoint": timepoint.strip(),
        "longest_diameter_mm": float(measurement.longest_diameter_mm),
        "short_axis_mm": float(measurement.short_axis_mm),
        "volume_mm3": float(measurement.volume_mm3),
        "centroid_r": float(r), "centroid_a": float(a), "centroid_s": float(s),
        "slice_index": int(measurement.slice_index),
        "plane": measurement.plane,
        "source": source,
        "confidence": math.nan if confidence is None else float(confidence),
    }


def store_measurement(measurement: LesionMeasurement, lesion_id: str, timepoint: str,
                      source: str = "", confidence: float | None = None,
                      table_node: Any = None, short_axis: bool = True,
                      scene: Any = None) -> StoredMeasurement:
    """Place the RECIST line(s) and write (or replace) the lesion/timepoint row.

    One LD line per piece of a fragmented lesion (``"<name> LD"``, ``"<name> LD 2"`` …); LD
    lines left from an earlier measurement with more pieces are removed."""
    scene = scene or get_scene()
    row = measurement_row(measurement, lesion_id, timepoint, source, confidence)
    name = lesion_segment_name(lesion_id, timepoint)
    axes = [p.long_axis_ras for p in measurement.pieces[1:]]
    long_nodes = [recist_line(measurement.long_axis_ras, f"{name} LD", scene)]
    long_nodes += [recist_line(ends, fragment_line_name(name, n), scene) for n, ends in enumerate(axes, 2)]
    _remove_fragment_lines(scene, name, keep=len(long_nodes))
    short_node = recist_line(measurement.short_axis_ras, f"{name} SA", scene) if short_axis else None
    table_node = table_node or measurements_table(scene)
    upsert_measurement_row(table_node, row)
    return StoredMeasurement(long_nodes[0], short_node, table_node, row, tuple(long_nodes))


def fragment_line_name(segment_name: str, number: int) -> str:
    """The LD line of a fragmented lesion's ``number``-th piece (2, 3 …; the largest is ``"… LD"``)."""
    return f"{segment_name} LD {number}"


def _remove_fragment_lines(scene: Any, segment_name: str, keep: int) -> None:
    """Remove ``"<segment_name> LD n"`` lines with n > ``keep`` (pieces no longer there)."""
    pattern = re.compile(re.escape(segment_name) + r" LD (\d+)")
    nodes = scene.GetNodesByClass("vtkMRMLMarkupsLineNode")
    stale = []
    for index in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(index)
        found = pattern.fullmatch(node.GetName() or "")
        if found and int(found.group(1)) > keep:
            stale.append(node)
    for node in stale:
        scene.RemoveNode(node)


def recist_line(endpoints_ras: tuple[Any, Any], name: str, scene: Any = None) -> Any:
    """A locked line markup with its length shown; an existing line of that name is moved."""
    scene = scene or get_scene()
    node = _node_named(scene, "vtkMRMLMarkupsLineNode", name)
    start, end = endpoints_ras
    if node is None:
        node = add_line_node(start, end, name, scene)
    else:
        node.SetNthControlPointPosition(0, *[float(x) for x in start])
        node.SetNthControlPointPosition(1, *[float(x) for x in end])
    node.SetLocked(True)
    length = node.GetMeasurement("length")
    if length is not None:
        length.SetEnabled(True)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    node.GetDisplayNode().SetPropertiesLabelVisibility(True)
    return node


def measurements_table(scene: Any = None) -> Any:
    """The scene's measurements table, created with typed (empty) columns if missing."""
    scene = scene or get_scene()
    node = _node_named(scene, "vtkMRMLTableNode", MEASUREMENTS_TABLE)
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLTableNode", MEASUREMENTS_TABLE)
        _write_rows(node, [])
    return node


def upsert_measurement_row(table_node: Any, row: dict[str, Any]) -> None:
    """Replace the row with the same lesion and timepoint, or append it."""
    missing = [c for c in MEASUREMENT_COLUMNS if c not in row]
    if missing:
        raise InputError(f"measurement row lacks {missing}", "build rows with measurement_row()")
    rows = measurements_from_table(table_node)
    key = (row["lesion"], row["timepoint"])
    for index, existing in enumerate(rows):
        if (existing["lesion"], existing["timepoint"]) == key:
            rows[index] = dict(row)
            break
    else:
        rows.append(dict(row))
    _write_rows(table_node, rows)


def measurements_from_table(table_node: Any) -> list[dict[str, Any]]:
    """Typed rows back from the table (an empty table has typed columns and no rows)."""
    if table_node.GetTable().GetNumberOfRows() == 0:
        return []
    return rows_from_table_node(table_node)


def _write_rows(table_node: Any, rows: list[dict[str, Any]]) -> None:
    if rows:
        update_table_node(table_node, rows, list(MEASUREMENT_COLUMNS))
        return
    import vtk  # noqa: PLC0415

    arrays = {str: vtk.vtkStringArray, float: vtk.vtkDoubleArray, int: vtk.vtkIntArray}
    table = vtk.vtkTable()
    for column, kind in MEASUREMENT_COLUMNS.items():
        array = arrays[kind]()
        array.SetName(column)
        table.AddColumn(array)
    table_node.SetAndObserveTable(table)
    for column in MEASUREMENT_COLUMNS:
        table_node.SetColumnProperty(column, "type", table.GetColumnByName(column).GetDataTypeAsString())


def _node_named(scene: Any, class_name: str, name: str) -> Any:
    nodes = scene.GetNodesByClassByName(class_name, name)
    node = nodes.GetItemAsObject(0) if nodes.GetNumberOfItems() else None
    return node
