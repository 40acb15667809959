"""A lesion in separate pieces: a second piece is added to the lesion's segment, not swapped in
(real MRML scene; masks are planted, so the expected voxels are known exactly)."""

from __future__ import annotations

import numpy as np

from DTTLib.imaging.volume import ImageVolume
from DTTLib.segmentation.scene import ComputedLesion, store_lesion


def _piece(shape, k0, k1, j0, j1, i0, i1) -> ComputedLesion:
    mask = np.zeros(shape, np.uint8)
    mask[k0:k1, j0:j1, i0:i1] = 1
    return ComputedLesion(mask, (k0, k1 - 1), False, "litemedsam", "cpu", "model")


def test_a_second_piece_is_added_to_the_segment_and_a_plain_run_replaces_it(mrml):
    from DTTLib.mrml.segmentations import get_segment_mask, set_segment_mask
    from DTTLib.mrml.volumes import add_volume_node

    shape = (8, 40, 40)
    image = ImageVolume(np.zeros(shape, np.float32), (1.0, 1.0, 2.0))
    volume = add_volume_node(image, "scan")
    segmentation = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Lesions")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    other = np.zeros(shape, np.uint8)
    other[5, 30:32, 30:32] = 1  # 4 voxels of another segment, inside piece B's box
    set_segment_mask(segmentation, other, "Vessel", volume)
    main = _piece(shape, 1, 4, 5, 15, 5, 15)      # 3 × 10 × 10 = 300 voxels
    satellite = _piece(shape, 4, 7, 25, 33, 25, 33)  # 3 × 8 × 8 = 192 voxels, 4 of them the vessel's

    first = store_lesion(main, image, volume, segmentation, "L1", "t0")
    assert (first.voxels, first.added_to) == (300, 0)
    added = store_lesion(satellite, image, volume, segmentation, "L1", "t0", add_to_existing=True)
    assert added.segment_id == first.segment_id and added.added_to == 300
    assert added.voxels == 300 + 192 - 4 and added.withheld_voxels == 4
    stored = get_segment_mask(segmentation, "L1 @ t0", volume) > 0
    assert stored.sum() == 488 and stored[main.mask > 0].all() and not stored[other > 0].any()
    assert added.volume_mm3 == 488 * 2.0
    # measured as stored: two RECIST fragments whose LDs add, one LD line each
    from DTTLib.measurement.diameters import measure_lesion

    assert len(added.measurement.pieces) == 2
    assert added.measurement.longest_diameter_mm == sum(
        measure_lesion(piece.astype(np.uint8), image).longest_diameter_mm
        for piece in (main.mask > 0, (satellite.mask > 0) & (other == 0)))
    lines = {name: mrml.scene.GetFirstNodeByName(name) for name in ("L1 @ t0 LD", "L1 @ t0 LD 2", "L1 @ t0 SA")}
    assert all(line is not None for line in lines.values())
    # without add_to_existing a new run replaces the lesion's segment (re-segmenting a lesion)
    replaced = store_lesion(satellite, image, volume, segmentation, "L1", "t0")
    assert replaced.voxels == 188 and replaced.added_to == 0
    assert len(replaced.measurement.pieces) == 1 and mrml.scene.GetFirstNodeByName("L1 @ t0 LD 2") is None
    # adding to a lesion that has no segment yet simply stores it
    fresh = store_lesion(main, image, volume, segmentation, "L2", "t0", add_to_existing=True)
    assert (fresh.voxels, fresh.added_to) == (300, 0)
