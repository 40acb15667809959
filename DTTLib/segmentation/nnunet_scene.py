"""nnU-Net proposals in the MRML scene: added as proposal segments, then accepted or rejected.

Proposals are segments named ``"P1 @ t0 (proposal)"`` carrying the tag ``DTT.Proposal`` (its
confidence), so they stay visibly unconfirmed and are never counted as lesions. Accepting
renames a segment to the lesion name (``"L3 @ t0"``) and drops the tag; the user may edit it
with the Segment Editor before or after. Rejecting removes it. Voxels that other segments
already hold are left to them, as for box-prompted lesions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from DTTLib.errors import InputError

PROPOSAL_TAG = "DTT.Proposal"
#: proposals are drawn in yellow until accepted
PROPOSAL_COLOR = (0.95, 0.85, 0.2)


@dataclass(frozen=True)
class StoredProposal:
    segment_id: str
    segment_name: str
    proposal_id: str
    voxels: int
    confidence: float


def proposal_segment_name(proposal_id: str, timepoint_label: str) -> str:
    from DTTLib.mrml.lesions import PROPOSAL_NAME_SUFFIX  # noqa: PLC0415 - one definition of the name format

    return f"{proposal_id} @ {timepoint_label.strip()} {PROPOSAL_NAME_SUFFIX}"


def store_proposals(proposal_set: Any, volume_node: Any, segmentation_node: Any, timepoint_label: str,
                    scene: Any = None) -> list[StoredProposal]:
    """GUI thread: add every proposal as an unconfirmed segment, in one undo step."""
    from DTTLib.mrml.runtime import get_scene  # noqa: PLC0415
    from DTTLib.mrml.segmentations import set_segment_mask  # noqa: PLC0415
    from DTTLib.segmentation.scene import bounding_region, owned_by_others  # noqa: PLC0415

    (scene or get_scene()).SaveStateForUndo()
    if segmentation_node.GetNodeReference("referenceImageGeometryRef") is None:
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    stored = []
    for proposal in proposal_set.proposals:
        name = proposal_segment_name(proposal.proposal_id, timepoint_label)
        mask = proposal_set.mask(proposal) > 0
        region = bounding_region(mask)  # other segments matter only where the proposal is
        mask[region] &= ~owned_by_others(segmentation_node, name, volume_node, region)
        if not mask.any():
            continue
        segment_id = set_segment_mask(segmentation_node, mask.astype(np.uint8), name, volume_node,
                                      color=PROPOSAL_COLOR)
        segmentation_node.GetSegmentation().GetSegment(segment_id).SetTag(PROPOSAL_TAG, f"{proposal.confidence:.3f}")
        stored.append(StoredProposal(segment_id, name, proposal.proposal_id, int(mask.sum()), proposal.confidence))
    return stored


def pending_proposals(segmentation_node: Any) -> list[str]:
    """Segment ids still tagged as proposals."""
    from DTTLib.mrml.segmentations import _tag  # noqa: PLC0415

    segmentation = segmentation_node.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(n) for n in range(segmentation.GetNumberOfSegments())]
    return [i for i in ids if _tag(segmentation.GetSegment(i), PROPOSAL_TAG)]


def accept_proposal(segmentation_node: Any, segment_id_or_name: str, lesion_id: str, timepoint_label: str,
                    scene: Any = None) -> str:
    """Make a proposal a lesion segment ("L3 @ t0"); returns the new name."""
    from DTTLib.mrml.lesions import lesion_segment_name  # noqa: PLC0415
    from DTTLib.mrml.runtime import get_scene  # noqa: PLC0415
    from DTTLib.mrml.segmentations import resolve_segment_id  # noqa: PLC0415

    segment_id = resolve_segment_id(segmentation_node, segment_id_or_name)
    if segment_id not in pending_proposals(segmentation_node):
        raise InputError(f"segment '{segment_id_or_name}' is not an nnU-Net proposal", "choose a proposal segment")
    name = lesion_segment_name(lesion_id, timepoint_label)
    segmentation = segmentation_node.GetSegmentation()
    if segmentation.GetSegmentIdBySegmentName(name):
        raise InputError(f"a segment '{name}' already exists", "give the accepted lesion a new lesion id")
    (scene or get_scene()).SaveStateForUndo()
    segment = segmentation.GetSegment(segment_id)
    segment.RemoveTag(PROPOSAL_TAG)
    segment.SetName(name)
    return name


def reject_proposals(segmentation_node: Any, segment_ids: list[str] | None = None, scene: Any = None) -> int:
    """Remove the given proposals (all pending ones when None); returns how many."""
    from DTTLib.mrml.runtime import get_scene  # noqa: PLC0415

    pending = pending_proposals(segmentation_node)
    chosen = pending if segment_ids is None else [i for i in segment_ids if i in pending]
    if chosen:
        (scene or get_scene()).SaveStateForUndo()
    for segment_id in chosen:
        segmentation_node.GetSegmentation().RemoveSegment(segment_id)
    return len(chosen)


__all__ = ["PROPOSAL_TAG", "StoredProposal", "accept_proposal", "pending_proposals", "proposal_segment_name",
           "reject_proposals", "store_proposals"]
