"""numpy ↔ scalar volume nodes: voxels and geometry exact, bad input named."""

from __future__ import annotations

import numpy as np
import pytest
from mrml_helpers import oblique_volume

from DTTLib.errors import GeometryError, InputError
from DTTLib.imaging import ImageVolume
from DTTLib.mrml.volumes import add_volume_node, image_from_volume_node


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int32, np.float32, np.float64])
def test_round_trip_is_exact(mrml, dtype):
    image = oblique_volume(dtype)
    back = image_from_volume_node(add_volume_node(image))
    assert back.array.dtype == image.array.dtype
    assert np.array_equal(back.array, image.array)
    assert back.spacing == image.spacing
    assert back.origin == image.origin
    assert np.array_equal(back.direction, image.direction)


def test_node_places_voxels_where_independent_math_says(mrml):
    import vtk

    image = oblique_volume()
    node = add_volume_node(image)
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    for ijk in [(0, 0, 0), (8, 0, 0), (3, 5, 2), (8, 6, 5)]:
        ras_node = matrix.MultiplyPoint((*ijk, 1.0))[:3]
        expected = np.asarray(image.origin) + image.direction @ (np.asarray(image.spacing) * ijk)
        np.testing.assert_allclose(ras_node, expected, atol=1e-9)
    # numpy index (k, j, i) is voxel (i, j, k)
    assert node.GetImageData().GetScalarComponentAsDouble(8, 6, 5, 0) == image.array[5, 6, 8]


def test_labelmap_node(mrml):
    image = ImageVolume(np.eye(4, dtype=np.uint8)[None].repeat(3, 0), name="lab")
    node = add_volume_node(image, labelmap=True)
    assert node.IsA("vtkMRMLLabelMapVolumeNode")
    assert np.array_equal(image_from_volume_node(node).array, image.array)


def test_int64_is_refused_with_the_fix(mrml):
    with pytest.raises(InputError, match="64-bit.*astype"):
        ImageVolume(np.zeros((2, 2, 2), dtype=np.int64))


def test_four_dimensional_image_is_refused(mrml):
    with pytest.raises(GeometryError, match="4 dimensions.*split"):
        ImageVolume(np.zeros((2, 2, 2, 3), dtype=np.int16))


@pytest.mark.parametrize("spacing", [(1, 0, 1), (1, -2, 1), (1, float("nan"), 1)])
def test_invalid_spacing_is_refused(mrml, spacing):
    with pytest.raises(GeometryError, match="spacing"):
        ImageVolume(np.zeros((2, 2, 2), dtype=np.int16), spacing=spacing)


def test_non_orthonormal_direction_is_refused(mrml):
    with pytest.raises(GeometryError, match="orthonormal"):
        ImageVolume(np.zeros((2, 2, 2), dtype=np.int16), direction=np.diag([1.0, 2.0, 1.0]))


def test_reading_a_non_volume_or_transformed_volume_is_refused(mrml):
    segmentation = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    with pytest.raises(InputError, match="scalar volume"):
        image_from_volume_node(segmentation)
    node = add_volume_node(oblique_volume())
    transform = mrml.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    node.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(InputError, match="Harden"):
        image_from_volume_node(node)


def test_modality_comes_from_the_dicom_series_item_or_the_node(mrml):
    import slicer

    image = ImageVolume(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    node = add_volume_node(image, "scan")
    assert image_from_volume_node(node).metadata == {}
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(mrml.scene)
    item = sh.GetItemByDataNode(node) or sh.CreateItem(sh.GetSceneItemID(), node)  # Slicer's plugins make it
    sh.SetItemAttribute(item, "DICOM.Modality", "ct")  # as the DICOM module records it
    assert image_from_volume_node(node).metadata["dicom"]["Modality"] == "CT"
    other = add_volume_node(image, "mr scan")
    other.SetAttribute("DICOM.Modality", "MR")
    assert image_from_volume_node(other).metadata["dicom"]["Modality"] == "MR"
