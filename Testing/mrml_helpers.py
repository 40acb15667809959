"""Test data builders shared by the MRML tests (real records, no mocks)."""

from __future__ import annotations

import numpy as np

from DTTLib.imaging import ImageVolume


def rotation(rx_deg: float, ry_deg: float, rz_deg: float) -> np.ndarray:
    """Rotation matrix from Euler angles, written out so it does not depend on our code."""
    ax, ay, az = np.radians([rx_deg, ry_deg, rz_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def oblique_volume(dtype=np.int16, shape=(6, 7, 9), seed: int = 0, name: str = "oblique") -> ImageVolume:
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.floating):
        array = rng.normal(0, 100, shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        array = rng.integers(max(info.min, -2000), min(info.max, 3000), shape).astype(dtype)
    return ImageVolume(array, spacing=(0.73, 0.81, 2.5), origin=(-120.25, 33.5, 7.125),
                       direction=rotation(12, -7, 31), name=name)


def ellipsoid_mask(shape=(6, 7, 9), center=(3, 3, 4), radii=(2, 2.5, 3)) -> np.ndarray:
    k, j, i = np.indices(shape)
    inside = (((k - center[0]) / radii[0]) ** 2 + ((j - center[1]) / radii[1]) ** 2
              + ((i - center[2]) / radii[2]) ** 2) <= 1.0
    return inside.astype(np.uint8)
