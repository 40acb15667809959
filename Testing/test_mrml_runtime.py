"""The headless runtime gives the same kind of scene and logics that Slicer gives."""

from __future__ import annotations

import numpy as np
import pytest

from DTTLib.errors import MissingDependencyError


def test_scene_has_slicer_singletons_and_logics(mrml):
    import slicer

    scene = mrml.scene
    assert scene.IsA("vtkMRMLScene")
    assert slicer.mrmlScene is scene
    for class_name in ("vtkMRMLSelectionNode", "vtkMRMLInteractionNode", "vtkMRMLSubjectHierarchyNode"):
        assert scene.GetFirstNodeByClass(class_name) is not None, class_name
    # default colour tables exist, including the one labelmap display nodes look up by id
    assert scene.GetNodeByID("vtkMRMLColorTableNodeGrey") is not None
    assert scene.GetNodeByID("vtkMRMLColorTableNodeFileGenericColors.txt") is not None
    assert slicer.modules.segmentations.logic() is mrml.logic("Segmentations")
    assert mrml.logic("Segmentations").IsA("vtkSlicerSegmentationsModuleLogic")


def test_runtime_is_a_singleton_and_clear_keeps_singletons(mrml):
    from DTTLib.mrml import get_runtime

    assert get_runtime() is mrml
    mrml.scene.AddNewNodeByClass("vtkMRMLTextNode", "temporary")
    mrml.clear()
    assert mrml.scene.GetFirstNodeByName("temporary") is None
    assert mrml.scene.GetFirstNodeByClass("vtkMRMLSelectionNode") is not None


def test_slicer_util_array_helpers_work_on_the_headless_scene(mrml):
    import slicer

    array = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    node = slicer.util.addVolumeFromArray(array, name="util")
    assert np.array_equal(slicer.util.arrayFromVolume(node), array)
    segmentation = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(node)
    segment_id = segmentation.GetSegmentation().AddEmptySegment("s")
    mask = (array > 11).astype(np.uint8)
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, segmentation, segment_id, node)
    assert np.array_equal(slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segment_id, node), mask)


def test_unknown_logic_names_the_available_ones(mrml):
    with pytest.raises(MissingDependencyError) as info:
        mrml.logic("NoSuchModule")
    assert "NoSuchModule" in str(info.value) and "Segmentations" in str(info.value)
