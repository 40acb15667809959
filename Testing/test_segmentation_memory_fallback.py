"""GPU out-of-memory while encoding slices: the batch is halved (and stays halved), one slice that
does not fit moves the model to the CPU when the backend can, else a clear error. No GPU here, so
the out-of-memory error is raised by a wrapper around the real encoder, exactly as torch raises it;
everything else — the real LiteMedSAM encoder, the cache, the retry — is the real code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from DTTLib.errors import ResourceError
from DTTLib.imaging.io import read_image
from DTTLib.segmentation.backend import SliceEmbedding
from DTTLib.segmentation.embedding_cache import CachedEncoding
from DTTLib.segmentation.prepare import slice_for_model


def out_of_memory() -> torch.OutOfMemoryError:
    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


@pytest.fixture(scope="module")
def brain_slices(shared_data) -> list[np.ndarray]:
    image = read_image(shared_data / "imaging" / "brain1_image.nrrd")
    return [slice_for_model(image.array[k], "slice", (0.0, 0.0)) for k in range(12, 17)]


@pytest.fixture(scope="module")
def segmenter():
    from DTTLib.segmentation.litemedsam import LiteMedSAMSegmenter

    return LiteMedSAMSegmenter(device="cpu", threads=2)


def test_batches_are_halved_until_they_fit_and_stay_halved(segmenter, brain_slices):
    reference = [segmenter._encode_missing([s])[0].features[0] for s in brain_slices]
    real, sizes = segmenter._encode_missing, []

    def fits_two(chunk):
        sizes.append(len(chunk))
        if len(chunk) > 2:
            raise out_of_memory()
        return real(chunk)

    segmenter.clear_cache()
    segmenter._encode_missing = fits_two
    try:
        embeddings = segmenter.encode_batch(brain_slices)
        assert sizes == [5, 2, 2, 1] and segmenter._batch_limit == 2
        for embedding, expected in zip(embeddings, reference):
            torch.testing.assert_close(embedding.features[0], expected, rtol=1e-4, atol=1e-4)
        assert any("GPU out of memory at 5 slices" in note for note in segmenter.memory_notes)
        segmenter.clear_cache()
        sizes.clear()
        segmenter.encode_batch(brain_slices[:3])
        assert sizes == [2, 1]  # the limit learnt is kept: no second failing attempt
    finally:
        del segmenter._encode_missing
        segmenter._batch_limit = 0
        segmenter.memory_notes.clear()


def test_one_slice_that_does_not_fit_is_a_clear_error_on_a_backend_without_a_cpu_fallback(segmenter, brain_slices):
    def never_fits(chunk):
        raise out_of_memory()

    segmenter.clear_cache()
    segmenter._encode_missing = never_fits
    try:
        assert segmenter._fall_back_to_cpu() is False  # already on the CPU
        with pytest.raises(ResourceError, match="ran out of memory encoding one slice") as error:
            segmenter.encode_batch(brain_slices[:1])
        assert "choose the CPU" in error.value.fix
    finally:
        del segmenter._encode_missing


def test_other_errors_are_not_mistaken_for_memory(segmenter, brain_slices):
    def broken(chunk):
        raise RuntimeError("Input channels C is not equal to kernel channels")

    segmenter.clear_cache()
    segmenter._encode_missing = broken
    try:
        with pytest.raises(RuntimeError, match="kernel channels"):
            segmenter.encode_batch(brain_slices[:2])
        assert segmenter._batch_limit == 0
    finally:
        del segmenter._encode_missing


class GpuThenCpu(CachedEncoding):
    """A backend whose single-slice GPU encode does not fit; it can continue on the CPU."""

    def __init__(self) -> None:
        self.device = "cuda"
        self.calls: list[tuple[str, int]] = []
        self._start_cache(8)

    def _encode_missing(self, slices_rgb):
        self.calls.append((self.device, len(slices_rgb)))
        if self.device == "cuda" and len(slices_rgb) > 0 and self.calls.count(("cuda", 1)) > 1:
            raise out_of_memory()
        return [SliceEmbedding((self.device, float(s.mean())), s.shape[:2], "test") for s in slices_rgb]

    def _fall_back_to_cpu(self) -> bool:
        self.device = "cpu"
        self.clear_cache()
        return True


def test_a_slice_that_never_fits_moves_the_model_to_the_cpu_and_re_encodes_everything():
    backend = GpuThenCpu()
    slices = [np.full((8, 8, 3), value, np.uint8) for value in (10, 20, 30)]
    backend._batch_limit = 1  # as after an earlier halving down to one slice
    embeddings = backend.encode_batch(slices)
    # slice 1 fits on the GPU, slice 2 does not: everything is encoded again on the CPU
    assert backend.calls[:2] == [("cuda", 1), ("cuda", 1)] and backend.calls[2:] == [("cpu", 1)] * 3
    assert [e.features[0] for e in embeddings] == ["cpu"] * 3
    assert [e.features[1] for e in embeddings] == [10.0, 20.0, 30.0]
    assert backend.memory_notes == ["GPU out of memory for one slice: the model moved to the CPU (slower)"]


def test_a_lesion_run_reports_what_memory_changed(segmenter, shared_data):
    """compute_lesion hands the run's own memory notes to the module's status line (not older ones)."""
    from DTTLib.segmentation.box import VoxelBox
    from DTTLib.segmentation.scene import compute_lesion

    image = read_image(shared_data / "imaging" / "brain2_image.nrrd")
    box = VoxelBox(205, 155, 8, 224, 168, 8)
    real, failed = segmenter._encode_missing, []

    def first_call_does_not_fit(chunk):
        if not failed:
            failed.append(len(chunk))
            raise out_of_memory()
        return real(chunk)

    segmenter.clear_cache()
    segmenter.memory_notes.append("an older run's note")
    segmenter._encode_missing = first_call_does_not_fit
    segmenter._fall_back_to_cpu = lambda: True  # as a CUDA segmenter would: continue on the CPU
    try:
        computed = compute_lesion(image, box, segmenter)
        assert failed == [1] and computed.mask.any()
        assert computed.notes == ("GPU out of memory for one slice: the model moved to the CPU (slower)",)
        again = compute_lesion(image, box, segmenter)
        assert again.notes == () and np.array_equal(again.mask, computed.mask)
    finally:
        del segmenter._encode_missing, segmenter._fall_back_to_cpu
        segmenter.memory_notes.clear()
