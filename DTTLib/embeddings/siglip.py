"""MedSigLIP lesion embeddings (1152-d for MedSigLIP-448), batched, L2-normalised.

Preprocessing is SigLIP's own (resize to the model's image size, scale to [0, 1],
normalise with mean 0.5 / std 0.5), done here so no image-processor files are needed.
``get_image_features`` returns an output object in transformers 5: its ``pooler_output``
is the embedding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _vision_config(model: Any) -> Any:
    config = model.config
    return getattr(config, "vision_config", config)


def image_size(model: Any) -> int:
    return int(_vision_config(model).image_size)


def embedding_dim(model: Any) -> int:
    config = model.config
    if hasattr(config, "vision_config") and hasattr(config, "projection_dim") and config.projection_dim:
        return int(config.projection_dim)
    return int(_vision_config(model).hidden_size)


def _pixels(crops: Sequence[np.ndarray], size: int) -> Any:
    import torch  # noqa: PLC0415
    import torch.nn.functional as F  # noqa: PLC0415

    batch = torch.from_numpy(np.stack([np.asarray(c, dtype=np.float32) for c in crops])).permute(0, 3, 1, 2)
    if batch.shape[-1] != size or batch.shape[-2] != size:
        batch = F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False)
    return (batch.clamp(0, 1) - 0.5) / 0.5


def embed_crops(model: Any, crops: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
    """(N, D) float32, L2-normalised, for (H, W, 3) crops in [0, 1]."""
    import torch  # noqa: PLC0415

    if len(crops) == 0:
        return np.zeros((0, embedding_dim(model)), dtype=np.float32)
    size = image_size(model)
    param = next(model.parameters())
    out = []
    with torch.inference_mode():
        for start in range(0, len(crops), max(1, batch_size)):
            pixels = _pixels(crops[start:start + batch_size], size).to(param.device, param.dtype)
            if hasattr(model, "get_image_features"):
                result = model.get_image_features(pixel_values=pixels)
            else:
                result = model(pixel_values=pixels)
            features = getattr(result, "pooler_output", result)
            out.append(features.float().cpu().numpy())
    vectors = np.concatenate(out)
    return (vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)).astype(np.float32)
