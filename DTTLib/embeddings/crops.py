"""Lesion-centred crops: a square around the mask's bounding box, windowed to its
0.5–99.5 percentiles, resized to the encoder's input size, 3 channels in [0, 1]."""

from __future__ import annotations

import numpy as np

from DTTLib.errors import InputError


def lesion_crop(image: np.ndarray, mask: np.ndarray, size: int = 448, margin: float = 0.5) -> np.ndarray:
    """(size, size, 3) float32 in [0, 1], centred on the lesion; ``margin`` is added context
    as a fraction of the larger box side."""
    image, mask = np.asarray(image, dtype=np.float32), np.asarray(mask) > 0
    if image.ndim != 2 or image.shape != mask.shape:
        raise InputError(f"Image {image.shape} and mask {mask.shape} must be 2-D and the same shape",
                         "Pass one slice and its lesion mask.")
    if not mask.any():
        raise InputError("The lesion mask is empty", "Segment the lesion on this slice first.")
    rows, cols = np.nonzero(mask)
    cy, cx = (rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2
    side = max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) * (1 + margin)
    side = max(int(np.ceil(side)), 8)
    y0, x0 = int(round(cy - side / 2)), int(round(cx - side / 2))
    padded = np.pad(image, side, mode="edge")
    patch = padded[y0 + side:y0 + 2 * side, x0 + side:x0 + 2 * side]
    lo, hi = np.percentile(patch, [0.5, 99.5])
    patch = np.clip((patch - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    from scipy.ndimage import zoom  # noqa: PLC0415

    resized = zoom(patch, (size / patch.shape[0], size / patch.shape[1]), order=1)[:size, :size]
    return np.repeat(resized[..., None], 3, axis=2).astype(np.float32)
