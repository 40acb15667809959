"""Masks ↔ segments: exact on the reference grid, on synthetic and real expert labels."""

from __future__ import annotations

import numpy as np
import pytest
from mrml_helpers import ellipsoid_mask, oblique_volume

from DTTLib.errors import GeometryError, InputError
from DTTLib.mrml.segmentations import (
    LESION_TERMINOLOGY,
    add_segmentation_node,
    get_segment_mask,
    list_segments,
    set_segment_mask,
)
from DTTLib.mrml.volumes import add_volume_node


def test_two_segments_round_trip_without_touching_each_other(mrml):
    reference = add_volume_node(oblique_volume())
    segmentation = add_segmentation_node(reference, "Lesions")
    first = ellipsoid_mask()
    second = np.zeros_like(first)
    second[0, 0, 0] = second[5, 6, 8] = 1  # corners: cropping or flips would show here
    set_segment_mask(segmentation, first, "L1 @ t0", reference, color=(1.0, 0.0, 0.0))
    set_segment_mask(segmentation, second, "L2 @ t0", reference)
    assert np.array_equal(get_segment_mask(segmentation, "L1 @ t0", reference), first)
    assert np.array_equal(get_segment_mask(segmentation, "L2 @ t0", reference), second)
    infos = {info.name: info for info in list_segments(segmentation)}
    assert infos["L1 @ t0"].color == (1.0, 0.0, 0.0)
    assert infos["L2 @ t0"].terminology == LESION_TERMINOLOGY


def test_replacing_a_segment_keeps_its_id(mrml):
    reference = add_volume_node(oblique_volume())
    segmentation = add_segmentation_node(reference)
    first_id = set_segment_mask(segmentation, ellipsoid_mask(), "L1", reference)
    smaller = ellipsoid_mask(radii=(1, 1, 1))
    assert set_segment_mask(segmentation, smaller, "L1", reference) == first_id
    assert np.array_equal(get_segment_mask(segmentation, first_id, reference), smaller)
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 1


def test_an_empty_mask_clears_a_segment_and_other_segments_stay(mrml):
    """A lesion that disappeared (allow_empty) must not keep its old voxels; terminology None keeps
    the segment's own tag."""
    reference = add_volume_node(oblique_volume())
    segmentation = add_segmentation_node(reference)
    other = np.zeros_like(ellipsoid_mask())
    other[0, 0, 0] = 1
    set_segment_mask(segmentation, ellipsoid_mask(), "L1", reference, terminology="custom")
    set_segment_mask(segmentation, other, "L2", reference)
    set_segment_mask(segmentation, np.zeros_like(other), "L1", reference, terminology=None, allow_empty=True)
    assert not get_segment_mask(segmentation, "L1", reference).any()
    assert np.array_equal(get_segment_mask(segmentation, "L2", reference), other)
    assert {info.name: info.terminology for info in list_segments(segmentation)}["L1"] == "custom"


