"""The OpenVINO encoder path (default on CPUs): compiled-blob cache, agreement with PyTorch, fallback.

Stated tolerance (docs/PERFORMANCE.md "Speed (CPU)"), the same as for ONNX Runtime: embedding
max |Δ| ≤ 1e-4 against PyTorch eager (values are O(1)) and decoded masks Dice ≥ 0.999.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from DTTLib.imaging.io import read_image
from DTTLib.segmentation import onnx_encoder
from DTTLib.segmentation.prepare import litemedsam_input, window_slice

pytest.importorskip("openvino")


def _small_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.GELU(),
                               torch.nn.Conv2d(8, 4, 1)).eval()


def test_compiled_blob_is_written_once_and_reused(tmp_path):
    net = _small_net()
    path = onnx_encoder.export_encoder(net, tmp_path / "n.onnx", size=256)
    first = onnx_encoder.OpenVinoEncoder(path, threads=1)
    assert not first.from_cache and first.blob.is_file() and first.blob.parent == tmp_path
    assert not list(tmp_path.glob("*.part"))                             # atomic: no leftovers
    stamp = first.blob.stat().st_mtime_ns
    second = onnx_encoder.OpenVinoEncoder(path, threads=1)
    assert second.from_cache and second.blob == first.blob and first.blob.stat().st_mtime_ns == stamp
    assert onnx_encoder.OpenVinoEncoder(path, threads=2).blob != first.blob   # keyed by threads
    import openvino  # noqa: PLC0415

    assert openvino.__version__.split("-")[0] in first.blob.name          # and by the runtime version
    x = np.random.default_rng(1).random((2, 3, 256, 256), dtype=np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    for encoder in (first, second):
        got = encoder(x)                                                   # two slices, one at a time
        assert got.shape == (2, 4, 128, 128) and np.abs(got - expected).max() < 1e-5


def test_unreadable_blob_is_compiled_again(tmp_path):
    path = onnx_encoder.export_encoder(_small_net(), tmp_path / "n.onnx", size=256)
    blob = onnx_encoder.compiled_path(path, 1)
    blob.write_bytes(b"not a compiled model")
    encoder = onnx_encoder.OpenVinoEncoder(path, threads=1)
    assert not encoder.from_cache and blob.stat().st_size > 1000
    assert onnx_encoder.OpenVinoEncoder(path, threads=1).from_cache


@pytest.mark.slow
def test_real_encoder_openvino_equals_pytorch_within_tolerance(tmp_path_factory, shared_data, monkeypatch):
    from DTTLib.segmentation.litemedsam import LiteMedSAMSegmenter  # noqa: PLC0415

    monkeypatch.setenv("DTT_CACHE_DIR", str(tmp_path_factory.mktemp("ov_cache")))
    fast = LiteMedSAMSegmenter(device="cpu")                               # auto: OpenVINO first
    assert fast.encoder_backend == "openvino" and fast._onnx.blob.is_file()
    again = LiteMedSAMSegmenter(device="cpu", encoder="openvino")
    assert again._onnx.from_cache                                          # the cached model is reused
    reference = LiteMedSAMSegmenter(device="cpu", encoder="torch")
    image = read_image(shared_data / "imaging" / "brain1_image.nrrd").array
    label = read_image(shared_data / "imaging" / "brain1_label.nrrd").array > 0
    ks = (13, 16)
    rgbs = [window_slice(image[k]) for k in ks]
    x = np.stack([litemedsam_input(rgb)[0] for rgb in rgbs])
    a, b = fast._encode_array(x).numpy(), reference._encode_array(x).numpy()   # a batch of two
    assert a.shape == (2, 256, 64, 64)
    assert np.abs(a - b).max() <= 1e-4 < np.abs(b).max()
    assert np.abs(again._encode_array(x[1:]).numpy() - a[1:]).max() < 1e-6   # batch == single
    for k, rgb in zip(ks, rgbs):
        jj, ii = np.nonzero(label[k])
        box = (ii.min() - 2, jj.min() - 2, ii.max() + 2, jj.max() + 2)
        ma, mb = fast.decode(fast.encode(rgb), box).mask, reference.decode(reference.encode(rgb), box).mask
        assert 2 * (ma & mb).sum() / (ma.sum() + mb.sum()) >= 0.999
        assert 2 * (ma & label[k]).sum() / (ma.sum() + label[k].sum()) > 0.75   # it is the lesion


def test_without_openvino_auto_uses_onnxruntime_and_says_why(monkeypatch, tmp_path):
    from DTTLib.errors import MissingDependencyError  # noqa: PLC0415
    from DTTLib.segmentation.litemedsam import LiteMedSAMSegmenter  # noqa: PLC0415

    monkeypatch.setitem(sys.modules, "openvino", None)                    # import openvino → ImportError
    made = []

    def fake_onnxruntime(image_encoder, checkpoint, threads, directory=None):
        made.append(threads)
        return lambda batch: np.zeros((len(batch), 256, 64, 64), np.float32)

    monkeypatch.setattr(onnx_encoder, "load_or_export", fake_onnxruntime)
    segmenter = LiteMedSAMSegmenter(device="cpu", threads=1)
    assert made == [1] and segmenter.encoder_backend == "onnxruntime"
    assert "openvino is not installed" in segmenter.encoder_note
    with pytest.raises(MissingDependencyError, match="OpenVINO encoder requested but unavailable: "
                                                     "openvino is not installed"):
        LiteMedSAMSegmenter(device="cpu", encoder="openvino")
