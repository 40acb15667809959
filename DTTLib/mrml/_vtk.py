"""Small numpy ↔ VTK helpers shared by the converters."""

from __future__ import annotations

from typing import Any

import numpy as np


def matrix4x4_from_array(array: np.ndarray) -> Any:
    import vtk  # noqa: PLC0415

    matrix = vtk.vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            matrix.SetElement(row, column, float(array[row, column]))
    return matrix


def array_from_matrix4x4(matrix: Any) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
