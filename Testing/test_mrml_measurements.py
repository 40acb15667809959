"""RECIST lines and the measurements table in a real headless scene."""

from __future__ import annotations

import math

import numpy as np
import pytest
from mrml_helpers import rotation
from scipy import ndimage

from DTTLib.errors import InputError
from DTTLib.imaging import ImageVolume, read_image
from DTTLib.measurement import measure_lesion
from DTTLib.mrml.markups import line_endpoints
from DTTLib.mrml.measurements import (
    MEASUREMENT_COLUMNS,
    MEASUREMENTS_TABLE,
    measurements_from_table,
    store_measurement,
)


def _oblique_lesion():
    array = np.zeros((7, 30, 40), np.uint8)
    k, j, i = np.indices(array.shape)
    array[(((i - 20) / 12.0) ** 2 + ((j - 15) / 6.0) ** 2 + ((k - 3) / 2.5) ** 2) <= 1] = 1
    image = ImageVolume(array, spacing=(0.8, 1.2, 3.0), origin=(-30.0, 12.0, 40.0),
                        direction=rotation(10, -5, 25))
    return array, image


def test_line_length_equals_ld_and_table_round_trips(mrml, brain_pair):
    array, image = _oblique_lesion()
    first = measure_lesion(array, image)
    stored = store_measurement(first, "L1", "t0", source="test", confidence=0.87)

    node = stored.long_axis_node
    assert node.GetName() == "L1 @ t0 LD" and node.GetLocked()
    assert node.GetLineLengthWorld() == pytest.approx(first.longest_diameter_mm, abs=1e-4)
    assert node.GetMeasurement("length").GetEnabled()
    assert node.GetMeasurement("length").GetValue() == pytest.approx(first.longest_diameter_mm, abs=1e-4)
    assert node.GetDisplayNode().GetPropertiesLabelVisibility()
    start, end = line_endpoints(node)
    assert np.allclose(start, first.long_axis_ras[0], atol=1e-4)
    assert np.allclose(end, first.long_axis_ras[1], atol=1e-4)
    assert stored.short_axis_node.GetLineLengthWorld() == pytest.approx(first.short_axis_mm, abs=1e-4)

    # a second lesion from the real expert label, same table
    label = read_image(brain_pair["brain2_label"])
    second = measure_lesion(label.array, label)
    store_measurement(second, "L2", "t1", source="expert")
    table = mrml.scene.GetFirstNodeByName(MEASUREMENTS_TABLE)
    assert table is stored.table_node

    rows = measurements_from_table(table)
    assert [(r["lesion"], r["timepoint"]) for r in rows] == [("L1", "t0"), ("L2", "t1")]
    assert list(rows[0]) == list(MEASUREMENT_COLUMNS)
    for row, m, confidence in ((rows[0], first, 0.87), (rows[1], second, None)):
        assert row["longest_diameter_mm"] == pytest.approx(m.longest_diameter_mm)
        assert row["short_axis_mm"] == pytest.approx(m.short_axis_mm)
        assert row["volume_mm3"] == pytest.approx(m.volume_mm3)
        assert (row["centroid_r"], row["centroid_a"], row["centroid_s"]) == pytest.approx(m.centroid_ras)
        assert row["slice_index"] == m.slice_index and isinstance(row["slice_index"], int)
        assert math.isnan(row["confidence"]) if confidence is None else row["confidence"] == confidence
    assert rows[1]["volume_mm3"] == pytest.approx(np.count_nonzero(label.array) * np.prod(label.spacing))
    vtable = table.GetTable()
    assert vtable.GetColumnByName("lesion").IsA("vtkStringArray")
    assert vtable.GetColumnByName("volume_mm3").IsA("vtkDoubleArray")
    assert vtable.GetColumnByName("slice_index").IsA("vtkIntArray")


def test_measuring_again_replaces_row_and_moves_lines(mrml):
    array, image = _oblique_lesion()
    store_measurement(measure_lesion(array, image), "L1", "t0")
    smaller = array.copy()
    smaller[:, :, :14] = 0
    m = measure_lesion(smaller, image)
    stored = store_measurement(m, "L1", "t0", source="edited")
    lines = mrml.scene.GetNodesByClass("vtkMRMLMarkupsLineNode")
    assert lines.GetNumberOfItems() == 2
    assert stored.long_axis_node.GetLineLengthWorld() == pytest.approx(m.longest_diameter_mm, abs=1e-4)
    rows = measurements_from_table(stored.table_node)
    assert len(rows) == 1 and rows[0]["source"] == "edited"
    assert rows[0]["longest_diameter_mm"] == pytest.approx(m.longest_diameter_mm)


def test_blank_lesion_id_is_refused(mrml):
    array, image = _oblique_lesion()
    with pytest.raises(InputError, match="lesion needs an id"):
        store_measurement(measure_lesion(array, image), " ", "t0")


