"""nnU-Net proposals in ``dtt run``: find lesions on every scan, prompt known ones, list the rest.

With a ``proposals`` section in case.json, a trained nnU-Net model segments every scan. A
proposal then plays one of three parts:

- **prompt** — at a timepoint without a box for a known lesion, the proposal nearest to that
  lesion's registered centroid (within the tracker's 20 mm cap, each proposal used once)
  gives the box that MedSAM segments from, instead of the carried-over box. One model outlines
  every timepoint, so measurements stay comparable; nnU-Net only says where.
- **matched** — it overlaps a segmented lesion: nothing to decide.
- **unmatched** — listed for the reader with its measurements and never counted. Only a
  reader's decision in case.json (``"new"``) makes it a new lesion for RECIST at that
  timepoint; ``"reject"`` dismisses it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from DTTLib.errors import InputError
from DTTLib.imaging.volume import ImageVolume
from DTTLib.pipeline.cache import StepCache, file_digest
from DTTLib.pipeline.case import CaseSpec
from DTTLib.pipeline.progress import Progress, ProgressEvent, ignore_progress
from DTTLib.segmentation.box import VoxelBox, voxel_box_from_ras

#: The tracker's cap (DTTLib.tracking.matching): farther than this is not the same lesion.
MATCH_CAP_MM = 20.0
#: Bump when proposals are computed differently.
PROPOSAL_VERSION = 1


@dataclass(frozen=True)
class ProposalReview:
    """What became of one proposal, as shown in twin.json and the report."""

    timepoint: str
    proposal_id: str
    status: str  # "prompted" | "matched" | "unconfirmed" | "confirmed new" | "rejected"
    lesion: str  # the lesion it prompted or overlaps; "" otherwise
    volume_mm3: float
    longest_diameter_mm: float | None
    short_axis_mm: float | None
    centroid_ras: tuple[float, float, float]
    confidence: float
    slices: tuple[int, int]
    detail: str

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["centroid_ras"] = [round(v, 2) for v in self.centroid_ras]
        record["slices"] = list(self.slices)
        return record


def find_case_proposals(case: CaseSpec, images: dict[str, ImageVolume], digests: dict[str, str],
                        cache: StepCache, progress: Progress = ignore_progress) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every timepoint's :class:`~DTTLib.segmentation.nnunet_proposals.ProposalSet` (cached by the
    scan's and the model's bytes), and a description of the model run. The decisions in
    case.json are checked against the proposals found: a decision about a proposal that does not
    exist is an error, not silently ignored."""
    from DTTLib.segmentation.nnunet_model import resolve_model  # noqa: PLC0415

    spec = case.proposals
    if spec is None:
        return {}, {}
    folder = resolve_model(spec.model)  # a clear error before torch and nnunetv2 load
    model_digest = file_digest(folder.path)
    segmenter: Any = None
    found: dict[str, Any] = {}
    for done, timepoint in enumerate(case.timepoints):
        label = timepoint.timepoint_id
        progress(ProgressEvent("find lesions (nnU-Net)", f"nnU-Net on {label}", done, len(case.timepoints)))

        def compute(label: str = label) -> Any:
            nonlocal segmenter
            if segmenter is None:
                segmenter = _segmenter(folder, spec.use_mirroring)
            from DTTLib.segmentation.nnunet_proposals import find_lesions  # noqa: PLC0415

            result = find_lesions(segmenter, images[label], spec.min_volume_mm3)
            result.probabilities = None  # the report needs the components, not 4 bytes per voxel
            if result.components.size and int(result.components.max()) < 2 ** 16:
                result.components = result.components.astype(np.uint16)  # half the cache entry of a CT
            return result

        found[label] = cache.get_or_compute(
            "proposals", {"version": PROPOSAL_VERSION, "image": digests[label], "model": model_digest,
                          "min_volume_mm3": spec.min_volume_mm3, "mirroring": spec.use_mirroring}, compute)
    progress(ProgressEvent("find lesions (nnU-Net)", "done", len(case.timepoints), len(case.timepoints)))
    for decision in spec.decisions:
        ids = [p.proposal_id for p in found[decision.timepoint_id].proposals]
        if decision.proposal_id not in ids:
            raise InputError(f"case.json decides about {decision.proposal_id} at {decision.timepoint_id}, but the "
                             f"model proposes {', '.join(ids) or 'nothing'} there",
                             "copy the proposal ids from the latest report (they change when the model does)")
    first = next(iter(found.values()))
    return found, {"model": spec.model, "model_id": first.model, "device": first.device, "note": first.note,
                   "min_volume_mm3": spec.min_volume_mm3}


def _segmenter(folder: Any, use_mirroring: bool) -> Any:
    from DTTLib.segmentation.nnunet import NnUNetSegmenter, NnUNetSettings  # noqa: PLC0415

    return NnUNetSegmenter(folder, NnUNetSettings(use_mirroring=use_mirroring))


def lesion_centroid_ras(mask: np.ndarray, image: ImageVolume) -> np.ndarray | None:
    if not mask.any():
        return None
    k, j, i = np.nonzero(mask)
    return (image.ijk_to_ras() @ np.array([i.mean(), j.mean(), k.mean(), 1.0]))[:3]


