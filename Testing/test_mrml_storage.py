"""Files and scene bundles round-trip exactly; failed saves never destroy a good file."""

from __future__ import annotations

import numpy as np
import pytest
from mrml_helpers import ellipsoid_mask, oblique_volume

from DTTLib.errors import InputError, ResourceError
from DTTLib.mrml.hierarchy import add_patient, add_timepoint, describe, place_node
from DTTLib.mrml.markups import RASBox, add_line_node, add_roi_node, box_from_roi_node, line_endpoints
from DTTLib.mrml.segmentations import add_segmentation_node, get_segment_mask, set_segment_mask
from DTTLib.mrml.storage import (
    load_markups,
    load_scene_mrb,
    load_segmentation,
    load_table,
    load_volume,
    save_node,
    save_scene_mrb,
)
from DTTLib.mrml.tables import add_table_node, rows_from_table_node
from DTTLib.mrml.texts import add_text_node, text_of
from DTTLib.mrml.volumes import add_volume_node, image_from_volume_node


@pytest.mark.parametrize("extension,geometry_tolerance", [(".nrrd", 1e-12), (".nii.gz", 1e-6)])
def test_volume_files_round_trip(mrml, tmp_path, extension, geometry_tolerance):
    # NIfTI stores geometry as float32, so it is exact only to ~1e-7 relative.
    image = oblique_volume(np.int16)
    path = save_node(add_volume_node(image), tmp_path / f"scan{extension}")
    back = image_from_volume_node(load_volume(path))
    assert np.array_equal(back.array, image.array) and back.array.dtype == np.int16
    np.testing.assert_allclose(back.ijk_to_ras(), image.ijk_to_ras(), atol=geometry_tolerance)
    assert not list(tmp_path.glob(".dtt-partial-*"))


def test_segmentation_file_round_trip(mrml, tmp_path):
    reference = add_volume_node(oblique_volume())
    segmentation = add_segmentation_node(reference)
    mask = ellipsoid_mask()
    set_segment_mask(segmentation, mask, "L1", reference, color=(0.2, 0.4, 0.6))
    path = save_node(segmentation, tmp_path / "lesions.seg.nrrd")
    loaded = load_segmentation(path)
    assert np.array_equal(get_segment_mask(loaded, "L1", reference), mask)
    segment = loaded.GetSegmentation().GetSegment(loaded.GetSegmentation().GetSegmentIdBySegmentName("L1"))
    np.testing.assert_allclose(segment.GetColor(), (0.2, 0.4, 0.6))


def test_table_and_markups_files_round_trip(mrml, tmp_path):
    rows = [{"lesion": "L1", "day": 0, "ld_mm": 31.5}, {"lesion": "L1", "day": 56, "ld_mm": 20.25}]
    path = save_node(add_table_node(rows, "m"), tmp_path / "m.tsv")
    assert (tmp_path / "m.schema.tsv").exists()
    assert rows_from_table_node(load_table(path)) == rows
    line_path = save_node(add_line_node((1, 2, 3), (4, 6, 3), "RECIST"), tmp_path / "line.mrk.json")
    start, end = line_endpoints(load_markups(line_path)[0])
    np.testing.assert_allclose([start, end], [(1, 2, 3), (4, 6, 3)])
    roi_path = save_node(add_roi_node(RASBox((5, 5, 5), (2, 3, 4)), "box"), tmp_path / "box.mrk.json")
    np.testing.assert_allclose(box_from_roi_node(load_markups(roi_path)[0]).size, (2, 3, 4))


def test_scene_bundle_round_trip_keeps_everything(mrml, tmp_path):
    patient = add_patient("Patient 1")
    masks, images = {}, {}
    for index, day in enumerate((0.0, 84.0)):
        study = add_timepoint(patient, index, day=day)
        image = oblique_volume(seed=index, name=f"MR t{index}")
        volume = add_volume_node(image)
        segmentation = add_segmentation_node(volume, f"Lesions t{index}")
        masks[index] = ellipsoid_mask(radii=(2 - index * 0.5, 2.5, 3))
        images[index] = image
        set_segment_mask(segmentation, masks[index], f"L1 @ t{index}", volume)
        for node in (volume, segmentation):
            place_node(node, study)
    add_table_node([{"lesion": "L1", "volume_mm3": 123.5}], "Measurements")
    add_line_node((0, 0, 0), (10, 0, 0), "RECIST L1 t0")
    add_text_node("narrative text", "Narrative")

    path = save_scene_mrb(tmp_path / "twin.mrb")
    mrml.clear()
    assert mrml.scene.GetFirstNodeByName("MR t0") is None
    load_scene_mrb(path)

    scene = mrml.scene
    for index in (0, 1):
        volume = scene.GetFirstNodeByName(f"MR t{index}")
        assert np.array_equal(image_from_volume_node(volume).array, images[index].array)
        np.testing.assert_allclose(image_from_volume_node(volume).ijk_to_ras(), images[index].ijk_to_ras(),
                                   atol=1e-9)
        segmentation = scene.GetFirstNodeByName(f"Lesions t{index}")
        assert np.array_equal(get_segment_mask(segmentation, f"L1 @ t{index}", volume), masks[index])
    assert rows_from_table_node(scene.GetFirstNodeByName("Measurements")) == [{"lesion": "L1", "volume_mm3": 123.5}]
    assert text_of(scene.GetFirstNodeByName("Narrative")) == "narrative text"
    tree = describe()
    assert [study.nodes for study in tree[0].studies] == [["MR t0", "Lesions t0"], ["MR t1", "Lesions t1"]]


def test_failed_save_keeps_the_previous_file(mrml, tmp_path):
    good = save_node(add_volume_node(oblique_volume()), tmp_path / "scan.nrrd")
    before = good.read_bytes()
    empty = mrml.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "no voxels")
    with pytest.raises(ResourceError, match="could not write"):
        save_node(empty, good)
    assert good.read_bytes() == before
    assert not list(tmp_path.glob(".dtt-partial-*"))


def test_bad_paths_and_extensions_are_named(mrml, tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_volume(tmp_path / "missing.nrrd")
    with pytest.raises(InputError, match="does not exist"):
        save_node(add_volume_node(oblique_volume()), tmp_path / "no" / "such" / "dir.nrrd")
    with pytest.raises(InputError, match="cannot save"):
        save_node(add_text_node("x"), tmp_path / "text.nrrd")
    with pytest.raises(InputError, match=r"\.mrb"):
        save_scene_mrb(tmp_path / "scene.zip")


@pytest.mark.vtk_messages_expected
def test_corrupt_volume_file_gives_a_clear_error(mrml, tmp_path):
    path = tmp_path / "broken.nrrd"
    path.write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nsizes: 4 4 4\nencoding: raw\n\n\x00\x01")
    with pytest.raises(InputError, match="could not read volume"):
        load_volume(path)
    assert mrml.scene.GetFirstNodeByName("broken") is None


def test_relative_paths_work_like_absolute_ones(mrml, tmp_path, monkeypatch):
    # the MRB writer refuses relative folders; users type relative paths (make demo does)
    monkeypatch.chdir(tmp_path)
    image = oblique_volume()
    add_volume_node(image, "scan")
    save_node(mrml.scene.GetFirstNodeByName("scan"), "scan.nrrd")
    save_scene_mrb("bundle.mrb")
    mrml.clear()
    load_scene_mrb("bundle.mrb")
    assert np.array_equal(image_from_volume_node(mrml.scene.GetFirstNodeByName("scan")).array, image.array)
    assert np.array_equal(image_from_volume_node(load_volume("scan.nrrd")).array, image.array)
