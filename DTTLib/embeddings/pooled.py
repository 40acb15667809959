"""Offline fallback: the segmentation encoder's feature map pooled inside the lesion mask.

Works for any (C, h, w) feature map (LiteMedSAM 256×64×64, SAM ViT-B 256×64×64, …) and a
mask on the image grid: the mask is area-averaged onto the feature grid and used as weights.
"""

from __future__ import annotations

import numpy as np

from DTTLib.errors import InputError


def _area_weights(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    h, w = grid
    H, W = mask.shape
    ys = np.linspace(0, H, h + 1)
    xs = np.linspace(0, W, w + 1)
    cum = np.pad(mask.astype(np.float64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))

    def area_sum(y0: np.ndarray, y1: np.ndarray, x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
        return cum[y1][:, x1] - cum[y0][:, x1] - cum[y1][:, x0] + cum[y0][:, x0]

    yi, xi = np.round(ys).astype(int), np.round(xs).astype(int)
    return area_sum(yi[:-1], yi[1:], xi[:-1], xi[1:])


def pooled_embedding(feature_map: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(C,) L2-normalised mean of the features weighted by the mask's share of each cell."""
    features = np.asarray(feature_map, dtype=np.float32)
    if features.ndim == 4 and features.shape[0] == 1:
        features = features[0]
    mask = np.asarray(mask) > 0
    if features.ndim != 3 or mask.ndim != 2:
        raise InputError(f"Need a (C, h, w) feature map and a 2-D mask, got {features.shape} and {mask.shape}",
                         "Pass the encoder output for one slice and that slice's mask.")
    if not mask.any():
        raise InputError("The lesion mask is empty", "Segment the lesion on this slice first.")
    weights = _area_weights(mask, features.shape[1:])
    vector = (features * weights[None]).sum(axis=(1, 2)) / weights.sum()
    return (vector / max(float(np.linalg.norm(vector)), 1e-12)).astype(np.float32)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rows of ``a`` against rows of ``b`` (both any scale)."""
    a = np.atleast_2d(a).astype(np.float64)
    b = np.atleast_2d(b).astype(np.float64)
    a /= np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b /= np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T
