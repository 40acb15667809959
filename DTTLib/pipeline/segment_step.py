"""Segment every lesion at every timepoint: given boxes first, carried-over boxes elsewhere.

A timepoint without a box for a lesion gets one the way a reader would draw it: the lesion's
tight box on its widest slice at the nearest segmented timepoint, mapped through the
registration of the two scans (SimpleITK, rigid then affine), then propagated in 3-D like a
drawn box. The tracker later checks that the result really is the same lesion. With nnU-Net
proposals for that scan (case.json ``proposals``), the proposal nearest to the lesion's
registered centroid gives the box instead (DTTLib.pipeline.proposal_step).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from DTTLib.errors import InputError
from DTTLib.imaging.volume import ImageVolume
from DTTLib.pipeline.cache import StepCache
from DTTLib.pipeline.case import BoxPrompt, CaseSpec, LesionSpec
from DTTLib.pipeline.progress import Progress, ProgressEvent, ignore_progress
from DTTLib.segmentation.box import VoxelBox, checked_box, voxel_box_from_ras
from DTTLib.segmentation.propagate import PropagationSettings, settings_for_scan

#: In-plane margin around a carried-over lesion box, for growth and registration error: a
#: fraction of the lesion's extent, within [min, max] mm. A fixed 3 mm doubled the box of a
#: 6 mm node, and the model then filled the box.
CARRY_MARGIN_FRACTION = 0.15
CARRY_MARGIN_MM = (1.0, 3.0)
#: Bump when the segmentation or carry-over rules change (v3: CT slices in a HU window; v6: CT
#: slices denoised before the model; v7: propagation widens to the seed where a lesion widens again).
STEP_VERSION = 7
#: Bump when registration changes (v2: a runaway affine stage falls back to the rigid one).
REGISTRATION_VERSION = 3


@dataclass
class LesionSegmentation:
    lesion_id: str
    timepoint_id: str
    mask: np.ndarray  # uint8 (k, j, i) on that timepoint's image grid
    box: VoxelBox
    box_source: str  # "given" or "carried from t0 (registration)"
    model: str
    found: bool  # False when the model found nothing in the box
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: encoder features pooled inside the mask on its widest slice (unit length), for
    #: similar-lesion search; computed here while that slice's embedding is still cached
    appearance: np.ndarray | None = None
    window: str = "slice"  # how slices were prepared for the model (window_presets.json rules)
    #: how the outline was made: "model", or "model; edges refined on N of M slices" (CT rule)
    outline: str = "model"
    #: the nnU-Net proposal ("P2") whose box prompted this segmentation; "" when none did
    proposal: str = ""
    #: in-plane Gaussian sigma (mm) of the slices the model saw (window_presets.json rule)
    denoise_mm: float = 0.0
    #: every box of a lesion in separate pieces (one per piece, ``box`` is the first); () for one box
    boxes: tuple[VoxelBox, ...] = ()

    @property
    def all_boxes(self) -> tuple[VoxelBox, ...]:
        return self.boxes or (self.box,)


def box_from_prompt(prompt: BoxPrompt, image: ImageVolume) -> VoxelBox:
    if prompt.space == "ijk":
        return checked_box(VoxelBox(*(int(v) for v in prompt.coordinates)), image)
    values = np.asarray(prompt.coordinates, float)
    low, high = np.minimum(values[:3], values[3:]), np.maximum(values[:3], values[3:])
    return voxel_box_from_ras(image, low, high)


def segment_case(case: CaseSpec, images: dict[str, ImageVolume], image_digests: dict[str, str],
                 segmenter: Any, cache: StepCache, register: Callable[[ImageVolume, ImageVolume], Any],
                 progress: Progress = ignore_progress, proposals: dict[str, Any] | None = None
                 ) -> tuple[dict[tuple[str, str], LesionSegmentation], dict[tuple[str, str], Any]]:
    """All (lesion, timepoint) segmentations, computed or taken from the cache, and the
    registrations computed on the way, keyed (fixed timepoint, moving timepoint).
    ``proposals`` (timepoint → nnU-Net ProposalSet) replace carried-over boxes where one lies
    within the tracker's cap of the lesion's registered centroid."""
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    results: dict[tuple[str, str], LesionSegmentation] = {}
    registrations: dict[tuple[str, str], Any] = {}

    def registration(key: tuple[str, str]) -> Any:
        reference, timepoint_id = key
        progress(ProgressEvent("segment", f"registering {timepoint_id} to {reference}"))
        return cache.get_or_compute(
            "register", {"version": REGISTRATION_VERSION, "fixed": image_digests[reference],
                         "moving": image_digests[timepoint_id]},
            lambda: register(images[reference], images[timepoint_id]))

    # Registration runs on one thread (bit-repeatable) and SimpleITK releases the GIL, so the
    # pairs the carry-overs will need are registered in the background while the encoder
    # works on the given boxes; results are identical to registering in the loop.
    plan = carry_plan(case)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dtt-register") as pool:
        pending = {pair: pool.submit(registration, pair) for pair in carry_pairs(plan)}
        try:
            for done, (lesion, timepoint_id, reference) in enumerate(plan):
                image = images[timepoint_id]
                proposal_id = ""
                if reference is None:  # one box per piece of a lesion in separate pieces
                    boxes = [box_from_prompt(p, image) for p in lesion.boxes if p.timepoint_id == timepoint_id]
                    source = "given"
                else:
                    registrations[(reference, timepoint_id)] = pending[(reference, timepoint_id)].result()
                    boxes = carried_boxes(results[(lesion.lesion_id, reference)], images[reference], image,
                                          registrations[(reference, timepoint_id)])
                    source = f"carried from {reference} (registration)"
                    hit = _proposal_prompt(lesion.lesion_id, timepoint_id, reference, results, images,
                                           registrations[(reference, timepoint_id)], (proposals or {}).get(timepoint_id))
                    if hit is not None and len(boxes) == 1:  # a proposal is one piece: it stands in for one box
                        box, source, proposal_id = hit
                        boxes = [box]
                progress(ProgressEvent("segment", f"segmenting {lesion.lesion_id} at {timepoint_id}", done, len(plan)))
                settings = settings_for_scan(scan_modality(case, timepoint_id, image), lesion.organ)
                key = {"version": STEP_VERSION, "image": image_digests[timepoint_id],
                       # one box keeps the key it always had, so cached one-piece results stay valid
                       **({"box": boxes[0].__dict__} if len(boxes) == 1 else {"boxes": [b.__dict__ for b in boxes]}),
                       "window": settings.window, "refine_edges": settings.refine_edges,
                       "denoise_mm": settings.denoise_mm,
                       "model": getattr(segmenter, "name", type(segmenter).__name__)}
                if proposal_id:
                    key["prompt"] = source
                results[(lesion.lesion_id, timepoint_id)] = cache.get_or_compute(
                    "segment", key,
                    lambda: _segment_one(lesion, timepoint_id, image, boxes, source, segmenter, settings,
                                         proposal_id))
        except BaseException:
            for future in pending.values():  # a failed run should not wait for unneeded registrations
                future.cancel()
            raise
    return results, registrations


def _proposal_prompt(lesion_id: str, timepoint_id: str, reference: str,
                     results: dict[tuple[str, str], LesionSegmentation], images: dict[str, ImageVolume],
                     registration: Any, proposal_set: Any) -> tuple[VoxelBox, str, str] | None:
    """(box, source, proposal id) from the nnU-Net proposal nearest to the lesion's registered
    centroid, or None. A proposal already used, or overlapping a lesion already segmented on
    that scan, belongs to that lesion and is not offered again."""
    if proposal_set is None or not proposal_set.proposals:
        return None
    from DTTLib.pipeline.proposal_step import lesion_centroid_ras, nearest_proposal, proposal_box  # noqa: PLC0415

    centre = lesion_centroid_ras(results[(lesion_id, reference)].mask, images[reference])
    if centre is None:
        return None
    mapped = np.asarray(registration.to_followup([centre]), float)[0]
    taken = {s.proposal for (_, t), s in results.items() if t == timepoint_id and s.proposal}
    for (_, t), s in results.items():
        if t == timepoint_id and s.found:
            taken |= {proposal_set.proposals[n - 1].proposal_id for n in _proposals_under(proposal_set, s.mask)}
    hit = nearest_proposal(proposal_set, mapped, taken)
    if hit is None:
        return None
    proposal, distance = hit
    box = proposal_box(proposal_set, proposal, images[timepoint_id], CARRY_MARGIN_FRACTION, CARRY_MARGIN_MM)
    source = (f"nnU-Net proposal {proposal.proposal_id} ({distance:.1f} mm from {lesion_id}'s centroid "
              f"registered from {reference})")
    return box, source, proposal.proposal_id


def _proposals_under(proposal_set: Any, mask: np.ndarray) -> set[int]:
    """1-based indices of the proposals that share voxels with ``mask``."""
    order = {p.component: n for n, p in enumerate(proposal_set.proposals, start=1)}
    return {order[int(c)] for c in np.unique(proposal_set.components[mask.astype(bool)]) if int(c) in order}


def carry_plan(case: CaseSpec) -> list[tuple[LesionSpec, str, str | None]]:
    """(lesion, timepoint, reference) in segmentation order; reference None = a given box,
    else the nearest timepoint already segmented, whose lesion box is carried over.

    Each lesion walks outwards from its given boxes; the walks are interleaved step by step, so
    (with boxes at baseline) every lesion is segmented on one scan before the next scan. Lesions
    on one scan share slices, and the encoder's slice cache only holds the recent ones: on the
    phantom this order encodes 90 slices where lesion by lesion encoded 139."""
    order = [t.timepoint_id for t in case.timepoints]
    walks: list[list[tuple[LesionSpec, str, str | None]]] = []
    for lesion in case.lesions:
        given = {prompt.timepoint_id: prompt for prompt in lesion.boxes}
        done: set[str] = set()
        walk = []
        for timepoint_id in _visit_order(order, given):
            walk.append((lesion, timepoint_id, None if timepoint_id in given else _nearest_done(order, timepoint_id, done)))
            done.add(timepoint_id)
        walks.append(walk)
    return [walk[step] for step in range(max((len(w) for w in walks), default=0)) for walk in walks if step < len(walk)]


def carry_pairs(plan: list[tuple[LesionSpec, str, str | None]]) -> list[tuple[str, str]]:
    """The (reference, timepoint) registrations a plan needs, once each, in the order needed."""
    return list(dict.fromkeys((reference, timepoint_id) for _, timepoint_id, reference in plan if reference))


def scan_modality(case: CaseSpec, timepoint_id: str, image: ImageVolume) -> str:
    """The timepoint's modality as case.json states it, else the case's, else the DICOM tag."""
    stated = case.timepoint(timepoint_id).modality or case.modality
    return stated or image.modality


def carried_boxes(previous: LesionSegmentation, reference: ImageVolume, target: ImageVolume,
                  registration: Any) -> list[VoxelBox]:
    """One carried box per 3-D piece of the previous mask (a lesion in separate pieces keeps them
    all: one box never reaches another piece), largest piece first; specks (≤ 3 voxels, as in the
    RECIST measurement) are not pieces. Nothing found before: the boxes that were used."""
    from scipy import ndimage  # noqa: PLC0415

    from DTTLib.measurement.diameters import SPECK_MAX_VOXELS  # noqa: PLC0415

    mask = np.asarray(previous.mask) > 0
    if not mask.any():
        return [carried_box(previous, reference, target, registration, box=box) for box in previous.all_boxes]
    labels, count = ndimage.label(mask, np.ones((3, 3, 3)))
    if count == 1:
        return [carried_box(previous, reference, target, registration)]
    sizes = np.bincount(labels.ravel())[1:]
    pieces = [n + 1 for n in np.argsort(-sizes, kind="stable") if sizes[n] > SPECK_MAX_VOXELS] or [int(sizes.argmax()) + 1]
    return [carried_box(previous, reference, target, registration, piece=labels == n) for n in pieces]


def carried_box(previous: LesionSegmentation, reference: ImageVolume, target: ImageVolume,
                registration: Any, piece: np.ndarray | None = None, box: VoxelBox | None = None) -> VoxelBox:
    """The previous lesion's (or ``piece``'s) tight box on its widest slice, mapped into ``target``
    (2-D box); ``box``: map that box instead (the lesion was not found there)."""
    mask = previous.mask if piece is None else piece
    if box is not None or not mask.any():
        # nothing was found before: carry the box that was used, mapped the same way
        box = box or previous.box
        corners_ijk = [(box.i0, box.j0, box.k0), (box.i1, box.j1, box.k1)]
    else:
        k = int(np.argmax(mask.reshape(mask.shape[0], -1).sum(axis=1)))
        j, i = np.nonzero(mask[k])
        corners_ijk = [(i.min(), j.min(), k), (i.max(), j.max(), k)]
    corners_ras = [(reference.ijk_to_ras() @ np.array([*c, 1.0]))[:3] for c in corners_ijk]
    mapped = np.asarray(registration.to_followup(corners_ras))
    centre = mapped.mean(axis=0)
    extent = np.abs(mapped[1] - mapped[0])
    margin = float(np.clip(CARRY_MARGIN_FRACTION * extent.max(), *CARRY_MARGIN_MM))
    half = extent / 2 + margin
    low, high = centre - half, centre + half
    box = voxel_box_from_ras(target, low, high)
    k_centre = int(round((target.ras_to_ijk() @ np.array([*centre, 1.0]))[2]))
    k_centre = min(max(k_centre, 0), target.array.shape[0] - 1)
    return VoxelBox(box.i0, box.j0, k_centre, box.i1, box.j1, k_centre)


def _segment_one(lesion: LesionSpec, timepoint_id: str, image: ImageVolume, boxes: list[VoxelBox], source: str,
                 segmenter: Any, settings: PropagationSettings, proposal_id: str = "") -> LesionSegmentation:
    """The lesion from its box, or from one box per piece (the mask is their union)."""
    import time  # noqa: PLC0415

    from DTTLib.segmentation.propagate import propagate_box  # noqa: PLC0415

    started = time.perf_counter()
    results = [propagate_box(image, box, segmenter, settings) for box in boxes]
    mask = np.logical_or.reduce([r.mask > 0 for r in results]).astype(np.uint8)
    outlines = list(dict.fromkeys(r.outline for r in results))
    outline = outlines[0] if len(outlines) == 1 else "; ".join(f"piece {n}: {o}" for n, o in enumerate(outlines, 1))
    found = bool(mask.any())
    appearance = _appearance(image, mask, segmenter, settings) if found else None
    kind = "given" if source == "given" else "proposed" if proposal_id else "carried-over"
    notes = [] if found else [f"{lesion.lesion_id} at {timepoint_id}: nothing segmented inside the "
                              f"{kind} box — recorded as not found; check it"]
    return LesionSegmentation(lesion.lesion_id, timepoint_id, mask, boxes[0], source,
                              getattr(segmenter, "name", type(segmenter).__name__), found, notes,
                              time.perf_counter() - started, appearance, settings.window, outline, proposal_id,
                              settings.denoise_mm, tuple(boxes) if len(boxes) > 1 else ())


def _appearance(image: ImageVolume, mask: np.ndarray, segmenter: Any,
                settings: PropagationSettings) -> np.ndarray | None:
    """Encoder features pooled inside the mask on its widest slice, prepared exactly as the
    segmentation saw it (so the encoder's slice cache answers; no second encoding)."""
    from DTTLib.segmentation.prepare import denoise_sigma_px, slice_for_model  # noqa: PLC0415
    from DTTLib.segmentation.propagate import region_feature  # noqa: PLC0415

    k = int(np.argmax(mask.reshape(mask.shape[0], -1).sum(axis=1)))
    prepared = slice_for_model(image.array[k], settings.window, denoise_sigma_px(image.spacing, settings.denoise_mm))
    vector = region_feature(segmenter.encode(prepared), mask[k].astype(bool))
    if vector is None or not np.any(vector):
        return None
    return np.asarray(vector, np.float32).ravel()


def _visit_order(order: list[str], given: dict[str, BoxPrompt]) -> list[str]:
    """Timepoints with a given box first, then outwards from them, so every carry has a source."""
    if not given:
        raise InputError("a lesion has no box", "give a box for at least one timepoint")
    done: list[str] = [t for t in order if t in given]
    remaining = [t for t in order if t not in given]
    while remaining:
        next_one = min(remaining, key=lambda t: min(abs(order.index(t) - order.index(d)) for d in done))
        done.append(next_one)
        remaining.remove(next_one)
    return done


def _nearest_done(order: list[str], timepoint_id: str, done: set[str]) -> str:
    index = order.index(timepoint_id)
    return min(done, key=lambda t: (abs(order.index(t) - index), order.index(t) > index))
