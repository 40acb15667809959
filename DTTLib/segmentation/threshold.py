"""The classic baseline: threshold inside the box, keep the largest 3-D component.

Used where no model is installed yet and as a reference in tests; MedSAM is the default
once the segmentation feature is installed.
"""

from __future__ import annotations

import numpy as np

from DTTLib.errors import InputError
from DTTLib.imaging.volume import ImageVolume
from DTTLib.segmentation.box import VoxelBox, checked_box


def segment_box_by_threshold(image: ImageVolume, box: VoxelBox, threshold: float) -> np.ndarray:
    """uint8 (k, j, i) mask of the largest connected region ≥ ``threshold`` inside ``box``."""
    from scipy import ndimage  # noqa: PLC0415

    box = checked_box(box, image)
    region = np.asarray(image.array[box.slices()], dtype=float)
    if np.isnan(region).any():
        raise InputError(f"the box contains {int(np.isnan(region).sum())} NaN voxels",
                         "fix or mask the image before segmenting")
    above = region >= threshold
    labels, count = ndimage.label(above)
    if count == 0:
        raise InputError(f"no voxel inside the box reaches the threshold {threshold:g} "
                         f"(box range {region.min():g}…{region.max():g})",
                         "lower the threshold or move the box onto the lesion")
    sizes = ndimage.sum_labels(above, labels, index=np.arange(1, count + 1))
    mask = np.zeros(image.array.shape, dtype=np.uint8)
    mask[box.slices()] = labels == (int(np.argmax(sizes)) + 1)
    return mask