def _boxes(count):
    """``count`` boxes apart in 3-D on one slice grid, larger first (pieces of one lesion)."""
    array = np.zeros((4, 30, 60), np.uint8)
    for n in range(count):
        array[1 + n % 2, 4 + 6 * n:8 + 6 * n, 2 + 18 * n:14 + 18 * n - 3 * n] = 1
    return array, ImageVolume(array, spacing=(0.8, 1.1, 4.0))


def _ld_lines(scene, name):
    lines = scene.GetNodesByClass("vtkMRMLMarkupsLineNode")
    names = [lines.GetItemAsObject(i).GetName() for i in range(lines.GetNumberOfItems())]
    return sorted(n for n in names if n == f"{name} LD" or n.startswith(f"{name} LD "))


def test_fragments_get_one_ld_line_each_and_fewer_pieces_remove_lines(mrml):
    three = measure_lesion(*_boxes(3))
    assert len(three.pieces) == 3
    stored = store_measurement(three, "L1", "t0")
    assert _ld_lines(mrml.scene, "L1 @ t0") == ["L1 @ t0 LD", "L1 @ t0 LD 2", "L1 @ t0 LD 3"]
    assert [n.GetName() for n in stored.long_axis_nodes] == ["L1 @ t0 LD", "L1 @ t0 LD 2", "L1 @ t0 LD 3"]
    assert stored.long_axis_node is stored.long_axis_nodes[0]
    for node, piece in zip(stored.long_axis_nodes, three.pieces):  # each line is its own piece's LD
        assert node.GetLineLengthWorld() == pytest.approx(piece.longest_diameter_mm, abs=1e-4)
        start, end = line_endpoints(node)
        assert np.allclose(start, piece.long_axis_ras[0], atol=1e-4)
        assert np.allclose(end, piece.long_axis_ras[1], atol=1e-4)
    assert stored.short_axis_node.GetLineLengthWorld() == pytest.approx(three.pieces[0].short_axis_mm, abs=1e-4)
    row = measurements_from_table(stored.table_node)[0]
    assert row["longest_diameter_mm"] == pytest.approx(sum(p.longest_diameter_mm for p in three.pieces))
    # another timepoint of the same lesion keeps its lines whatever happens to t0's
    store_measurement(measure_lesion(*_boxes(2)), "L1", "t1")

    two = measure_lesion(*_boxes(2))
    again = store_measurement(two, "L1", "t0", source="edited")
    assert _ld_lines(mrml.scene, "L1 @ t0") == ["L1 @ t0 LD", "L1 @ t0 LD 2"]
    assert again.long_axis_nodes[1] is stored.long_axis_nodes[1]   # moved, not replaced by a copy
    length = again.long_axis_nodes[1].GetLineLengthWorld()
    assert length == pytest.approx(two.pieces[1].longest_diameter_mm, abs=1e-4)

    one = measure_lesion(*_boxes(1))
    assert len(one.pieces) == 1
    last = store_measurement(one, "L1", "t0")
    assert _ld_lines(mrml.scene, "L1 @ t0") == ["L1 @ t0 LD"]
    assert last.long_axis_nodes == (last.long_axis_node,)
    assert last.long_axis_node.GetLineLengthWorld() == pytest.approx(one.longest_diameter_mm, abs=1e-4)
    assert _ld_lines(mrml.scene, "L1 @ t1") == ["L1 @ t1 LD", "L1 @ t1 LD 2"]
    assert mrml.scene.GetNumberOfNodesByClass("vtkMRMLMarkupsLineNode") == 1 + 1 + 2 + 1  # t0 LD+SA, t1 2 LD+SA
    rows = measurements_from_table(last.table_node)
    assert [(r["lesion"], r["timepoint"]) for r in rows] == [("L1", "t0"), ("L1", "t1")]
    assert rows[0]["longest_diameter_mm"] == pytest.approx(one.longest_diameter_mm)


def test_brain1_label_two_pieces_then_one(mrml, brain_pair):
    label = read_image(brain_pair["brain1_label"])
    split = measure_lesion(label.array, label)
    store_measurement(split, "L1", "t0")
    assert _ld_lines(mrml.scene, "L1 @ t0") == ["L1 @ t0 LD", "L1 @ t0 LD 2"]
    parts, _ = ndimage.label(label.array > 0, structure=np.ones((3, 3, 3)))
    big = (parts == np.argmax(np.bincount(parts.ravel())[1:]) + 1).astype(np.uint8)  # the other piece erased
    stored = store_measurement(measure_lesion(big, label), "L1", "t0")
    assert _ld_lines(mrml.scene, "L1 @ t0") == ["L1 @ t0 LD"]
    length = stored.long_axis_node.GetLineLengthWorld()
    assert length == pytest.approx(split.pieces[0].longest_diameter_mm, abs=1e-4)