def test_segment_voxels_in_a_region_equal_the_full_export(mrml):
    """Read in place on the reference grid, exported elsewhere: the same voxels either way —
    a segmentation on a finer grid and one under a transform take the export path."""
    import vtk

    from DTTLib.imaging import ImageVolume
    from DTTLib.mrml.segmentations import segment_masks_in_region

    reference = add_volume_node(oblique_volume())
    shape = tuple(reversed(reference.GetImageData().GetDimensions()))
    region = (slice(1, 5), slice(2, 7), slice(3, 9))
    on_grid = add_segmentation_node(reference, "on grid")
    first = ellipsoid_mask()
    second = np.zeros(shape, np.uint8)
    second[0, 0, 0] = second[4, 6, 8] = second[2, 3, 3] = 1
    ids = [set_segment_mask(on_grid, first, "A", reference), set_segment_mask(on_grid, second, "B", reference)]
    empty_id = set_segment_mask(on_grid, np.zeros(shape, np.uint8), "C", reference, allow_empty=True)
    read = segment_masks_in_region(on_grid, reference, region, ids + [empty_id])
    for segment_id, full in zip(ids, (first, second)):
        assert np.array_equal(read[segment_id], full[region] > 0)
    assert not read[empty_id].any() and read[empty_id].shape == (4, 5, 6)
    fine_image = ImageVolume(np.zeros((12, 16, 20), np.float32), (0.5, 0.5, 0.5), (-3.0, 2.0, 1.0))
    fine = add_segmentation_node(add_volume_node(fine_image, "fine"), "fine grid")
    blob = np.zeros((12, 16, 20), np.uint8)
    blob[3:9, 4:12, 5:15] = 1
    fine_id = set_segment_mask(fine, blob, "blob", mrml.scene.GetFirstNodeByName("fine"))
    expected = get_segment_mask(fine, fine_id, reference)[region] > 0
    assert np.array_equal(segment_masks_in_region(fine, reference, region, [fine_id])[fine_id], expected)
    transform = mrml.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shift = vtk.vtkMatrix4x4()
    shift.SetElement(0, 3, 2.0)
    transform.SetMatrixTransformToParent(shift)
    on_grid.SetAndObserveTransformNodeID(transform.GetID())
    moved = segment_masks_in_region(on_grid, reference, region, ids)
    for segment_id in ids:
        assert np.array_equal(moved[segment_id], get_segment_mask(on_grid, segment_id, reference)[region] > 0)


def test_expert_label_of_real_mr_survives_exactly(mrml, brain_pair):
    from DTTLib.mrml.storage import load_volume
    import slicer

    image = load_volume(brain_pair["brain1_image"])
    label_node = load_volume(brain_pair["brain1_label"], labelmap=True)
    label = slicer.util.arrayFromVolume(label_node) > 0
    segmentation = add_segmentation_node(image)
    set_segment_mask(segmentation, label, "Tumor", image)
    back = get_segment_mask(segmentation, "Tumor", image)
    assert np.array_equal(back.astype(bool), label)
    voxel_mm3 = float(np.prod(image.GetSpacing()))
    # shared/data/README.md: brain1 label volume ~16,413 mm^3 from voxel counts
    assert back.sum() * voxel_mm3 == pytest.approx(16413, rel=0.002)


def test_wrong_shape_empty_and_unknown_segment_are_named(mrml):
    reference = add_volume_node(oblique_volume())
    segmentation = add_segmentation_node(reference)
    with pytest.raises(GeometryError, match="does not match the reference"):
        set_segment_mask(segmentation, np.ones((2, 2, 2)), "L1", reference)
    with pytest.raises(InputError, match="is empty"):
        set_segment_mask(segmentation, np.zeros((6, 7, 9)), "L1", reference)
    nan_mask = np.zeros((6, 7, 9))
    nan_mask[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        set_segment_mask(segmentation, nan_mask, "L1", reference)
    set_segment_mask(segmentation, np.zeros((6, 7, 9)), "gone", reference, allow_empty=True)
    assert get_segment_mask(segmentation, "gone", reference).sum() == 0
    with pytest.raises(InputError, match="available segments.*gone"):
        get_segment_mask(segmentation, "L9", reference)


def test_reading_a_mask_leaves_no_nodes_behind(mrml):
    """Slicer's arrayFromSegmentBinaryLabelmap leaves a labelmap display node per call; a module
    that reads every lesion of every scan would litter the saved scene with them."""
    from DTTLib.mrml.runtime import get_scene

    reference = add_volume_node(oblique_volume())
    segmentation = add_segmentation_node(reference, "Lesions")
    set_segment_mask(segmentation, ellipsoid_mask(), "L1 @ t0", reference)
    scene = get_scene()
    before = scene.GetNumberOfNodes()
    for _ in range(3):
        get_segment_mask(segmentation, "L1 @ t0", reference)
    assert scene.GetNumberOfNodes() == before
