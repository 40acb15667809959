"""One lesion on every frame of a series (a 4-D sequence, or any list of scans) from one ROI.

Users segment a lesion on one frame and want it on all of them. The ROI is fixed in RAS
millimetres, so each frame gets the voxel box the ROI covers on *its* grid (frames may differ
in geometry), and each frame is segmented exactly as the single-frame "Segment lesion (3D)"
does (:func:`DTTLib.segmentation.scene.compute_lesion`). A frame the ROI misses, or where the
model finds nothing, is recorded with the reason and the series goes on; no frame's result is
ever borrowed from a neighbour. No MRML here: the module reads the frames' voxels on the GUI
thread, this runs in a worker, and ``DTTLib.mrml.sequences`` stores the results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from DTTLib.errors import DTTError
from DTTLib.measurement.diameters import LesionMeasurement, measure_lesion
from DTTLib.segmentation.scene import ComputedLesion, compute_lesion


@dataclass(frozen=True)
class FrameResult:
    """One frame's lesion: its mask and measurements, or why there is none."""

    frame: int
    label: str
    computed: ComputedLesion | None
    measurement: LesionMeasurement | None
    problem: str = ""

    @property
    def found(self) -> bool:
        return self.measurement is not None


@dataclass(frozen=True)
class SeriesResult:
    frames: list[FrameResult]
    cancelled: bool = False

    @property
    def found(self) -> int:
        return sum(frame.found for frame in self.frames)


def segment_frames(images: Sequence[tuple[str, Any]], ras_low: Any, ras_high: Any, segmenter: Any,
                   mode: str = "3d", organ: str = "", refine_edges: bool | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   should_cancel: Callable[[], bool] | None = None) -> SeriesResult:
    """Segment the lesion in the RAS box [``ras_low``, ``ras_high``] on every ``(label, image)``.

    ``progress(done, total)`` counts slices over all frames (each frame's slab is the same
    size); ``should_cancel`` is checked between slices and frames, and the frames finished so
    far are returned with ``cancelled=True``."""
    from DTTLib.segmentation.box import voxel_box_from_ras  # noqa: PLC0415

    cancel = should_cancel or (lambda: False)
    results: list[FrameResult] = []
    total = len(images)
    for n, (label, image) in enumerate(images):
        if cancel():
            return SeriesResult(results, cancelled=True)

        def frame_progress(done: int, count: int, n: int = n) -> None:
            if progress is not None:
                progress(n * count + done, total * count)

        try:
            box = voxel_box_from_ras(image, np.asarray(ras_low, float), np.asarray(ras_high, float))
            computed = compute_lesion(image, box, segmenter, mode, frame_progress, cancel, organ, refine_edges)
        except DTTError as error:  # this frame only: e.g. the ROI lies outside a frame that moved
            results.append(FrameResult(n, label, None, None, error.message))
            continue
        if computed.cancelled:
            return SeriesResult(results, cancelled=True)
        if not computed.mask.any():
            results.append(FrameResult(n, label, computed, None, "the model found no lesion in the ROI"))
            continue
        results.append(FrameResult(n, label, computed, measure_lesion(computed.mask, image)))
    return SeriesResult(results)
