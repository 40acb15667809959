"""Binary masks ↔ segments of a ``vtkMRMLSegmentationNode``.

Masks are always exchanged on the voxel grid of a reference volume: exporting without a
reference geometry crops to the segment's extent, which silently shifts every index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from DTTLib.errors import GeometryError, InputError
from DTTLib.mrml.runtime import get_scene, import_slicer

#: DICOM-style terminology for a tumour segment (SNOMED CT "Neoplasm" in "Morphologically
#: altered structure"), serialised the way Slicer's Terminologies module stores it.
LESION_TERMINOLOGY = (
    "Segmentation category and type - 3D Slicer General Anatomy list"
    "~SCT^49755003^Morphologically Altered Structure"
    "~SCT^108369006^Neoplasm~^^~Anatomic codes - DICOM master list~^^~^^"
)


@dataclass(frozen=True)
class SegmentInfo:
    segment_id: str
    name: str
    color: tuple[float, float, float]
    terminology: str


def add_segmentation_node(reference_volume_node: Any, name: str = "Segmentation",
                          scene: Any = None) -> Any:
    """New segmentation whose geometry (grid, spacing, directions) is the reference volume's."""
    scene = scene or get_scene()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
    return node


def set_segment_mask(segmentation_node: Any, mask: np.ndarray, segment_name: str,
                     reference_volume_node: Any, color: tuple[float, float, float] | None = None,
                     terminology: str | None = LESION_TERMINOLOGY, allow_empty: bool = False) -> str:
    """Create or replace the segment ``segment_name`` from a (k, j, i) mask; returns its id.
    ``terminology`` None keeps the segment's own (e.g. when only its voxels change)."""
    slicer = import_slicer()
    mask = np.asarray(mask)
    expected = tuple(reversed(reference_volume_node.GetImageData().GetDimensions()))
    if mask.shape != expected:
        raise GeometryError(
            f"mask shape {mask.shape} does not match the reference volume "
            f"'{reference_volume_node.GetName()}' {expected} (k, j, i)",
            "resample the mask onto the reference volume's grid first")
    if not np.all(np.isfinite(mask)):
        raise InputError(f"mask for segment '{segment_name}' contains NaN or infinite values",
                         "pass a binary (0/1) mask")
    binary = (mask > 0).astype(np.uint8)
    if not allow_empty and not binary.any():
        raise InputError(f"mask for segment '{segment_name}' is empty",
                         "nothing was segmented; check the box or prompt (pass allow_empty=True "
                         "to record a lesion that has disappeared)")
    segmentation = segmentation_node.GetSegmentation()
    segment_id = segmentation.GetSegmentIdBySegmentName(segment_name)
    existed = bool(segment_id)
    if not existed:
        segment_id = segmentation.AddEmptySegment("", segment_name)
    segment = segmentation.GetSegment(segment_id)
    if color is not None:
        segment.SetColor(*color)
    if terminology is not None:
        segment.SetTag("TerminologyEntry", terminology)
    if binary.any() or existed:  # an empty mask must also clear a segment that had voxels
        slicer.util.updateSegmentBinaryLabelmapFromArray(
            binary, segmentation_node, segment_id, reference_volume_node)
    return segment_id


