"""MedSAM ViT-B backend on a tiny random SamModel, checked against SamProcessor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import save_tiny_sam
from transformers import SamImageProcessor, SamModel, SamProcessor

from DTTLib.errors import InputError, MissingDependencyError
from DTTLib.segmentation.backend import BoxPromptSegmenter
from DTTLib.segmentation.medsam_vitb import MedSAMViTB, bicubic_weights


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_sam(tmp_path_factory.mktemp("medsam_tiny"))


@pytest.fixture(scope="module")
def segmenter(tiny_dir):
    return MedSAMViTB(tiny_dir, device="cpu")


def medsam_processor() -> SamProcessor:
    """SamProcessor as MedSAM's preprocessor_config.json sets it up."""
    return SamProcessor(image_processor=SamImageProcessor(
        do_normalize=False, do_rescale=True, rescale_factor=1 / 255, resample=3,
        size={"longest_edge": 1024}, do_pad=True, pad_size={"height": 1024, "width": 1024},
        image_mean=[0, 0, 0], image_std=[1, 1, 1]))


def _slice(shape, seed):
    rng = np.random.default_rng(seed)
    rows, cols = shape
    j, i = np.mgrid[:rows, :cols]
    blob = 200.0 * np.exp(-(((i - cols * 0.45) / (cols * 0.15)) ** 2 + ((j - rows * 0.55) / (rows * 0.2)) ** 2))
    gray = np.clip(blob + rng.normal(30, 25, shape), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


@pytest.mark.parametrize("shape", [(200, 300), (512, 512), (1100, 700)])
def test_preprocessing_and_boxes_match_samprocessor(segmenter, shape):
    image = _slice(shape, seed=shape[0])
    box = (0.2 * shape[1], 0.3 * shape[0], 0.7 * shape[1], 0.8 * shape[0])
    reference = medsam_processor()(images=image, input_boxes=[[list(box)]], return_tensors="pt")
    ours = segmenter.preprocess(image)
    assert ours.shape == reference["pixel_values"].shape == (1, 3, 1024, 1024)
    levels = (ours - reference["pixel_values"]).abs() * 255
    # same kernel (antialiased bicubic a=-0.5); SamProcessor's CPU path rounds in fixed point
    assert float(levels.max()) <= 2.0 + 1e-3
    assert float((levels > 0.5).float().mean()) <= 0.01
    assert float(ours.min()) >= 0.0 and float(ours.max()) <= 1.0  # no mean/std normalisation
    rows, cols = [int(v) for v in reference["reshaped_input_sizes"][0]]
    assert segmenter.resized_shape(shape) == (rows, cols)
    padded = torch.ones(1024, 1024, dtype=torch.bool)
    padded[:rows, :cols] = False
    assert not bool(ours[0][:, padded].any())                  # zero padding, bottom/right only
    assert bool(ours[0, :, :rows, :cols].any(dim=0)[-1].any())  # the image reaches its last row
    assert np.allclose(segmenter.scale_box(box, shape).numpy(), reference["input_boxes"][0, 0].numpy(),
                       atol=1e-4)


def test_bicubic_weights_are_a_partition_of_unity_and_exact_at_scale_one():
    for n_in, n_out in ((200, 683), (1100, 1024), (7, 3)):
        weights = bicubic_weights(n_in, n_out)
        assert weights.shape == (n_out, n_in)
        assert np.allclose(weights.sum(axis=1), 1.0, atol=1e-6)
    assert np.allclose(bicubic_weights(64, 64), np.eye(64), atol=1e-7)


def test_cached_embedding_decode_equals_full_forward(segmenter, tiny_dir):
    assert isinstance(segmenter, BoxPromptSegmenter)
    model = SamModel.from_pretrained(tiny_dir).eval()
    processor = medsam_processor()
    shape = (200, 300)
    image = _slice(shape, seed=1)
    embedding = segmenter.encode(image)
    for box in ((60, 50, 200, 160), (10, 20, 120, 90)):
        prediction = segmenter.decode(embedding, box)
        assert prediction.mask.shape == shape and prediction.mask.dtype == bool
        inputs = processor(images=image, input_boxes=[[list(box)]], return_tensors="pt")
        with torch.inference_mode():
            out = model(pixel_values=segmenter.preprocess(image), input_boxes=inputs["input_boxes"].float(),
                        multimask_output=False)
        masks = processor.image_processor.post_process_masks(
            out.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"])[0][0, 0].numpy()
        assert masks.shape == shape
        agreement = float((masks == prediction.mask).mean())
        assert agreement >= 0.999, agreement
        assert prediction.score == pytest.approx(float(out.iou_scores[0, 0, 0]), abs=1e-4)
    # batched encoding gives the same embeddings as one at a time
    other = _slice((300, 200), seed=2)
    segmenter.clear_cache()  # else the batch would return the cached embedding of ``image``
    batch = segmenter.encode_batch([image, other])
    assert [e.original_shape for e in batch] == [shape, (300, 200)]
    assert torch.allclose(batch[0].features, embedding.features, atol=1e-4)
    assert segmenter.decode(batch[1], (20, 30, 150, 250)).mask.shape == (300, 200)


def test_embeddings_are_cached_per_slice_so_a_moved_box_runs_only_the_decoder(segmenter, monkeypatch):
    segmenter.clear_cache()
    image, other = _slice((120, 90), seed=5), _slice((120, 90), seed=6)
    encoded = []
    original = segmenter.model.get_image_embeddings
    monkeypatch.setattr(segmenter.model, "get_image_embeddings",
                        lambda **kw: encoded.append(len(kw["pixel_values"])) or original(**kw))
    assert not segmenter.is_encoded(image)
    first = segmenter.encode(image)
    hits = segmenter.cache_hits
    assert segmenter.is_encoded(image) and segmenter.cache_hits == hits  # asking does not count
    assert segmenter.encode(image) is first and segmenter.cache_hits == hits + 1
    both = segmenter.encode_batch([other, image])  # only the new slice goes through the encoder
    assert encoded == [1, 1] and both[1] is first
    assert segmenter.decode(first, (10, 10, 60, 80)).mask.shape == (120, 90)


def test_bf16_casts_pixels_to_the_model_dtype(tiny_dir):
    half = MedSAMViTB(tiny_dir, device="cpu", dtype="bf16")
    assert next(half.model.parameters()).dtype == torch.bfloat16
    embedding = half.encode(_slice((128, 160), seed=3))
    assert embedding.features.dtype == torch.bfloat16
    assert half.decode(embedding, (20, 30, 100, 110)).mask.shape == (128, 160)


def test_falling_back_to_the_cpu_gives_the_fp32_model(tiny_dir):
    """After a GPU out-of-memory on one slice (CachedEncoding, tested with LiteMedSAM) a bf16 model
    labelled cuda (no GPU here) continues on the CPU in fp32: same embedding as the fp32 model, and
    nothing cached on the old device is reused."""
    image = _slice((96, 120), seed=8)
    reference = MedSAMViTB(tiny_dir, device="cpu").encode(image)
    model = MedSAMViTB(tiny_dir, device="cpu", dtype="bf16")
    model.encode(image)
    assert model.is_encoded(image) and model.__dict__.get("_weight_cache")
    model.device = "cuda"
    assert model._fall_back_to_cpu() is True
    assert model.device == "cpu" and model.dtype == torch.float32 and not model.is_encoded(image)
    assert next(model.model.parameters()).dtype == torch.float32 and not model.__dict__.get("_weight_cache")
    torch.testing.assert_close(model.encode(image).features, reference.features)
    assert model._fall_back_to_cpu() is False  # already on the CPU: the caller raises a clear error


def test_missing_weights_and_bad_input_name_the_fix(tmp_path, tiny_dir, segmenter):
    with pytest.raises(MissingDependencyError, match="does not exist.*medsam-vit-base"):
        MedSAMViTB(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text((tiny_dir / "config.json").read_text())
    with pytest.raises(MissingDependencyError, match="no weights.*model manager"):
        MedSAMViTB(tmp_path)
    with pytest.raises(InputError, match="uint8"):
        segmenter.encode(np.zeros((10, 10), np.uint8))
    with pytest.raises(InputError, match="x0 <= x1"):
        segmenter.decode(segmenter.encode(_slice((64, 64), seed=4)), (50, 10, 20, 40))
    with pytest.raises(InputError, match="precision"):
        MedSAMViTB(tiny_dir, dtype="int4")
