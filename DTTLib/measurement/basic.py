"""Volume and centroid of a mask on an image grid.

A voxel's volume is |det| of the IJK-to-RAS matrix, which equals the product of spacings
for any orthonormal direction — computing it from the matrix keeps it right for
whatever geometry the image carries.
"""

from __future__ import annotations

import numpy as np

from DTTLib.errors import GeometryError, InputError
from DTTLib.imaging.volume import ImageVolume


def voxel_volume_mm3(image: ImageVolume) -> float:
    return float(abs(np.linalg.det(image.ijk_to_ras()[:3, :3])))


def _checked_mask(mask: np.ndarray, image: ImageVolume) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != image.array.shape:
        raise GeometryError(f"mask shape {mask.shape} differs from image shape {image.array.shape}",
                            "measure the mask on the grid it was segmented on")
    return mask > 0


def mask_volume_mm3(mask: np.ndarray, image: ImageVolume) -> float:
    return float(np.count_nonzero(_checked_mask(mask, image))) * voxel_volume_mm3(image)


def centroid_ras(mask: np.ndarray, image: ImageVolume) -> tuple[float, float, float]:
    inside = _checked_mask(mask, image)
    if not inside.any():
        raise InputError("cannot take the centroid of an empty mask", "check the segmentation")
    k, j, i = np.nonzero(inside)
    ijk = np.array([i.mean(), j.mean(), k.mean(), 1.0])
    return tuple(float(x) for x in (image.ijk_to_ras() @ ijk)[:3])
