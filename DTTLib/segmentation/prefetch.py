"""Encode the slices a box will need while the user is still drawing it.

Why: on a 2-core CPU the LiteMedSAM encoder costs ≈ 0.36–0.40 s per slice and cannot get much
faster in fp32 (75 GFLOP per slice against a ≈ 294 GFLOPS peak, see docs/PERFORMANCE.md), while
the decoder costs ≈ 30–50 ms per box. Placing and adjusting an ROI takes a user several
seconds; spending them on the encoder makes the click on "Segment lesion (3D)" cost mostly
decoder time. The slices are prepared exactly as :func:`.propagate.propagate_box` prepares them
(same window, organ preset and denoising), so the run finds them in the segmenter's embedding
cache (:mod:`.embedding_cache`) and its result is identical to a run without prefetching.

Order: the seed slice first, then outwards alternately (k+1, k−1, k+2, …) inside the ROI slab the
run may visit (:func:`.propagate.roi_for_box`), at most ``limit`` slices — by default half the
cache, so a prefetch never evicts what the run will read. Needs a segmenter with an embedding
cache (``is_encoded``); the "roi" window depends on the box and is not prefetched.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from DTTLib.background import BackgroundJob
from DTTLib.imaging.volume import ImageVolume
from DTTLib.segmentation.backend import BoxPromptSegmenter
from DTTLib.segmentation.box import VoxelBox, checked_box
from DTTLib.segmentation.prepare import denoise_sigma_px
from DTTLib.segmentation.propagate import PropagationSettings, model_input_slice, roi_for_box


@dataclass
class PrefetchResult:
    """What one prefetch did: ``planned`` k planes in order; ``encoded`` here; ``already`` cached."""

    planned: list[int] = field(default_factory=list)
    encoded: list[int] = field(default_factory=list)
    already: list[int] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0
    note: str = ""  # why nothing was planned, if so


def prefetch_order(center: int, k0: int, k1: int, limit: int) -> list[int]:
    """``center`` then outwards alternately (above first) within [k0, k1], at most ``limit``."""
    order = [center] if k0 <= center <= k1 else []
    for step in range(1, max(center - k0, k1 - center) + 1):
        order += [k for k in (center + step, center - step) if k0 <= k <= k1]
    return order[:max(0, limit)]


def prefetch_plan(image: ImageVolume, box: VoxelBox, settings: PropagationSettings, limit: int) -> list[int]:
    """The k planes a run from ``box`` is most likely to encode, nearest the seed first."""
    box = checked_box(box, image)
    roi = roi_for_box(image, box, settings)
    return prefetch_order(int(box.k0 + box.k1) // 2, int(roi.k0), int(roi.k1), limit)


def prefetch_slices(image: ImageVolume, box: VoxelBox, segmenter: BoxPromptSegmenter,
                    settings: PropagationSettings | None = None, limit: int | None = None,
                    progress: Callable[[int, int], None] | None = None,
                    should_cancel: Callable[[], bool] | None = None) -> PrefetchResult:
    """Encode the slices :func:`prefetch_plan` names into ``segmenter``'s cache. Cancellation is
    checked between slices (a slice being encoded finishes, ≤ one encoder call)."""
    settings = settings or PropagationSettings()
    started = time.perf_counter()
    is_encoded = getattr(segmenter, "is_encoded", None)
    if is_encoded is None:
        return PrefetchResult(note=f"{getattr(segmenter, 'name', 'this model')} keeps no embedding cache")
    if settings.window == "roi":
        return PrefetchResult(note="the 'roi' window depends on the box; slices are prepared when the run starts")
    capacity = int(getattr(segmenter, "cache_capacity", 2))
    plan = prefetch_plan(image, box, settings, capacity // 2 if limit is None else limit)
    result = PrefetchResult(planned=plan)
    array = np.asarray(image.array)
    sigma_px = denoise_sigma_px(image.spacing, settings.denoise_mm)
    for done, k in enumerate(plan):
        if should_cancel is not None and should_cancel():
            result.cancelled = True
            break
        if progress is not None:
            progress(done, len(plan))
        prepared = model_input_slice(array[k], settings, sigma_px)
        if is_encoded(prepared):
            result.already.append(k)
            continue
        segmenter.encode(prepared)
        result.encoded.append(k)
    else:
        if progress is not None:
            progress(len(plan), len(plan))
    result.seconds = time.perf_counter() - started
    return result


@dataclass(frozen=True)
class PrefetchStatus:
    """What the background prefetch is doing, for a progress line: ``done`` of ``total`` slices."""

    running: bool
    done: int = 0
    total: int = 0
    result: PrefetchResult | None = None
    error: str = ""


class PrefetchWorker:
    """At most one background prefetch: ``start`` cancels the one before, ``cancel`` stops it
    between slices (a segmentation run then waits for at most one encoder call on the
    segmenter's lock). Errors never escape the thread: they are kept in ``status().error``, since
    a prefetch is only ever a head start and the run will meet the same problem and report it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._job: BackgroundJob | None = None

    def start(self, image: ImageVolume, box: VoxelBox, segmenter: Callable[[], BoxPromptSegmenter],
              settings: PropagationSettings | None = None, limit: int | None = None) -> None:
        """Prefetch in a daemon thread. ``segmenter`` is a factory, called in that thread (loading
        a model can take seconds that the caller should not wait for)."""

        def compute(progress: Callable[..., None], should_cancel: Callable[[], bool]) -> PrefetchResult | None:
            model = segmenter()
            if should_cancel():
                return None
            return prefetch_slices(image, box, model, settings, limit, progress=progress, should_cancel=should_cancel)

        job = BackgroundJob(compute, "DTT slice prefetch")
        job.total = 0  # unknown until the plan is made
        with self._lock:
            if self._job is not None:
                self._job.cancel()
            self._job = job
        job.start()

    def cancel(self) -> None:
        with self._lock:
            if self._job is not None:
                self._job.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current prefetch ends (tests, shutdown); True when it has."""
        with self._lock:
            job = self._job
        return job is None or job.wait(timeout)

    def status(self) -> PrefetchStatus:
        with self._lock:
            job = self._job
        if job is None:
            return PrefetchStatus(running=False)
        error = "" if job.error is None else f"{type(job.error).__name__}: {job.error}"
        return PrefetchStatus(running=job.running, done=job.done, total=job.total, result=job.result, error=error)


__all__ = ["PrefetchResult", "PrefetchStatus", "PrefetchWorker", "prefetch_order", "prefetch_plan",
           "prefetch_slices"]
