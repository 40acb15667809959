"""Vectors for similar-case search besides appearance embeddings.

Shape: scale-free descriptors of a binary mask (so a small and a large sphere match).
Growth: the log-volume trajectory resampled on a fixed day grid (so lesions scanned on
different schedules compare). Both are plain float32 vectors stored as embeddings of kind
'shape' and 'growth' and searched by cosine like any other.
"""

from __future__ import annotations

import numpy as np

from DTTLib.errors import InputError

SHAPE_DIM = 8
GROWTH_GRID_DAYS = np.linspace(0.0, 365.0, 13)


def shape_descriptor(mask: np.ndarray, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Principal-axis ratios, sphericity, fill of the bounding box and compactness."""
    mask = np.asarray(mask, bool)
    if mask.ndim != 3 or not mask.any():
        raise InputError("the mask is empty or not 3-D", "give a 3-D mask with at least one voxel")
    spacing_arr = np.asarray(spacing, float)
    points = np.argwhere(mask) * spacing_arr
    voxel = float(np.prod(spacing_arr))
    volume = points.shape[0] * voxel
    centred = points - points.mean(axis=0)
    eig = np.sort(np.linalg.eigvalsh(np.cov(centred.T) + np.eye(3) * 1e-9))[::-1]
    axes = np.sqrt(np.maximum(eig, 1e-12))
    faces = sum(np.count_nonzero(np.diff(np.pad(mask, 1).astype(np.int8), axis=a))
                * voxel / spacing_arr[a] for a in range(3))
    sphericity = (np.pi ** (1 / 3) * (6 * volume) ** (2 / 3)) / max(faces, 1e-9)
    extent = np.ptp(points, axis=0) + spacing_arr
    fill = volume / float(np.prod(extent))
    radius = (3 * volume / (4 * np.pi)) ** (1 / 3)
    return np.array([1.0, axes[1] / axes[0], axes[2] / axes[0], axes[2] / axes[1], sphericity, fill,
                     axes[0] / max(radius, 1e-9), np.sqrt(axes[1] * axes[2]) / max(radius, 1e-9)],
                    np.float32)


def growth_trajectory(days: np.ndarray, volumes: np.ndarray) -> np.ndarray:
    """log(V/V0) at 0, 30, …, 365 days (held flat past the last scan), plus a constant 1."""
    days, volumes = np.asarray(days, float), np.asarray(volumes, float)
    if days.ndim != 1 or days.shape != volumes.shape or days.size < 2:
        raise InputError("a growth trajectory needs at least two (day, volume) pairs",
                         "measure the lesion at two or more timepoints")
    if np.any(volumes <= 0) or np.any(np.diff(days) <= 0):
        raise InputError("volumes must be positive and days strictly increasing", "check the series")
    log_ratio = np.log(volumes / volumes[0])
    return np.concatenate([[1.0], np.interp(GROWTH_GRID_DAYS, days - days[0], log_ratio)]).astype(np.float32)
