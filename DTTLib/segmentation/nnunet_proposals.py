"""From an nnU-Net label map to lesion proposals: one per 3-D connected component, measured.

nnU-Net gives one blob per label ("tumour"); RECIST and the tracker need one record per
lesion. Each 26-connected component of a lesion label becomes a :class:`LesionProposal` with
the same measurements a box-prompted lesion gets (volume, longest diameter, short axis,
centroid) and a confidence — the mean lesion probability inside it. Components below
``min_volume_mm3`` are dropped and counted (speckle, not lesions).

Proposals are never stored by themselves: callers show them (``dtt segment`` prints them, the
Slicer module adds them as proposal segments) and the user — or ``dtt run`` with its
confirmation rule — accepts, edits or rejects each one. ``box`` is a ready MedSAM prompt for
refining a proposal; ``observations`` hands accepted ones to the tracker.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from DTTLib.imaging.volume import ImageVolume
from DTTLib.segmentation.box import VoxelBox

DEFAULT_MIN_VOLUME_MM3 = 10.0


@dataclass(frozen=True)
class LesionProposal:
    proposal_id: str                    # "P1", "P2", … by decreasing volume
    component: int                      # its value in ProposalSet.components
    label: int                          # nnU-Net label value
    label_name: str
    voxels: int
    volume_mm3: float
    longest_diameter_mm: float | None
    short_axis_mm: float | None
    diameter_slice: int | None
    centroid_ras: tuple[float, float, float]
    box: VoxelBox                       # tight inclusive bounds: a MedSAM box prompt
    slices: tuple[int, int]
    confidence: float                   # mean lesion probability inside the component
    max_probability: float
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["box_ijk"] = [self.box.i0, self.box.j0, self.box.k0, self.box.i1, self.box.j1, self.box.k1]
        del record["box"]
        record["slices"] = list(self.slices)
        record["centroid_ras"] = list(self.centroid_ras)
        record["notes"] = list(self.notes)
        return record


@dataclass
class ProposalSet:
    """Proposals of one scan, with the arrays they came from (on the image grid)."""

    components: np.ndarray              # int32 (k, j, i): 0 none, n = component n
    probabilities: np.ndarray           # float32 (k, j, i) lesion probability
    proposals: list[LesionProposal]
    dropped_small: int = 0
    model: str = ""
    device: str = ""
    note: str = ""
    cancelled: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    def mask(self, proposal: LesionProposal | str) -> np.ndarray:
        """bool (k, j, i) mask of one proposal."""
        if isinstance(proposal, str):
            proposal = next(p for p in self.proposals if p.proposal_id == proposal)
        return self.components == proposal.component

    def label_map(self) -> np.ndarray:
        """uint16 (k, j, i): n = the n-th proposal (P<n>), 0 elsewhere."""
        out = np.zeros(self.components.shape, np.uint16)
        for n, proposal in enumerate(self.proposals, start=1):
            out[self.components == proposal.component] = n
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "device": self.device, "note": self.note, "cancelled": self.cancelled,
                "proposals": [p.to_dict() for p in self.proposals], "dropped_small": self.dropped_small,
                "timings": dict(self.timings)}


def _crop(image: ImageVolume, box: VoxelBox) -> ImageVolume:
    """The image inside ``box`` with its true position (origin moved, direction and spacing kept)."""
    origin = (image.ijk_to_ras() @ np.array([box.i0, box.j0, box.k0, 1.0]))[:3]
    return ImageVolume(np.zeros(tuple(reversed(box.size)), np.uint8), image.spacing, tuple(origin), image.direction)


def _measure(mask: np.ndarray, image: ImageVolume, box: VoxelBox) -> tuple[Any, tuple[str, ...]]:
    from DTTLib.measurement.diameters import measure_lesion  # noqa: PLC0415

    try:
        return measure_lesion(mask[box.slices()].astype(np.uint8), _crop(image, box)), ()
    except Exception as error:  # noqa: BLE001 - a proposal is still useful without its diameters
        return None, (f"diameters not measured: {getattr(error, 'message', error)}",)


def make_proposals(labels: np.ndarray, probabilities: np.ndarray, image: ImageVolume,
                   lesion_labels: tuple[int, ...], label_names: dict[int, str] | None = None,
                   min_volume_mm3: float = DEFAULT_MIN_VOLUME_MM3, connectivity: int = 26) -> ProposalSet:
    """Split every lesion label into 3-D connected components and measure each."""
    from DTTLib.measurement.basic import voxel_volume_mm3  # noqa: PLC0415

    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype=np.float32)
    if labels.shape != image.array.shape or probabilities.shape != image.array.shape:
        from DTTLib.errors import GeometryError  # noqa: PLC0415

        raise GeometryError(f"labels {labels.shape} / probabilities {probabilities.shape} do not match "
                            f"the image {image.array.shape}", "predict on this image's grid")
    structure = ndimage.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])
    voxel_mm3 = voxel_volume_mm3(image)
    components = np.zeros(labels.shape, np.int32)
    found: list[tuple[int, int, tuple[slice, ...]]] = []  # (component, label, bounding slices)
    next_id = 0
    for label in lesion_labels:
        numbered, count = ndimage.label(labels == label, structure)
        for index, bounds in enumerate(ndimage.find_objects(numbered), start=1):
            if bounds is None:
                continue
            inside = numbered[bounds] == index
            next_id += 1
            components[bounds][inside] = next_id
            found.append((next_id, int(label), bounds))
    records, dropped = [], 0
    for component, label, bounds in found:
        inside = components[bounds] == component
        voxels = int(inside.sum())
        if voxels * voxel_mm3 < min_volume_mm3:
            components[bounds][inside] = 0
            dropped += 1
            continue
        ks, js, is_ = (slice_.start for slice_ in bounds)
        ke, je, ie = (slice_.stop - 1 for slice_ in bounds)
        box = VoxelBox(is_, js, ks, ie, je, ke)
        mask = components == component
        measured, notes = _measure(mask, image, box)
        inside_probabilities = probabilities[bounds][inside]
        k, j, i = np.nonzero(inside)
        centroid = image.ijk_to_ras() @ np.array([i.mean() + is_, j.mean() + js, k.mean() + ks, 1.0])
        records.append(dict(
            component=component, label=label, label_name=(label_names or {}).get(label, str(label)),
            voxels=voxels, volume_mm3=voxels * voxel_mm3,
            longest_diameter_mm=float(measured.longest_diameter_mm) if measured else None,
            short_axis_mm=float(measured.short_axis_mm) if measured else None,
            diameter_slice=int(measured.slice_index) + ks if measured else None,
            centroid_ras=tuple(float(v) for v in centroid[:3]), box=box, slices=(ks, ke),
            confidence=float(inside_probabilities.mean()), max_probability=float(inside_probabilities.max()),
            notes=notes + (tuple(measured.notes) if measured else ())))
    records.sort(key=lambda r: (-r["volume_mm3"], r["component"]))
    proposals = [LesionProposal(proposal_id=f"P{n}", **record) for n, record in enumerate(records, start=1)]
    return ProposalSet(components, probabilities, proposals, dropped)


def observations(proposal_set: ProposalSet, image: ImageVolume, timepoint: int,
                 accepted: list[str] | None = None) -> list[Any]:
    """Tracker records (:class:`DTTLib.tracking.LesionObservation`) of the accepted proposals."""
    from DTTLib.tracking.track import observation_from_mask  # noqa: PLC0415

    chosen = [p for p in proposal_set.proposals if accepted is None or p.proposal_id in accepted]
    return [observation_from_mask(p.proposal_id, timepoint, proposal_set.mask(p), image) for p in chosen]


def find_lesions(segmenter: Any, image: ImageVolume, min_volume_mm3: float = DEFAULT_MIN_VOLUME_MM3,
                 progress: Any = None, should_cancel: Any = None) -> ProposalSet:
    """nnU-Net on the whole scan → measured proposals (none stored: the caller decides)."""
    import time  # noqa: PLC0415

    prediction = segmenter.predict(image, progress=progress, should_cancel=should_cancel)
    started = time.perf_counter()
    if prediction.cancelled:
        result = ProposalSet(np.zeros(image.array.shape, np.int32), prediction.probabilities, [], 0)
    else:
        result = make_proposals(prediction.labels, prediction.probabilities, image, prediction.lesion_labels,
                                prediction.label_names, min_volume_mm3)
    result.model = getattr(getattr(segmenter, "model", None), "model_id", segmenter.name)
    result.device, result.note, result.cancelled = prediction.device, prediction.note, prediction.cancelled
    result.timings = {**prediction.timings, "proposals_s": time.perf_counter() - started}
    return result


__all__ = ["DEFAULT_MIN_VOLUME_MM3", "LesionProposal", "ProposalSet", "find_lesions", "make_proposals",
           "observations"]
