"""The Segment Editor's masking settings, applied to a model's result before it is stored.

Users set *where* edits may go (editable area: everywhere, inside/outside all or visible
segments, inside one segment; optionally only within an intensity range of the scan) and
*what happens to other segments* (overwrite all, visible, or none) in the Segment Editor, and
expect every tool that writes segments to obey them. The editable area is computed by Slicer
itself (``vtkMRMLSegmentationNode.GenerateEditMask``, the function the Segment Editor's effects
use), so it matches the editor exactly; overwriting removes the new lesion's voxels from the
other segments concerned, as the editor does, and every voxel taken or withheld is counted so
the module can say so — nothing is overwritten silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from DTTLib.mrml.runtime import import_slicer

EVERYWHERE = "EditAllowedEverywhere"
OVERWRITE_MODES = {"OverwriteAllSegments": "all", "OverwriteVisibleSegments": "visible", "OverwriteNone": "none"}
#: the Segment Editor's parameter node is a scene singleton with this tag
SEGMENT_EDITOR_TAG = "SegmentEditor"


@dataclass(frozen=True)
class Masking:
    """Where a result may be written and which other segments give up their voxels to it."""

    editable: str = EVERYWHERE          # Slicer's mask-mode name (vtkMRMLSegmentationNode.EditAllowed*)
    mask_segment_id: str = ""           # for EditAllowedInsideSingleSegment
    overwrite: str = "none"             # "none" | "all" | "visible"
    intensity_range: tuple[float, float] | None = None
    source: str = "this module"         # "Segment Editor" when read from its settings

    @property
    def restricts_area(self) -> bool:
        return self.editable != EVERYWHERE or self.intensity_range is not None

    def describe(self) -> str:
        area = {EVERYWHERE: "everywhere"}.get(self.editable, self.editable.replace("EditAllowed", "").lower())
        text = f"{self.source}: editable {area}, overwrite {self.overwrite}"
        if self.intensity_range is not None:
            text += f", intensity {self.intensity_range[0]:g}…{self.intensity_range[1]:g}"
        return text


#: The safe default when the Segment Editor's settings are not used: other segments keep theirs.
LEAVE_OTHERS = Masking()
TAKE_FROM_ALL = Masking(overwrite="all")


def segment_editor_node(scene: Any) -> Any:
    """The Segment Editor's parameter node (its singleton, else any), or None before it was opened."""
    node = scene.GetSingletonNode(SEGMENT_EDITOR_TAG, "vtkMRMLSegmentEditorNode")
    return node if node is not None else scene.GetFirstNodeByClass("vtkMRMLSegmentEditorNode")


def masking_from_editor(node: Any) -> Masking:
    """The masking a Segment Editor parameter node holds."""
    slicer = import_slicer()
    editable = slicer.vtkMRMLSegmentationNode.ConvertMaskModeToString(node.GetMaskMode())
    overwrite = slicer.vtkMRMLSegmentEditorNode.ConvertOverwriteModeToString(node.GetOverwriteMode())
    intensity = None
    if node.GetSourceVolumeIntensityMask():
        low, high = node.GetSourceVolumeIntensityMaskRange()
        intensity = (float(low), float(high))
    return Masking(editable, node.GetMaskSegmentID() or "", OVERWRITE_MODES.get(overwrite, "none"), intensity,
                   "Segment Editor")


def editable_area(segmentation_node: Any, volume_node: Any, masking: Masking, segment_id: str = "") -> np.ndarray:
    """bool (k, j, i) on the volume's grid: where ``masking`` lets segment ``segment_id`` be written
    (the segment itself never counts as "another segment")."""
    slicer = import_slicer()
    dims = tuple(reversed(volume_node.GetImageData().GetDimensions()))
    if not masking.restricts_area:
        return np.ones(dims, dtype=bool)
    from vtk.util.numpy_support import vtk_to_numpy  # noqa: PLC0415

    reference = slicer.vtkSlicerSegmentationsModuleLogic.CreateOrientedImageDataFromVolumeNode(volume_node)
    mode = slicer.vtkMRMLSegmentationNode.ConvertMaskModeFromString(masking.editable)
    blocked = slicer.vtkOrientedImageData()
    intensity = list(masking.intensity_range) if masking.intensity_range is not None else None
    ok = segmentation_node.GenerateEditMask(blocked, mode, reference, segment_id or "", masking.mask_segment_id,
                                            reference if intensity else None, intensity,
                                            segmentation_node.GetDisplayNode())
    if not ok:
        from DTTLib.errors import InputError  # noqa: PLC0415

        raise InputError(f"the editable area '{masking.editable}' could not be computed",
                         "pick the masking segment in the Segment Editor, or set the editable area to everywhere")
    blocked_array = vtk_to_numpy(blocked.GetPointData().GetScalars()).reshape(dims)
    return blocked_array == 0  # GenerateEditMask marks the voxels editing may NOT touch


@dataclass(frozen=True)
class MaskedWrite:
    """What storing a result under a masking does: the voxels it writes, and the bookkeeping."""

    mask: np.ndarray                       # bool (k, j, i): the voxels the segment gets
    outside_editable: int                  # result voxels outside the editable area, dropped
    withheld: int                          # result voxels other segments keep (overwrite none/visible)
    takes: dict[str, np.ndarray]           # other segment id -> its voxels the new segment takes


def plan_write(result: np.ndarray, others: dict[str, np.ndarray], visible: set[str], masking: Masking,
               editable: np.ndarray | None = None) -> MaskedWrite:
    """Pure numpy: apply the editable area, then the overwrite rule against ``others`` (segment id
    → bool mask). Overwrite "none" leaves every other segment's voxels to it; "all" takes them;
    "visible" takes them from visible segments only and, like the Segment Editor, lets the result
    overlap hidden ones."""
    mask = np.asarray(result) > 0
    outside = 0
    if editable is not None:
        outside = int((mask & ~editable).sum())
        mask = mask & editable
    takes: dict[str, np.ndarray] = {}
    withheld = 0
    if masking.overwrite == "none":
        owned = np.zeros_like(mask)
        for other in others.values():
            owned |= other
        withheld = int((mask & owned).sum())
        mask = mask & ~owned
    else:
        for segment_id, other in others.items():
            if masking.overwrite == "all" or segment_id in visible:
                overlap = mask & other
                if overlap.any():
                    takes[segment_id] = overlap
    return MaskedWrite(mask, outside, withheld, takes)
