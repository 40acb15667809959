"""Lesion segments in the scene: segment from a box, store, and measure in one step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from DTTLib.errors import InputError


@dataclass(frozen=True)
class StoredLesion:
    segment_id: str
    segment_name: str
    voxels: int
    volume_mm3: float


def lesion_segment_name(lesion_id: str, timepoint_label: str) -> str:
    """Segments are named by lesion and timepoint, e.g. ``"L1 @ t0"``."""
    lesion_id, timepoint_label = lesion_id.strip(), timepoint_label.strip()
    if not lesion_id or not timepoint_label:
        raise InputError("a lesion needs an id and a timepoint label", "e.g. lesion 'L1' at 't0'")
    return f"{lesion_id} @ {timepoint_label}"


def segment_lesion_by_threshold(volume_node: Any, roi_node: Any, threshold: float,
                                segmentation_node: Any, lesion_id: str,
                                timepoint_label: str) -> StoredLesion:
    """Threshold inside the ROI box, keep the largest component, store it as a segment."""
    import numpy as np  # noqa: PLC0415

    from DTTLib.measurement import mask_volume_mm3  # noqa: PLC0415
    from DTTLib.mrml.markups import box_from_roi_node  # noqa: PLC0415
    from DTTLib.mrml.segmentations import set_segment_mask  # noqa: PLC0415
    from DTTLib.mrml.volumes import image_from_volume_node  # noqa: PLC0415
    from DTTLib.segmentation.box import voxel_box_from_ras  # noqa: PLC0415
    from DTTLib.segmentation.threshold import segment_box_by_threshold  # noqa: PLC0415

    name = lesion_segment_name(lesion_id, timepoint_label)
    image = image_from_volume_node(volume_node)
    box = voxel_box_from_ras(image, *box_from_roi_node(roi_node).bounds)
    mask = segment_box_by_threshold(image, box, threshold)
    if segmentation_node.GetNodeReference("referenceImageGeometryRef") is None:
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    segment_id = set_segment_mask(segmentation_node, mask, name, volume_node)
    return StoredLesion(segment_id, name, int(np.count_nonzero(mask)), mask_volume_mm3(mask, image))
