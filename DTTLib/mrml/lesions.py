"""Lesion segments in the scene: segment from a box, store, and measure in one step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from DTTLib.errors import InputError

#: Segment tags with a lesion's organ (free text, e.g. "liver") and lymph-node status ("true" /
#: "false"): DTT Segmentation writes them, the main module reads them for RECIST (≤ 2 targets per
#: organ, nodes by their short axis). The names are stored in scenes and .seg.nrrd files: keep them.
ORGAN_TAG = "DTT.Organ"
NODAL_TAG = "DTT.Nodal"
#: Between the lesion id and the timepoint label in a lesion segment's name ("L1 @ t0").
LESION_NAME_SEPARATOR = " @ "
#: nnU-Net proposal segments ("P1 @ t0 (proposal)", DTTLib.segmentation.nnunet_scene) end with
#: this; they are not lesions until accepted (and renamed).
PROPOSAL_NAME_SUFFIX = "(proposal)"
_NODAL_TRUE = ("true", "1", "yes")


@dataclass(frozen=True)
class StoredLesion:
    segment_id: str
    segment_name: str
    voxels: int
    volume_mm3: float


def lesion_segment_name(lesion_id: str, timepoint_label: str) -> str:
    """Segments are named by lesion and timepoint, e.g. ``"L1 @ t0"`` (parse_lesion_segment_name
    reads it back, so the lesion id may not contain the separator)."""
    lesion_id, timepoint_label = lesion_id.strip(), timepoint_label.strip()
    if not lesion_id or not timepoint_label:
        raise InputError("a lesion needs an id and a timepoint label", "e.g. lesion 'L1' at 't0'")
    if LESION_NAME_SEPARATOR.strip() in lesion_id:
        raise InputError(f"lesion id '{lesion_id}' contains '@', which separates it from the timepoint "
                         "in the segment name", "e.g. lesion 'L1'")
    return f"{lesion_id}{LESION_NAME_SEPARATOR}{timepoint_label}"


def parse_lesion_segment_name(segment_name: str) -> tuple[str, str] | None:
    """``(lesion_id, timepoint_label)`` of a lesion segment's name ("L1 @ t0" -> ("L1", "t0")), the
    inverse of lesion_segment_name; None for any other name: no " @ ", an empty side, or an
    nnU-Net proposal not yet accepted ("P1 @ t0 (proposal)")."""
    lesion_id, separator, timepoint_label = str(segment_name).partition(LESION_NAME_SEPARATOR)
    lesion_id, timepoint_label = lesion_id.strip(), timepoint_label.strip()
    if not separator or not lesion_id or not timepoint_label or timepoint_label.endswith(PROPOSAL_NAME_SUFFIX):
        return None
    return lesion_id, timepoint_label


def write_lesion_anatomy(segment: Any, organ: str, nodal: bool) -> None:
    """Write a lesion's organ and lymph-node status on its segment (a ``vtkSegment``) as the
    ORGAN_TAG / NODAL_TAG tags; they are saved with the scene and in .seg.nrrd files.

    A segment with no organ that is not a node gets neither tag (any old ones are removed), so a
    reader falls back to what else the segment says (e.g. its terminology's anatomic region)."""
    organ = str(organ or "").strip()
    nodal = bool(nodal)
    if not organ and not nodal:
        segment.RemoveTag(ORGAN_TAG)
        segment.RemoveTag(NODAL_TAG)
        return
    if organ:
        segment.SetTag(ORGAN_TAG, organ)
    else:
        segment.RemoveTag(ORGAN_TAG)
    segment.SetTag(NODAL_TAG, "true" if nodal else "false")


def read_lesion_anatomy(segment: Any) -> tuple[str, bool] | None:
    """``(organ, nodal)`` from a segment's ORGAN_TAG / NODAL_TAG tags, or None when it has neither.

    organ is "" when only the nodal tag is set; nodal is True for "true" (also "1" / "yes", any case)."""
    from DTTLib.mrml.segmentations import _tag  # noqa: PLC0415

    organ, nodal_text = _tag(segment, ORGAN_TAG).strip(), _tag(segment, NODAL_TAG).strip().lower()
    if not organ and not nodal_text:
        return None
    return organ, nodal_text in _NODAL_TRUE


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
