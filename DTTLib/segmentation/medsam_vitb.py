"""MedSAM ViT-B (``transformers.SamModel``) as a :class:`BoxPromptSegmenter`.

Weights are read from a local folder only (``config.json`` + ``model.safetensors``, as
``save_pretrained`` writes them); fetching ``flaviagiammarino/medsam-vit-base`` into that
folder is the model manager's job, never this module's.

Preprocessing is the published MedSAM processor (its ``preprocessor_config.json``:
``do_normalize: false``, ``rescale_factor: 1/255``, ``resample: 3`` = bicubic,
``longest_edge: 1024``, pad to 1024²), done in torch on the model's device so batches stay
on the GPU: the uint8 slice is resized with Pillow's antialiased bicubic (a = -0.5; two
separable passes, each rounded to uint8 levels) as two small matrix products, scaled to
[0, 1], zero-padded at the bottom/right. ``SamProcessor`` itself is device-dependent here:
on the CPU torchvision resizes uint8 images natively with Pillow's kernel, on a GPU it
falls back to torch's float bicubic (a = -0.75), which differs by up to ~20 grey levels on
noisy images. We follow the CPU result on every device (measured: within 2 grey levels,
on under 1 % of the pixels, of ``SamProcessor`` on the CPU). Boxes are scaled
by new/old size per axis (``SamProcessor._normalize_coordinates``). Masks come back as
``SamImageProcessor.post_process_masks`` makes them: bilinear up to the padded input, crop
the padding, bilinear to the slice size, logits > 0.

Note: the original MedSAM inference script instead stretches every slice to 1024×1024
(skimage, order 3) and min–max normalises after resizing; the Hugging Face port — whose
weights we load — ships the longest-side + pad processor used here.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from DTTLib.errors import InputError, MissingDependencyError
from DTTLib.segmentation.backend import SliceEmbedding, SlicePrediction
from DTTLib.segmentation.embedding_cache import CachedEncoding

HUB_ID = "flaviagiammarino/medsam-vit-base"
BACKEND = "medsam-vitb"
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
_DTYPES = {"fp32": "float32", "float32": "float32", "fp16": "float16", "float16": "float16",
           "bf16": "bfloat16", "bfloat16": "bfloat16"}


def find_weights(folder: str | Path) -> Path:
    """The folder, if it holds a SamModel checkpoint; otherwise a MissingDependencyError."""
    folder = Path(folder).expanduser()
    fix = (f"download MedSAM ViT-B ('{HUB_ID}') with the DTT model manager, or point to a "
           "folder holding its config.json and model.safetensors")
    if not folder.is_dir():
        raise MissingDependencyError(f"MedSAM ViT-B weights folder {folder} does not exist", fix)
    if not (folder / "config.json").is_file():
        raise MissingDependencyError(f"MedSAM ViT-B folder {folder} has no config.json", fix)
    if not any((folder / name).is_file() for name in _WEIGHT_FILES):
        raise MissingDependencyError(f"MedSAM ViT-B folder {folder} has no weights "
                                     "(model.safetensors)", fix)
    return folder


def resolve_dtype(dtype: Any, device: str) -> Any:
    """torch dtype from a name ('bf16', 'fp16', 'fp32') or None: bf16 on a GPU that has it,
    else fp16 on a GPU, fp32 on the CPU (half precision on the CPU is slow and not needed)."""
    import torch  # noqa: PLC0415

    if dtype is None:
        if not device.startswith("cuda"):
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if isinstance(dtype, torch.dtype):
        return dtype
    name = _DTYPES.get(str(dtype).lower())
    if name is None:
        raise InputError(f"unknown precision '{dtype}'", "use one of fp32, fp16, bf16")
    return getattr(torch, name)


class MedSAMViTB(CachedEncoding):
    """Box-prompt MedSAM ViT-B; ``encode`` once per slice, ``decode`` any number of boxes."""

    name = BACKEND

    def __init__(self, weights_dir: str | Path, device: str = "cpu", dtype: Any = None,
                 batch_size: int = 8, cache_slices: int = 48) -> None:
        folder = find_weights(weights_dir)
        try:
            import torch  # noqa: PLC0415
            from transformers import SamModel  # noqa: PLC0415
        except ImportError as error:
            raise MissingDependencyError(f"MedSAM ViT-B needs torch and transformers ({error})",
                                         "install the segmentation extra (PyTorch extension in "
                                         "Slicer, or pip install torch transformers)") from error
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise InputError(f"device '{device}' requested but no CUDA GPU is available",
                             "use device='cpu'")
        self.device = device
        self.dtype = resolve_dtype(dtype, device)
        self.batch_size = max(1, int(batch_size))
        self.model = SamModel.from_pretrained(str(folder), dtype=self.dtype).to(device).eval()
        self.input_size = _side(self.model.config.vision_config.image_size)
        self._start_cache(cache_slices)  # moving a box re-runs only the decoder; see CachedEncoding

    def _fall_back_to_cpu(self) -> bool:
        """After a GPU out-of-memory on one slice: the model continues on the CPU in fp32."""
        import torch  # noqa: PLC0415

        if not str(self.device).startswith("cuda"):
            return False
        self.model = self.model.to("cpu", dtype=torch.float32)
        self.device, self.dtype = "cpu", torch.float32
        self.__dict__.pop("_weight_cache", None)  # resize matrices were on the GPU too
        self.clear_cache()
        return True

    # -- the protocol -------------------------------------------------------------------
    def _encode_missing(self, slices_rgb: list[np.ndarray]) -> list[SliceEmbedding]:
        """Embeddings in batches of ``batch_size`` (the cache and the lock are CachedEncoding's)."""
        import torch  # noqa: PLC0415

        out: list[SliceEmbedding] = []
        for start in range(0, len(slices_rgb), self.batch_size):
            chunk = slices_rgb[start:start + self.batch_size]
            pixels = torch.cat([self.preprocess(s) for s in chunk]).to(self.dtype)
            with torch.inference_mode():
                features = self.model.get_image_embeddings(pixel_values=pixels)
            out.extend(SliceEmbedding(features[n:n + 1], tuple(s.shape[:2]), BACKEND) for n, s in enumerate(chunk))
        return out

    def decode(self, embedding: SliceEmbedding,
               box_xyxy: tuple[float, float, float, float]) -> SlicePrediction:
        import torch  # noqa: PLC0415

        if embedding.backend != BACKEND:
            raise InputError(f"embedding from '{embedding.backend}' given to {BACKEND}",
                             "encode the slice with the same model that decodes it")
        boxes = self.scale_box(box_xyxy, embedding.original_shape)
        with self._inference, torch.inference_mode():
            output = self.model(image_embeddings=embedding.features,
                                input_boxes=boxes.to(self.device)[None, None],  # fp32: bf16 would round coordinates
                                multimask_output=False)
        mask = self.postprocess_masks(output.pred_masks[:, 0], embedding.original_shape)[0, 0]
        return SlicePrediction(mask.cpu().numpy(), float(output.iou_scores[0, 0, 0].float()))

    # -- the MedSAM processor, in torch ---------------------------------------------------
    def resized_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """(rows, columns) after scaling the longest side to the input size (HF rounding)."""
        rows, cols = shape
        scale = self.input_size / max(rows, cols)
        return int(rows * scale + 0.5), int(cols * scale + 0.5)

    def preprocess(self, slice_rgb: np.ndarray) -> Any:
        """(1, 3, S, S) float32 on the device: bicubic longest side → S, [0, 1], zero pad."""
        import torch  # noqa: PLC0415
        import torch.nn.functional as F  # noqa: PLC0415

        array = np.asarray(slice_rgb)
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
            raise InputError(f"slice for {BACKEND} has shape {array.shape} and type {array.dtype}",
                             "pass a uint8 (rows, columns, 3) slice, e.g. from window_slice()")
        image = torch.from_numpy(np.ascontiguousarray(array)).to(self.device)
        image = image.permute(2, 0, 1).float()
        rows, cols = self.resized_shape(array.shape[:2])
        if cols != array.shape[1]:  # horizontal pass first, rounded to uint8 levels, like PIL
            weights = self._weights(array.shape[1], cols)
            image = (image @ weights.T).clamp_(0, 255).round_()
        if rows != array.shape[0]:
            weights = self._weights(array.shape[0], rows)
            image = (weights @ image).clamp_(0, 255).round_()
        image = image[None]
        image = image / 255.0
        return F.pad(image, (0, self.input_size - cols, 0, self.input_size - rows))

    def _weights(self, in_size: int, out_size: int) -> Any:
        """Resize matrices, kept on the device (slices of one series share their size)."""
        import torch  # noqa: PLC0415

        cache = self.__dict__.setdefault("_weight_cache", {})
        if (in_size, out_size) not in cache:
            if len(cache) > 16:
                cache.clear()
            cache[in_size, out_size] = torch.from_numpy(bicubic_weights(in_size, out_size)).to(self.device)
        return cache[in_size, out_size]

    def scale_box(self, box_xyxy: tuple[float, float, float, float],
                  shape: tuple[int, int]) -> Any:
        import torch  # noqa: PLC0415

        x0, y0, x1, y1 = (float(v) for v in box_xyxy)
        if not all(np.isfinite([x0, y0, x1, y1])) or x1 < x0 or y1 < y0:
            raise InputError(f"box {box_xyxy} is not (x0, y0, x1, y1) with x0 <= x1, y0 <= y1",
                             "give the box's top-left and bottom-right pixel")
        rows, cols = shape
        new_rows, new_cols = self.resized_shape(shape)
        sx, sy = new_cols / cols, new_rows / rows
        return torch.tensor([x0 * sx, y0 * sy, x1 * sx, y1 * sy], dtype=torch.float32)

    def postprocess_masks(self, low_res: Any, shape: tuple[int, int]) -> Any:
        """(B, C, h, w) mask logits → (B, C, rows, columns) bool at the slice size."""
        import torch.nn.functional as F  # noqa: PLC0415

        rows, cols = self.resized_shape(shape)
        logits = F.interpolate(low_res.float(), (self.input_size, self.input_size),
                               mode="bilinear", align_corners=False)
        logits = F.interpolate(logits[..., :rows, :cols], tuple(shape), mode="bilinear",
                               align_corners=False)
        return logits > 0.0


@lru_cache(maxsize=32)
def bicubic_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out, in) float32 matrix of PIL's antialiased bicubic resampling (a = -0.5).

    Same construction as Pillow's ``precompute_coeffs``: the kernel is stretched by the
    scale factor when shrinking (antialias), taps are centred on output pixel centres and
    normalised to sum 1. As matrices the resize runs batched on the GPU and gives the same
    pixels on every device, to within Pillow's fixed-point rounding.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    weights = np.zeros((out_size, in_size))
    for out in range(out_size):
        centre = (out + 0.5) * scale
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), in_size)
        x = np.abs((np.arange(lo, hi) - centre + 0.5) / filterscale)
        k = np.where(x < 1.0, ((1.5 * x - 2.5) * x) * x + 1.0,
                     np.where(x < 2.0, (((x - 5.0) * x + 8.0) * x - 4.0) * -0.5, 0.0))
        total = k.sum()
        weights[out, lo:hi] = k / total if total != 0 else k
    return weights.astype(np.float32)


def _side(size: Any) -> int:
    if isinstance(size, (list, tuple)):
        if size[0] != size[1]:
            raise InputError(f"SamModel input size {size} is not square", "use a square SAM config")
        return int(size[0])
    return int(size)
