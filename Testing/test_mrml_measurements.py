"""RECIST lines and the measurements table in a real headless scene."""

from __future__ import annotations

import math

import numpy as np
import pytest
from mrml_helpers import rotation

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
