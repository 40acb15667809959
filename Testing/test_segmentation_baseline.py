"""Box geometry, the threshold baseline and volume measurement against analytic shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from mrml_helpers import rotation

from DTTLib.errors import GeometryError, InputError
from DTTLib.imaging import ImageVolume
from DTTLib.measurement import centroid_ras, mask_volume_mm3, voxel_volume_mm3
from DTTLib.segmentation.box import VoxelBox, checked_box, voxel_box_from_ras
from DTTLib.segmentation.threshold import segment_box_by_threshold


def ellipsoid_image(spacing=(0.6, 0.6, 2.0), semi_axes=(9.0, 6.0, 7.0), direction=None):
    shape = (40, 64, 64)
    k, j, i = np.indices(shape).astype(float)
    centre = np.array([32, 32, 20])
    x, y, z = (i - centre[0]) * spacing[0], (j - centre[1]) * spacing[1], (k - centre[2]) * spacing[2]
    inside = (x / semi_axes[0]) ** 2 + (y / semi_axes[1]) ** 2 + (z / semi_axes[2]) ** 2 <= 1
    array = np.where(inside, 300, 40).astype(np.int16)
    image = ImageVolume(array, spacing, (10.0, -5.0, 3.0), direction if direction is not None else np.eye(3))
    return image, inside, centre


def test_threshold_in_box_recovers_the_ellipsoid_volume():
    image, inside, _ = ellipsoid_image()
    # a second, brighter blob inside the box must be dropped: only the largest component stays
    image.array[2:4, 5:8, 5:8] = 900
    mask = segment_box_by_threshold(image, VoxelBox(0, 0, 0, 63, 63, 39), 150)
    assert np.array_equal(mask.astype(bool), inside)
    analytic = 4 / 3 * math.pi * 9 * 6 * 7
    assert mask_volume_mm3(mask, image) == pytest.approx(analytic, rel=0.03)


def test_voxel_volume_and_centroid_follow_oblique_geometry():
    direction = rotation(0, 0, 30)
    image, inside, centre = ellipsoid_image(direction=direction)
    assert voxel_volume_mm3(image) == pytest.approx(0.6 * 0.6 * 2.0)
    expected = np.array(image.origin) + direction @ (np.array(image.spacing) * centre)
    np.testing.assert_allclose(centroid_ras(inside.astype(np.uint8), image), expected, atol=1e-9)


def test_ras_box_maps_to_the_voxels_it_covers():
    image, _, _ = ellipsoid_image()
    # voxel (i, j, k) centre is origin + spacing * ijk (identity direction)
    low = np.array(image.origin) + np.array([10 * 0.6, 20 * 0.6, 5 * 2.0])
    high = np.array(image.origin) + np.array([30 * 0.6, 40 * 0.6, 15 * 2.0])
    assert voxel_box_from_ras(image, low, high) == VoxelBox(10, 20, 5, 30, 40, 15)


def test_box_errors_name_the_problem():
    image, _, _ = ellipsoid_image()
    with pytest.raises(InputError, match="outside the image"):
        checked_box(VoxelBox(100, 100, 100, 120, 120, 120), image)
    with pytest.raises(InputError, match="lower corner above"):
        checked_box(VoxelBox(10, 10, 10, 5, 20, 20), image)
    assert checked_box(VoxelBox(-5, -5, -5, 10, 10, 10), image) == VoxelBox(0, 0, 0, 10, 10, 10)
    with pytest.raises(InputError, match="reaches the threshold"):
        segment_box_by_threshold(image, VoxelBox(0, 0, 0, 3, 3, 3), 1000)
    with pytest.raises(GeometryError, match="differs"):
        mask_volume_mm3(np.ones((2, 2, 2)), image)
    with pytest.raises(InputError, match="empty mask"):
        centroid_ras(np.zeros(image.array.shape), image)


def test_lesion_from_roi_node_is_stored_and_measured(mrml):
    from DTTLib.mrml.lesions import segment_lesion_by_threshold
    from DTTLib.mrml.markups import RASBox, add_roi_node
    from DTTLib.mrml.segmentations import get_segment_mask
    from DTTLib.mrml.volumes import add_volume_node

    image, inside, centre = ellipsoid_image()
    volume = add_volume_node(image, "scan")
    centre_ras = np.array(image.origin) + np.array(image.spacing) * centre
    roi = add_roi_node(RASBox(tuple(centre_ras), (30.0, 30.0, 30.0)))
    segmentation = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Lesions")
    stored = segment_lesion_by_threshold(volume, roi, 150, segmentation, "L1", "t0")
    assert stored.segment_name == "L1 @ t0" and stored.voxels == int(inside.sum())
    assert np.array_equal(get_segment_mask(segmentation, "L1 @ t0", volume).astype(bool), inside)
    with pytest.raises(InputError, match="needs an id"):
        segment_lesion_by_threshold(volume, roi, 150, segmentation, " ", "t0")