def get_segment_mask(segmentation_node: Any, segment_id_or_name: str,
                     reference_volume_node: Any) -> np.ndarray:
    """The segment as a uint8 (k, j, i) array on the reference volume's grid."""
    slicer = import_slicer()
    segment_id = resolve_segment_id(segmentation_node, segment_id_or_name)
    shape = tuple(reversed(reference_volume_node.GetImageData().GetDimensions()))
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    labelmap = segment.GetRepresentation(
        slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    if labelmap is None or _is_empty(labelmap):
        return np.zeros(shape, dtype=np.uint8)
    return _exported_mask(slicer, segmentation_node, segment_id, reference_volume_node)


def segment_masks_in_region(segmentation_node: Any, reference_volume_node: Any,
                            region: tuple[slice, slice, slice], segment_ids: list[str]) -> dict[str, np.ndarray]:
    """Each segment's voxels inside ``region`` ((k, j, i) slices of the reference grid), as bool.

    Why: storing a lesion must know which voxels other segments hold where the lesion is, and a
    segmentation may have a hundred segments on a large CT (e.g. TotalSegmentator's); exporting
    each one onto the whole grid took seconds of frozen GUI. A labelmap that lies on the reference
    grid (the usual case) is read in place, only inside ``region``; any other (resampled, under a
    transform) is exported as before and cut."""
    import vtk  # noqa: PLC0415
    from vtk.util.numpy_support import vtk_to_numpy  # noqa: PLC0415

    slicer = import_slicer()
    shape = tuple(sl.stop - sl.start for sl in region)
    reference = vtk.vtkMatrix4x4()
    reference_volume_node.GetIJKToRASMatrix(reference)
    reference_matrix = np.array([[reference.GetElement(r, c) for c in range(4)] for r in range(4)])
    transformed = segmentation_node.GetParentTransformNode() is not None
    out: dict[str, np.ndarray] = {}
    for segment_id in segment_ids:
        segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
        labelmap = segment.GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
        if labelmap is None or _is_empty(labelmap):
            out[segment_id] = np.zeros(shape, bool)
            continue
        matrix = vtk.vtkMatrix4x4()
        labelmap.GetImageToWorldMatrix(matrix)
        on_grid = np.allclose([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], reference_matrix,
                              atol=1e-6)
        scalars = labelmap.GetPointData().GetScalars()
        if transformed or not on_grid or scalars is None or scalars.GetNumberOfComponents() != 1:
            out[segment_id] = get_segment_mask(segmentation_node, segment_id, reference_volume_node)[region] > 0
            continue
        extent = labelmap.GetExtent()  # (i0, i1, j0, j1, k0, k1) in reference voxel indices
        voxels = vtk_to_numpy(scalars).reshape(extent[5] - extent[4] + 1, extent[3] - extent[2] + 1,
                                               extent[1] - extent[0] + 1)
        mask = np.zeros(shape, bool)
        low = [max(sl.start, extent[2 * axis]) for axis, sl in zip((2, 1, 0), region)]
        high = [min(sl.stop, extent[2 * axis + 1] + 1) for axis, sl in zip((2, 1, 0), region)]
        if all(lo < hi for lo, hi in zip(low, high)):
            source = tuple(slice(lo - extent[2 * axis], hi - extent[2 * axis])
                           for axis, lo, hi in zip((2, 1, 0), low, high))
            target = tuple(slice(lo - sl.start, hi - sl.start) for sl, lo, hi in zip(region, low, high))
            mask[target] = voxels[source] == segment.GetLabelValue()
        out[segment_id] = mask
    return out


def _exported_mask(slicer: Any, segmentation_node: Any, segment_id: str, reference_volume_node: Any) -> np.ndarray:
    """The segment exported onto the reference grid through a temporary labelmap node that is
    removed with its display and colour nodes (``slicer.util.arrayFromSegmentBinaryLabelmap``
    leaves the display node behind: one stray node in the scene per mask read)."""
    import vtk  # noqa: PLC0415

    scene = segmentation_node.GetScene() or slicer.mrmlScene
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segment_id)
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__dtt_segment_export__")
    try:
        if not slicer.modules.segmentations.logic().ExportSegmentsToLabelmapNode(
                segmentation_node, ids, labelmap, reference_volume_node):
            raise InputError(f"segment '{segment_id}' could not be exported onto the reference grid",
                             "check that the segmentation and the volume overlap")
        return (slicer.util.arrayFromVolume(labelmap) > 0).astype(np.uint8)
    finally:
        display = labelmap.GetDisplayNode()
        if display is not None:
            color = display.GetColorNode()
            scene.RemoveNode(display)
            if color is not None and color.GetScene() is scene and not color.GetSingletonTag():
                scene.RemoveNode(color)
        scene.RemoveNode(labelmap)


def resolve_segment_id(segmentation_node: Any, segment_id_or_name: str) -> str:
    segmentation = segmentation_node.GetSegmentation()
    if segmentation.GetSegment(segment_id_or_name) is not None:
        return segment_id_or_name
    segment_id = segmentation.GetSegmentIdBySegmentName(segment_id_or_name)
    if not segment_id:
        names = [segmentation.GetNthSegment(i).GetName()
                 for i in range(segmentation.GetNumberOfSegments())]
        raise InputError(f"segmentation '{segmentation_node.GetName()}' has no segment "
                         f"'{segment_id_or_name}'", f"available segments: {names}")
    return segment_id


def list_segments(segmentation_node: Any) -> list[SegmentInfo]:
    segmentation = segmentation_node.GetSegmentation()
    infos = []
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        segment = segmentation.GetSegment(segment_id)
        tag = _tag(segment, "TerminologyEntry")
        infos.append(SegmentInfo(segment_id, segment.GetName(), tuple(segment.GetColor()), tag))
    return infos


def _tag(segment: Any, key: str) -> str:
    import vtk  # noqa: PLC0415

    value = vtk.reference("")
    return str(value) if segment.GetTag(key, value) else ""


def _is_empty(labelmap: Any) -> bool:
    extent = labelmap.GetExtent()
    return extent[0] > extent[1] or extent[2] > extent[3] or extent[4] > extent[5]
