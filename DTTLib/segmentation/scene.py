"""Box-prompt segmentation into the MRML scene, with the Segment Editor's overwrite rule.

Headless-testable core of the DTT Segmentation module: computing (possibly in a worker
thread) is split from storing (GUI thread), because MRML must be touched from one thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ComputedLesion:
    mask: np.ndarray        # uint8 (k, j, i) on the volume's grid
    slices: tuple[int, int] | None
    cancelled: bool
    model: str
    device: str
    outline: str = "model"  # or "model; edges refined on N of M slices" (see PropagationResult)
    notes: tuple[str, ...] = ()  # e.g. GPU memory ran out and the model moved to the CPU


@dataclass(frozen=True)
class StoredModelLesion:
    segment_id: str
    segment_name: str
    voxels: int
    volume_mm3: float
    withheld_voxels: int    # voxels other segments own and were left to them
    added_to: int = 0       # voxels the segment already held when this piece was added to it
    outside_editable: int = 0  # result voxels outside the editable area (Segment Editor masking), dropped
    taken: tuple[tuple[str, int], ...] = ()  # (other segment's name, voxels it gave up to this one)
    masking: str = ""       # the masking applied, in words (Masking.describe)
    #: RECIST measurements of what the segment now holds (DTTLib.measurement LesionMeasurement), with
    #: its LD/SA line markups and a row in the measurements table; None when the segment is empty
    measurement: Any = None


def lesion_settings(image: Any, mode: str = "3d", organ: str = "", refine_edges: bool | None = None) -> Any:
    """The propagation settings :func:`compute_lesion` uses for this scan, lesion organ and mode
    ("slice" never leaves the box's slice) — also what the module's background slice
    preparation (prefetch.py) must use, or its slices would not be the ones the run asks for."""
    from DTTLib.segmentation.propagate import settings_for_scan  # noqa: PLC0415

    if mode == "slice":
        return settings_for_scan(image.modality, organ, refine_edges, slab_extent=0.0)
    return settings_for_scan(image.modality, organ, refine_edges)


def compute_lesion(image: Any, box: Any, segmenter: Any, mode: str = "3d",
                   progress: Callable[[int, int], None] | None = None,
                   should_cancel: Callable[[], bool] | None = None, organ: str = "",
                   refine_edges: bool | None = None) -> ComputedLesion:
    """``mode`` "slice": only the box's middle slice; "3d": propagate (see propagate.py).

    Slices are windowed and denoised, and outlines moved to the intensity edge, by the rules for the scan's
    modality (``image.metadata["dicom"]["Modality"]``, set from the volume node) and the
    lesion's organ (window_presets.json); ``refine_edges`` True/False overrides the edge rule
    (e.g. a CT volume loaded from a file without its modality)."""
    from DTTLib.segmentation.box import VoxelBox  # noqa: PLC0415
    from DTTLib.segmentation.propagate import propagate_box  # noqa: PLC0415

    if mode == "slice":
        k = (box.k0 + box.k1) // 2
        box = VoxelBox(box.i0, box.j0, k, box.i1, box.j1, k)
    settings = lesion_settings(image, mode, organ, refine_edges)
    earlier_notes = len(getattr(segmenter, "memory_notes", ()))
    result = propagate_box(image, box, segmenter, settings, progress=progress, should_cancel=should_cancel)
    return ComputedLesion(result.mask, result.slices, result.cancelled, segmenter.name, str(segmenter.device),
                          result.outline, tuple(getattr(segmenter, "memory_notes", ())[earlier_notes:]))


def recompute_from_outline(image: Any, k: int, outline: np.ndarray, segmenter: Any,
                           progress: Callable[[int, int], None] | None = None,
                           should_cancel: Callable[[], bool] | None = None, organ: str = "",
                           refine_edges: bool | None = None, guide: np.ndarray | None = None) -> ComputedLesion:
    """Re-propagate a lesion from the outline on slice ``k`` (e.g. the segment after the user
    corrected that slice in the Segment Editor): that slice is kept exactly as drawn, the others
    are segmented again from it, by the same rules as from a box.

    ``guide`` (the lesion's 3-D mask before the correction): on each slice the prompt covers the
    earlier outline too, and growth/overlap are judged against it, so propagating from a smaller
    slice towards the lesion's widest one is not cut short by the small slice's box — the
    box-prompt model under-segments when the box cuts through the lesion."""
    from DTTLib.segmentation.propagate import box_around_outline, propagate_box, settings_for_scan  # noqa: PLC0415

    outline = np.asarray(outline) > 0
    box = box_around_outline(outline, k)
    result = propagate_box(image, box, segmenter, settings_for_scan(image.modality, organ, refine_edges),
                           progress=progress, should_cancel=should_cancel, seed_mask=outline,
                           guide=None if guide is None else np.asarray(guide) > 0)
    return ComputedLesion(result.mask, result.slices, result.cancelled, segmenter.name, str(segmenter.device),
                          f"{result.outline}; slice {k} as drawn")


def owned_by_others(segmentation_node: Any, segment_name: str, reference_volume_node: Any,
                    region: tuple[slice, slice, slice] | None = None) -> np.ndarray:
    """bool (k, j, i): voxels that segments other than ``segment_name`` already hold — on the whole
    grid, or only inside ``region`` (then the array has the region's shape; much faster)."""
    from DTTLib.mrml.segmentations import list_segments, segment_masks_in_region  # noqa: PLC0415

    if region is None:
        dims = reference_volume_node.GetImageData().GetDimensions()
        region = tuple(slice(0, n) for n in reversed(dims))  # type: ignore[assignment]
    ids = [info.segment_id for info in list_segments(segmentation_node) if info.name != segment_name]
    owned = np.zeros(tuple(sl.stop - sl.start for sl in region), dtype=bool)  # type: ignore[union-attr]
    for mask in segment_masks_in_region(segmentation_node, reference_volume_node, region, ids).values():
        owned |= mask
    return owned


def store_lesion(computed: ComputedLesion, image: Any, volume_node: Any, segmentation_node: Any,
                 lesion_id: str, timepoint_label: str, overwrite_others: bool = False,
                 scene: Any = None, add_to_existing: bool = False, masking: Any = None) -> StoredModelLesion:
    """Write the mask as segment "<lesion> @ <timepoint>" with terminology, one undo step.

    ``masking`` (:class:`DTTLib.mrml.editor_masking.Masking`, e.g. the Segment Editor's settings)
    decides where the mask may go and which other segments give up voxels to it. Without it, voxels
    already owned by other segments are left to them (the editor's "overwrite: none") and counted in
    ``withheld_voxels``; ``overwrite_others`` takes them from every other segment instead. Voxels
    taken are removed from those segments in the same undo step and counted per segment in
    ``taken``; voxels outside the editable area are dropped and counted in ``outside_editable``.
    ``add_to_existing``: the mask is another piece of a lesion already segmented (a satellite
    focus one box cannot reach: propagation keeps the component containing its seed), so it is
    added to the segment instead of replacing it.
    """
    from DTTLib.measurement import mask_volume_mm3  # noqa: PLC0415
    from DTTLib.mrml.editor_masking import LEAVE_OTHERS, TAKE_FROM_ALL, editable_area, plan_write  # noqa: PLC0415
    from DTTLib.mrml.lesions import lesion_segment_name  # noqa: PLC0415
    from DTTLib.mrml.runtime import get_scene  # noqa: PLC0415
    from DTTLib.mrml.segmentations import (get_segment_mask, list_segments, segment_masks_in_region,  # noqa: PLC0415
                                           set_segment_mask)

    masking = masking or (TAKE_FROM_ALL if overwrite_others else LEAVE_OTHERS)
    name = lesion_segment_name(lesion_id, timepoint_label)
    segment_id = segmentation_node.GetSegmentation().GetSegmentIdBySegmentName(name)
    display = segmentation_node.GetDisplayNode()
    visible, names = set(), {}
    for info in list_segments(segmentation_node):
        if info.name != name:
            names[info.segment_id] = info.name
            if display is None or display.GetSegmentVisibility(info.segment_id):
                visible.add(info.segment_id)
    result = np.asarray(computed.mask) > 0
    region = bounding_region(result)  # other segments matter only where the lesion is
    others = segment_masks_in_region(segmentation_node, volume_node, region, list(names))
    editable = editable_area(segmentation_node, volume_node, masking, segment_id) if masking.restricts_area else None
    plan = plan_write(result[region], others, visible, masking, None if editable is None else editable[region])
    mask = np.zeros(result.shape, bool)
    mask[region] = plan.mask
    if computed.mask.any() and not mask.any() and not add_to_existing:
        from DTTLib.errors import InputError  # noqa: PLC0415

        raise InputError(f"none of the lesion's {int((computed.mask > 0).sum())} voxels may be written to '{name}' "
                         f"({plan.outside_editable} outside the editable area, {plan.withheld} owned by other "
                         f"segments; masking: {masking.describe()})",
                         "change the editable area or overwrite mode (Segment Editor, or this module's choice)")
    existing = 0
    if add_to_existing and segment_id:
        before = get_segment_mask(segmentation_node, segment_id, volume_node) > 0
        existing = int(before.sum())
        mask = mask | before
    (scene or get_scene()).SaveStateForUndo()
    if segmentation_node.GetNodeReference("referenceImageGeometryRef") is None:
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    segment_id = set_segment_mask(segmentation_node, mask.astype(np.uint8), name, volume_node)
    for other_id, taken in plan.takes.items():  # only segments the lesion takes voxels from are rewritten
        kept = get_segment_mask(segmentation_node, other_id, volume_node) > 0
        kept[region] &= ~taken
        set_segment_mask(segmentation_node, kept.astype(np.uint8), names[other_id], volume_node, terminology=None,
                         allow_empty=True)
    measurement = measure_stored(mask, image, lesion_id, timepoint_label, f"{computed.model} (DTT Segmentation)",
                                 scene)
    return StoredModelLesion(segment_id, name, int(mask.sum()), mask_volume_mm3(mask.astype(np.uint8), image),
                             plan.withheld, existing, plan.outside_editable,
                             tuple((names[other_id], int(taken.sum())) for other_id, taken in plan.takes.items()),
                             masking.describe(), measurement)


def bounding_region(mask: np.ndarray) -> tuple[slice, slice, slice]:
    """(k, j, i) slices of the mask's bounding box; the whole grid for an empty mask."""
    if not mask.any():
        return tuple(slice(0, n) for n in mask.shape)  # type: ignore[return-value]
    bounds = []
    for axis in range(3):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        bounds.append(slice(int(present[0]), int(present[-1]) + 1))
    return tuple(bounds)  # type: ignore[return-value]


def measure_stored(mask: np.ndarray, image: Any, lesion_id: str, timepoint_label: str, source: str,
                   scene: Any = None) -> Any:
    """RECIST measurements of a lesion's segment as stored: LD/SA lines ("<lesion> @ <tp> LD", one per
    piece of a fragmented lesion, and "… SA") placed or moved, and its row of the measurements table
    written — what the reader checks right after segmenting. None for an empty segment."""
    from DTTLib.measurement.diameters import measure_lesion  # noqa: PLC0415
    from DTTLib.mrml.measurements import store_measurement  # noqa: PLC0415

    if not np.any(mask):
        return None
    measurement = measure_lesion(np.asarray(mask, dtype=np.uint8), image)
    store_measurement(measurement, lesion_id, timepoint_label, source=source, scene=scene)
    return measurement
