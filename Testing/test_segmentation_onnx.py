"""The ONNX Runtime encoder path: cache keying, export equality with PyTorch, fallback."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from DTTLib.imaging.io import read_image
from DTTLib.segmentation import onnx_encoder
from DTTLib.segmentation.prepare import litemedsam_input, window_slice


def test_cache_name_is_keyed_by_the_checkpoint_sha256(tmp_path, monkeypatch):
    monkeypatch.setenv("DTT_CACHE_DIR", str(tmp_path / "c"))
    a, b, a_copy = tmp_path / "a.pth", tmp_path / "b.pth", tmp_path / "a_copy.pth"
    a.write_bytes(b"weights-1" * 1000)
    b.write_bytes(b"weights-2" * 1000)
    a_copy.write_bytes(a.read_bytes())
    path_a = onnx_encoder.encoder_path(a)
    assert path_a.parent == tmp_path / "c" / "onnx"
    assert hashlib.sha256(a.read_bytes()).hexdigest()[:16] in path_a.name
    assert onnx_encoder.encoder_path(a_copy) == path_a          # content, not file name
    assert onnx_encoder.encoder_path(b) != path_a
    monkeypatch.delenv("DTT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert onnx_encoder.cache_dir() == tmp_path / "xdg" / "DigitalTwinTumor" / "onnx"


def test_exported_small_network_matches_torch_and_batches(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.GELU(),
                              torch.nn.Conv2d(8, 4, 1)).eval()
    path = onnx_encoder.export_encoder(net, tmp_path / "n.onnx", size=32)
    assert path.is_file() and not list(tmp_path.glob("*.part"))   # atomic: no leftovers
    session = onnx_encoder.OnnxEncoder(path, threads=1)
    x = np.random.default_rng(1).random((3, 3, 32, 32), dtype=np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    got = session(x)                                              # dynamic batch of 3
    assert got.shape == (3, 4, 16, 16)
    assert np.abs(got - expected).max() < 1e-5


def test_corrupt_cache_file_is_exported_again(tmp_path):
    net = torch.nn.Conv2d(3, 2, 1).eval()
    checkpoint = tmp_path / "w.pth"
    checkpoint.write_bytes(b"x")
    target = onnx_encoder.encoder_path(checkpoint, tmp_path)
    target.write_bytes(b"not an onnx file")
    encoder = onnx_encoder.load_or_export(net, str(checkpoint), 1, directory=tmp_path)
    x = np.ones((1, 3, 256, 256), np.float32)
    with torch.no_grad():
        assert np.allclose(encoder(x), net(torch.from_numpy(x)).numpy(), atol=1e-6)


@pytest.fixture(scope="module")
def segmenters(tmp_path_factory):
    from DTTLib.segmentation.litemedsam import LiteMedSAMSegmenter  # noqa: PLC0415

    mp = pytest.MonkeyPatch()
    cache = tmp_path_factory.mktemp("onnx_cache")
    mp.setenv("DTT_CACHE_DIR", str(cache))
    try:
        fast = LiteMedSAMSegmenter(device="cpu", encoder="onnx")   # exports the real encoder
        assert fast._onnx.path.parent == cache / "onnx" and fast._onnx.path.stat().st_size > 10e6
        reference = LiteMedSAMSegmenter(device="cpu", encoder="torch")
    finally:
        mp.undo()
    return fast, reference


def test_real_encoder_onnx_equals_pytorch_within_tolerance(segmenters, shared_data):
    """Stated tolerance: embedding max |Δ| ≤ 1e-4 (values are O(1)); decoded masks Dice ≥ 0.999."""
    fast, reference = segmenters
    assert fast.encoder_backend == "onnxruntime" and reference.encoder_backend == "torch"
    image = read_image(shared_data / "imaging" / "brain1_image.nrrd").array
    label = read_image(shared_data / "imaging" / "brain1_label.nrrd").array > 0
    for k in (13, 16):
        rgb = window_slice(image[k])
        x = litemedsam_input(rgb)[0][None]
        a, b = fast._encode_array(x).numpy(), reference._encode_array(x).numpy()
        assert a.shape == (1, 256, 64, 64)
        assert np.abs(a - b).max() <= 1e-4 < np.abs(b).max()
        jj, ii = np.nonzero(label[k])
        box = (ii.min() - 2, jj.min() - 2, ii.max() + 2, jj.max() + 2)
        ma, mb = fast.decode(fast.encode(rgb), box).mask, reference.decode(reference.encode(rgb), box).mask
        assert 2 * (ma & mb).sum() / (ma.sum() + mb.sum()) >= 0.999
        assert 2 * (ma & label[k]).sum() / (ma.sum() + label[k].sum()) > 0.75   # it is the lesion


def test_falls_back_to_pytorch_when_onnx_is_unavailable(monkeypatch):
    from DTTLib.errors import MissingDependencyError  # noqa: PLC0415
    from DTTLib.segmentation.litemedsam import LiteMedSAMSegmenter  # noqa: PLC0415

    def unavailable(*args, **kwargs):
        raise onnx_encoder.OnnxUnavailable("onnxruntime is not installed")

    def no_openvino(*args, **kwargs):
        raise onnx_encoder.OnnxUnavailable("openvino is not installed")

    monkeypatch.setattr(onnx_encoder, "load_or_export", unavailable)
    monkeypatch.setattr(onnx_encoder, "load_openvino", no_openvino)
    segmenter = LiteMedSAMSegmenter(device="cpu")
    assert segmenter.encoder_backend == "torch" and "onnxruntime is not installed" in segmenter.encoder_note
    assert "openvino is not installed" in segmenter.encoder_note
    x = np.zeros((1, 3, 256, 256), np.float32)
    assert segmenter._encode_array(x).shape == (1, 256, 64, 64)
    with pytest.raises(MissingDependencyError, match="ONNX encoder requested"):
        LiteMedSAMSegmenter(device="cpu", encoder="onnx")
