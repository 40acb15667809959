"""Lesion segments in the scene: segment from a box, store, and measure in one step."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from DTTLib.errors import InputError

_log = logging.getLogger(__name__)

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
#: Slicer's serialised terminology tag on a segment (context~category~type~typeModifier~regionContext~
#: region~regionModifier, each code scheme^value^meaning); a segment without DTT tags is read from it.
TERMINOLOGY_TAG = "TerminologyEntry"
#: The organ of a lesion that is a lymph node and names no organ (RECIST counts nodes as one organ).
LYMPH_NODE_ORGAN = "lymph node"


@dataclass(frozen=True)
class SegmentAnatomy:
    """A lesion's organ and lymph-node status as one segment states them. ``origin`` says where they
    come from ("tag": DTT.Organ / DTT.Nodal, "terminology": its anatomic region or type, "": the
    segment says nothing), so a reader can tell a user's reading from a guess."""

    organ: str
    nodal: bool
    origin: str


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


def lesion_id_of_segment(segment_name: str) -> str:
    """The lesion id of a segment: "L1" for DTT Segmentation's "L1 @ t0" (the same at every
    timepoint, which is how the twin matches lesions by name); any other name is its own id."""
    parsed = parse_lesion_segment_name(segment_name)
    return parsed[0] if parsed else str(segment_name)


def segment_anatomy(segment: Any) -> SegmentAnatomy:
    """Organ and nodal status a segment (``vtkSegment``) carries: the DTT.Organ / DTT.Nodal tags win
    (a user set them in DTT Segmentation), else its terminology's anatomic region is the organ and a
    lymph-node type or region makes it nodal. A node without an organ gets LYMPH_NODE_ORGAN."""
    from DTTLib.mrml.segmentations import _tag  # noqa: PLC0415

    tagged = read_lesion_anatomy(segment)
    if tagged is not None:
        organ, nodal = tagged
        return SegmentAnatomy(organ or (LYMPH_NODE_ORGAN if nodal else ""), nodal, "tag")
    parts = _tag(segment, TERMINOLOGY_TAG).strip().split("~")
    if len(parts) == 7:
        type_meaning, region = ((part.split("^") + ["", "", ""])[2].strip() for part in (parts[2], parts[5]))
        nodal = LYMPH_NODE_ORGAN in f"{type_meaning} {region}".lower()
        if region or nodal:
            return SegmentAnatomy(region or LYMPH_NODE_ORGAN, nodal, "terminology")
    return SegmentAnatomy("", False, "")


def lesion_segments(segmentation_node: Any) -> list[tuple[str, Any]]:
    """(segment id, ``vtkSegment``) of each lesion segment of a segmentation node, in order: nnU-Net
    proposals not yet accepted (still tagged) are never lesions, or they would count as new ones."""
    from DTTLib.segmentation.nnunet_scene import pending_proposals  # noqa: PLC0415

    pending = set(pending_proposals(segmentation_node))
    segmentation = segmentation_node.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(index) for index in range(segmentation.GetNumberOfSegments())]
    return [(segment_id, segmentation.GetSegment(segment_id)) for segment_id in ids if segment_id not in pending]


def lesion_anatomy(segmentation_nodes: list[Any], user_entries: dict[str, dict] | None = None
                   ) -> dict[str, dict[str, Any]]:
    """lesion id -> {"organ", "nodal", "origin"} over the lesion segments of the segmentations
    (baseline first; None entries are skipped). Among the segments the first that says anything
    wins, so a later scan's terminology never overrides an earlier tag; then the user's entries
    (parse_anatomy_entries) win for lesions that exist, origin "user", an empty organ keeping the
    segments'. A lesion nobody describes has organ "" and origin ""."""
    found: dict[str, dict[str, Any]] = {}
    for segmentation_node in segmentation_nodes:
        if segmentation_node is None:
            continue
        for _segment_id, segment in lesion_segments(segmentation_node):
            lesion = lesion_id_of_segment(segment.GetName())
            anatomy = segment_anatomy(segment)
            if lesion not in found or (anatomy.origin and not found[lesion]["origin"]):
                found[lesion] = {"organ": anatomy.organ, "nodal": anatomy.nodal, "origin": anatomy.origin}
    for lesion, entry in (user_entries or {}).items():
        if lesion in found:
            found[lesion] = {"organ": str(entry.get("organ") or "").strip() or found[lesion]["organ"],
                             "nodal": bool(entry.get("nodal", False)), "origin": "user"}
    return found


def parse_anatomy_entries(text: str) -> dict[str, dict[str, Any]]:
    """The user's lesion organs as stored in a parameter ({lesion id: {"organ", "nodal"}} as JSON).
    {} when unreadable (logged): a damaged parameter must not stop a saved scene from loading."""
    try:
        entries = json.loads(text or "{}")
    except ValueError:
        _log.warning("ignoring unreadable lesion organs %r", text)
        return {}
    if not isinstance(entries, dict):
        return {}
    return {str(lesion): {"organ": str(entry.get("organ") or "").strip(), "nodal": bool(entry.get("nodal"))}
            for lesion, entry in entries.items() if isinstance(entry, dict)}


def with_anatomy_entry(text: str, lesion: str, organ: str, nodal: bool) -> str:
    """The stored lesion organs (JSON, as parse_anatomy_entries reads) with one lesion's organ and
    nodal status set by the user; keys sorted so the same entries always give the same text."""
    entries = parse_anatomy_entries(text)
    entries[str(lesion)] = {"organ": str(organ).strip(), "nodal": bool(nodal)}
    return json.dumps(entries, sort_keys=True)


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
