"""A model's lesion is stored under the Segment Editor's masking: editable area (by Slicer's own
GenerateEditMask, checked here against set algebra on the segments) and overwrite mode, with every
voxel taken from, or left to, another segment counted."""

from __future__ import annotations

import numpy as np
import pytest

from DTTLib.errors import InputError
from DTTLib.imaging import ImageVolume
from DTTLib.mrml.editor_masking import (LEAVE_OTHERS, Masking, editable_area, masking_from_editor,
                                        segment_editor_node)
from DTTLib.mrml.segmentations import get_segment_mask, set_segment_mask
from DTTLib.mrml.volumes import add_volume_node
from DTTLib.segmentation.scene import ComputedLesion, store_lesion

SHAPE = (5, 16, 18)


@pytest.fixture()
def scene_parts(mrml):
    """A volume with an intensity ramp along i, and three segments: A (visible) and B (hidden)
    that the lesion overlaps, and C far away."""
    array = np.broadcast_to(np.arange(SHAPE[2], dtype=np.float32), SHAPE).copy()
    image = ImageVolume(array, (0.8, 0.8, 2.0), (10.0, -4.0, 3.0))
    volume = add_volume_node(image, "scan", scene=mrml.scene)
    segmentation = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Lesions")
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    masks = {name: np.zeros(SHAPE, bool) for name in "ABC"}
    masks["A"][1:4, 2:8, 2:8] = True
    masks["B"][1:4, 8:12, 8:12] = True
    masks["C"][0, 14:16, 0:3] = True
    ids = {name: set_segment_mask(segmentation, m.astype(np.uint8), name, volume) for name, m in masks.items()}
    segmentation.GetDisplayNode().SetSegmentVisibility(ids["B"], False)
    lesion = np.zeros(SHAPE, bool)
    lesion[2:4, 5:11, 5:11] = True  # overlaps A and B
    return image, volume, segmentation, masks, ids, lesion


def computed(mask: np.ndarray) -> ComputedLesion:
    return ComputedLesion(mask.astype(np.uint8), (2, 3), False, "litemedsam", "cpu")


@pytest.mark.parametrize("mode, expected", [
    ("EditAllowedEverywhere", lambda m: np.ones(SHAPE, bool)),
    ("EditAllowedInsideAllSegments", lambda m: m["A"] | m["B"] | m["C"]),
    ("EditAllowedInsideVisibleSegments", lambda m: m["A"] | m["C"]),
    ("EditAllowedOutsideAllSegments", lambda m: ~(m["A"] | m["B"] | m["C"])),
    ("EditAllowedOutsideVisibleSegments", lambda m: ~(m["A"] | m["C"])),
    ("EditAllowedInsideSingleSegment", lambda m: m["B"]),
])
def test_editable_area_is_the_segment_editors(scene_parts, mode, expected):
    _, volume, segmentation, masks, ids, _ = scene_parts
    masking = Masking(mode, mask_segment_id=ids["B"] if mode.endswith("SingleSegment") else "")
    assert np.array_equal(editable_area(segmentation, volume, masking), expected(masks))


def test_intensity_range_limits_the_editable_area(scene_parts):
    image, volume, segmentation, _, _, _ = scene_parts
    area = editable_area(segmentation, volume, Masking(intensity_range=(4.0, 9.0)))
    assert np.array_equal(area, (image.array >= 4) & (image.array <= 9))


def test_overwrite_all_takes_the_voxels_from_every_other_segment(scene_parts):
    image, volume, segmentation, masks, _, lesion = scene_parts
    stored = store_lesion(computed(lesion), image, volume, segmentation, "L1", "t0",
                          masking=Masking(overwrite="all"))
    assert dict(stored.taken) == {"A": int((lesion & masks["A"]).sum()), "B": int((lesion & masks["B"]).sum())}
    assert stored.withheld_voxels == 0 and stored.voxels == int(lesion.sum())
    for name in "AB":
        assert np.array_equal(get_segment_mask(segmentation, name, volume) > 0, masks[name] & ~lesion)
    assert np.array_equal(get_segment_mask(segmentation, "C", volume) > 0, masks["C"])


def test_overwrite_visible_spares_hidden_segments_and_none_spares_all(scene_parts):
    image, volume, segmentation, masks, _, lesion = scene_parts
    visible = store_lesion(computed(lesion), image, volume, segmentation, "L1", "t0",
                           masking=Masking(overwrite="visible"))
    assert [name for name, _ in visible.taken] == ["A"]
    assert np.array_equal(get_segment_mask(segmentation, "B", volume) > 0, masks["B"])  # hidden: kept, overlaps
    assert np.array_equal(get_segment_mask(segmentation, "L1 @ t0", volume) > 0, lesion)
    bigger = lesion.copy()
    bigger[4, 5:11, 5:11] = True  # one more slice, free of other segments
    none = store_lesion(computed(bigger), image, volume, segmentation, "L2", "t0", masking=LEAVE_OTHERS)
    assert none.taken == () and none.withheld_voxels == int(lesion.sum())  # L1 now holds all of those
    assert np.array_equal(get_segment_mask(segmentation, "L2 @ t0", volume) > 0, bigger & ~lesion)
    with pytest.raises(InputError, match="none of the lesion's 72 voxels may be written"):
        store_lesion(computed(lesion), image, volume, segmentation, "L3", "t0", masking=LEAVE_OTHERS)


def test_outside_all_segments_never_touches_another_segment(scene_parts):
    image, volume, segmentation, masks, _, lesion = scene_parts
    stored = store_lesion(computed(lesion), image, volume, segmentation, "L1", "t0",
                          masking=Masking("EditAllowedOutsideAllSegments", overwrite="all"))
    inside_others = lesion & (masks["A"] | masks["B"] | masks["C"])
    assert stored.outside_editable == int(inside_others.sum()) > 0 and stored.taken == ()
    assert np.array_equal(get_segment_mask(segmentation, "L1 @ t0", volume) > 0, lesion & ~inside_others)
    for name in "ABC":
        assert np.array_equal(get_segment_mask(segmentation, name, volume) > 0, masks[name])


def test_the_segment_editors_own_settings_are_read(mrml):
    import slicer

    assert segment_editor_node(mrml.scene) is None  # editor never opened: the module's default applies
    node = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
    node.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedOutsideVisibleSegments)
    node.SetOverwriteMode(slicer.vtkMRMLSegmentEditorNode.OverwriteVisibleSegments)
    node.SourceVolumeIntensityMaskOn()
    node.SetSourceVolumeIntensityMaskRange(-100.0, 250.0)
    assert segment_editor_node(mrml.scene) is node
    masking = masking_from_editor(node)
    assert masking == Masking("EditAllowedOutsideVisibleSegments", "", "visible", (-100.0, 250.0), "Segment Editor")
    assert "overwrite visible" in masking.describe() and "-100…250" in masking.describe()