def nearest_proposal(proposal_set: Any, centre_ras: np.ndarray, claimed: set[str],
                     cap_mm: float = MATCH_CAP_MM) -> tuple[Any, float] | None:
    """The unclaimed proposal whose centroid is nearest to ``centre_ras``, within the cap."""
    best = None
    for proposal in proposal_set.proposals:
        if proposal.proposal_id in claimed:
            continue
        distance = float(np.linalg.norm(np.asarray(proposal.centroid_ras) - centre_ras))
        if distance <= cap_mm and (best is None or distance < best[1]):
            best = (proposal, distance)
    return best


def proposal_box(proposal_set: Any, proposal: Any, image: ImageVolume, margin_fraction: float,
                 margin_mm: tuple[float, float]) -> VoxelBox:
    """A 2-D box on the proposal's widest slice, with the same margin as a carried-over box:
    the proposal is a prompt, and MedSAM propagates from it as from a drawn box."""
    mask = proposal_set.mask(proposal)
    k = int(np.argmax(mask.reshape(mask.shape[0], -1).sum(axis=1)))
    j, i = np.nonzero(mask[k])
    corners = np.array([(image.ijk_to_ras() @ np.array([ii, jj, k, 1.0]))[:3]
                        for ii, jj in ((i.min(), j.min()), (i.max(), j.max()))])
    extent = np.abs(corners[1] - corners[0])
    margin = float(np.clip(margin_fraction * extent.max(), *margin_mm))
    low, high = corners.min(axis=0) - margin, corners.max(axis=0) + margin
    box = voxel_box_from_ras(image, low, high)
    return VoxelBox(box.i0, box.j0, k, box.i1, box.j1, k)


def review_proposals(case: CaseSpec, found: dict[str, Any], segmentations: dict[tuple[str, str], Any]
                     ) -> list[ProposalReview]:
    """The part each proposal played, and the reader's decision for the ones that matched nothing."""
    spec = case.proposals
    reviews = []
    for label, proposal_set in found.items():
        lesions_here = {lesion: s for (lesion, timepoint), s in segmentations.items() if timepoint == label}
        for proposal in proposal_set.proposals:
            mask = proposal_set.mask(proposal)
            prompted = next((lesion for lesion, s in lesions_here.items()
                             if getattr(s, "proposal", "") == proposal.proposal_id), "")
            overlaps = {lesion: int((s.mask.astype(bool) & mask).sum()) for lesion, s in lesions_here.items()}
            overlapping = max(overlaps, key=overlaps.get) if overlaps and max(overlaps.values()) > 0 else ""
            decision = spec.decision(label, proposal.proposal_id) if spec else None
            if prompted:
                status, lesion = "prompted", prompted
                detail = f"its box prompted the segmentation of {prompted}"
            elif overlapping:
                status, lesion = "matched", overlapping
                detail = f"overlaps {overlapping} ({overlaps[overlapping]} of {proposal.voxels} voxels)"
            elif decision is not None:
                status, lesion = ("confirmed new" if decision.decision == "new" else "rejected"), ""
                detail = f"reader: {decision.decision}" + (f" ({decision.reason})" if decision.reason else "")
            else:
                status, lesion = "unconfirmed", ""
                detail = ("not counted: confirm it as new or reject it in case.json (proposals.decisions)"
                          if label != case.timepoints[0].timepoint_id else
                          "not counted: give it a box in case.json to measure it, or reject it")
            if decision is not None and status in ("prompted", "matched"):
                detail += f"; the reader's '{decision.decision}' does not apply to a proposal that is {lesion}"
            reviews.append(ProposalReview(label, proposal.proposal_id, status, lesion, float(proposal.volume_mm3),
                                          proposal.longest_diameter_mm, proposal.short_axis_mm,
                                          tuple(float(v) for v in proposal.centroid_ras), float(proposal.confidence),
                                          tuple(int(v) for v in proposal.slices), detail))
    return reviews


def proposal_notes(reviews: list[ProposalReview]) -> list[str]:
    """One line per timepoint with proposals that wait for the reader, and one per confirmed one."""
    notes = []
    for review in reviews:
        if review.status == "confirmed new":
            notes.append(f"new lesion {review.proposal_id} at {review.timepoint} confirmed by the reader "
                         f"(nnU-Net, {review.volume_mm3:.0f} mm³): counted as a new lesion for RECIST")
    pending: dict[str, list[str]] = {}
    for review in reviews:
        if review.status == "unconfirmed":
            size = "" if review.longest_diameter_mm is None else f", {review.longest_diameter_mm:.1f} mm"
            pending.setdefault(review.timepoint, []).append(f"{review.proposal_id}{size}")
    for timepoint, items in pending.items():
        notes.append(f"nnU-Net proposes {len(items)} lesion(s) at {timepoint} that match no prompted lesion "
                     f"({'; '.join(items)}): not counted — review them and decide in case.json")
    return notes


__all__ = ["MATCH_CAP_MM", "ProposalReview", "find_case_proposals", "lesion_centroid_ras", "nearest_proposal",
           "proposal_box", "proposal_notes", "review_proposals"]
