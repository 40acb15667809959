"""Rows of records ↔ ``vtkMRMLTableNode`` with typed columns.

Columns keep their type (text, integer, real) so a saved ``.tsv`` + ``.schema.tsv`` reloads
as the same numbers, not as strings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from DTTLib.errors import InputError
from DTTLib.mrml.runtime import get_scene


def add_table_node(rows: Sequence[Mapping[str, Any]], name: str = "Table",
                   columns: Sequence[str] | None = None, scene: Any = None) -> Any:
    """New table node from a list of dicts; column order from ``columns`` or first row."""
    scene = scene or get_scene()
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    update_table_node(node, rows, columns)
    return node


def update_table_node(node: Any, rows: Sequence[Mapping[str, Any]],
                      columns: Sequence[str] | None = None) -> None:
    import vtk  # noqa: PLC0415

    columns = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    if not columns:
        raise InputError(f"table '{node.GetName()}' has no columns", "pass at least one column")
    table = vtk.vtkTable()
    for column in columns:
        values = [row.get(column) for row in rows]
        array = _vtk_array_for(values, column)
        array.SetName(column)
        for value in values:
            _insert(array, value)
        table.AddColumn(array)
    with _disabled_modified(node):
        node.SetAndObserveTable(table)
        for column in columns:
            node.SetColumnProperty(column, "type", table.GetColumnByName(column).GetDataTypeAsString())


def rows_from_table_node(node: Any) -> list[dict[str, Any]]:
    """Typed rows back from a table node (missing reals come back as NaN)."""
    table = node.GetTable()
    names = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    rows = []
    for r in range(table.GetNumberOfRows()):
        row = {}
        for c, name in enumerate(names):
            array = table.GetColumn(c)
            if array.IsA("vtkStringArray"):
                row[name] = array.GetValue(r)
            elif array.IsA("vtkBitArray"):
                row[name] = bool(array.GetValue(r))
            elif array.IsA("vtkDoubleArray") or array.IsA("vtkFloatArray"):
                row[name] = float(array.GetValue(r))
            else:
                row[name] = int(array.GetValue(r))
        rows.append(row)
    return rows


def _vtk_array_for(values: list[Any], column: str) -> Any:
    import vtk  # noqa: PLC0415

    present = [v for v in values if v is not None]
    if all(isinstance(v, bool) for v in present) and present and len(present) == len(values):
        return vtk.vtkBitArray()
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present) and present \
            and len(present) == len(values):
        if any(abs(v) > 2**31 - 1 for v in present):
            raise InputError(f"column '{column}' holds integers beyond 32 bits",
                             "store such identifiers as text")
        return vtk.vtkIntArray()
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present) and present:
        return vtk.vtkDoubleArray()
    return vtk.vtkStringArray()


def _insert(array: Any, value: Any) -> None:
    if array.IsA("vtkStringArray"):
        array.InsertNextValue("" if value is None else str(value))
    elif array.IsA("vtkDoubleArray"):
        array.InsertNextValue(math.nan if value is None else float(value))
    elif array.IsA("vtkBitArray"):
        array.InsertNextValue(1 if value else 0)
    else:
        array.InsertNextValue(int(value))


class _disabled_modified:
    def __init__(self, node: Any) -> None:
        self.node = node

    def __enter__(self) -> None:
        self.was_disabled = self.node.StartModify()

    def __exit__(self, *exc: object) -> None:
        self.node.EndModify(self.was_disabled)
