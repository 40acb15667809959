"""Lesion embeddings: crops, MedSigLIP-style model via the real loader, masked pooling fallback."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_models import save_tiny_siglip

from DTTLib.embeddings import cosine_similarity, embed_crops, embedding_dim, lesion_crop, pooled_embedding
from DTTLib.errors import InputError
from DTTLib.models.loaders import load_embedding_model
from DTTLib.models.precision import LoadPlan


def _slice_with_lesion(cy=40, cx=60, r=8):
    yy, xx = np.mgrid[:100, :120]
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    image = np.where(mask, 200.0, 50.0) + np.random.default_rng(0).normal(0, 5, mask.shape)
    return image, mask


def test_crop_is_centred_on_the_lesion():
    image, mask = _slice_with_lesion()
    crop = lesion_crop(image, mask, size=64)
    assert crop.shape == (64, 64, 3) and 0 <= crop.min() and crop.max() <= 1
    centre, corner = crop[28:36, 28:36, 0].mean(), crop[:6, :6, 0].mean()
    assert centre > 0.8 and corner < 0.3
    with pytest.raises(InputError):
        lesion_crop(image, np.zeros_like(mask))


def test_siglip_embeddings_batched_equal_single(tmp_path):
    model, _ = load_embedding_model(save_tiny_siglip(tmp_path / "siglip"), LoadPlan("fp32", "cpu"))
    image, mask = _slice_with_lesion()
    crops = [lesion_crop(image, mask, 32), lesion_crop(image[::-1], mask[::-1], 32), lesion_crop(image.T, mask.T, 32)]
    batched = embed_crops(model, crops, batch_size=2)
    single = np.concatenate([embed_crops(model, [c], batch_size=1) for c in crops])
    assert batched.shape == (3, embedding_dim(model)) == (3, 48)
    np.testing.assert_allclose(batched, single, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1, atol=1e-5)
    assert embed_crops(model, []).shape == (0, 48)


def test_pooled_fallback_averages_features_inside_the_mask():
    features = np.zeros((4, 8, 8), dtype=np.float32)
    features[0, :4, :4] = 1.0  # channel 0 lights up where the lesion is
    features[1] = 1.0
    mask = np.zeros((64, 64), bool)
    mask[:32, :32] = True
    vec = pooled_embedding(features[None], mask)
    expected = np.array([1, 1, 0, 0]) / np.sqrt(2)
    np.testing.assert_allclose(vec, expected, atol=1e-6)
    other = np.zeros((64, 64), bool)
    other[40:, 40:] = True
    assert cosine_similarity(vec, pooled_embedding(features, other))[0, 0] < 0.8
    with pytest.raises(InputError):
        pooled_embedding(features[0], mask)


def test_gpu_benchmark_runs_tiny_on_cpu(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_narrative.py"
    spec = importlib.util.spec_from_file_location("gpu_narrative", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = module.main(["--tiny", "--json", str(tmp_path / "r.json")])
    assert report["decode"]["plain"]["new_tokens"] == 10 and report["decode"]["plain"]["decode_tok_s"] > 0
    assert report["decode"]["fast_eager"].get("new_tokens") == 10
    assert json.loads((tmp_path / "r.json").read_text())["siglip"]["embedding_dim"] == 32
