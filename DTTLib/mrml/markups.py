"""Box prompts ↔ ``vtkMRMLMarkupsROINode``; RECIST diameters ↔ ``vtkMRMLMarkupsLineNode``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from DTTLib.errors import InputError
from DTTLib.mrml.runtime import get_scene


@dataclass(frozen=True)
class RASBox:
    """An axis-aligned box in RAS millimetres (Slicer ROIs are boxes in their own frame)."""

    center: tuple[float, float, float]
    size: tuple[float, float, float]

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        center, half = np.asarray(self.center), np.asarray(self.size) / 2
        return center - half, center + half


def add_roi_node(box: RASBox, name: str = "ROI", scene: Any = None) -> Any:
    if np.any(np.asarray(box.size) < 0) or not np.all(np.isfinite(box.center + box.size)):
        raise InputError(f"ROI '{name}' has invalid size {box.size} or centre {box.center}",
                         "sizes must be non-negative finite millimetres")
    scene = scene or get_scene()
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", name)
    node.SetCenter(*box.center)
    node.SetSize(*box.size)
    return node


def box_from_roi_node(node: Any) -> RASBox:
    """The ROI as an axis-aligned RAS box; a rotated ROI is refused rather than guessed."""
    if node is None or not node.IsA("vtkMRMLMarkupsROINode"):
        raise InputError("expected a markups ROI node", "draw a box with the ROI tool")
    if node.GetNumberOfControlPoints() == 0 and tuple(node.GetSize()) == (0.0, 0.0, 0.0):
        raise InputError(f"ROI '{node.GetName()}' has not been placed", "place the ROI first")
    to_world = node.GetObjectToWorldMatrix()
    rotation = np.array([[to_world.GetElement(r, c) for c in range(3)] for r in range(3)])
    if not np.allclose(rotation, np.eye(3), atol=1e-6):
        raise InputError(f"ROI '{node.GetName()}' is rotated",
                         "reset the ROI's rotation so its box is aligned with the RAS axes")
    center = [0.0, 0.0, 0.0]
    node.GetCenterWorld(center)
    return RASBox(tuple(center), tuple(node.GetSize()))


def add_line_node(start_ras: tuple[float, float, float], end_ras: tuple[float, float, float],
                  name: str = "Line", scene: Any = None) -> Any:
    """A two-point line (e.g. a RECIST longest diameter) in RAS millimetres."""
    scene = scene or get_scene()
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", name)
    node.AddControlPoint(*[float(x) for x in start_ras])
    node.AddControlPoint(*[float(x) for x in end_ras])
    return node


def line_endpoints(node: Any) -> tuple[np.ndarray, np.ndarray]:
    if node is None or not node.IsA("vtkMRMLMarkupsLineNode") or node.GetNumberOfControlPoints() != 2:
        raise InputError("expected a line markup with two points", "place both ends of the line")
    start, end = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
    node.GetNthControlPointPositionWorld(0, start)
    node.GetNthControlPointPositionWorld(1, end)
    return np.array(start), np.array(end)
