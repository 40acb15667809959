"""Tables, markups (ROI, line), text nodes and the subject hierarchy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from DTTLib.errors import InputError
from DTTLib.mrml.hierarchy import (
    TIMEPOINT_DAY_ATTRIBUTE,
    add_patient,
    add_study,
    add_timepoint,
    describe,
    patient_and_study_from_dicom,
    place_node,
)
from DTTLib.mrml.markups import RASBox, add_line_node, add_roi_node, box_from_roi_node, line_endpoints
from DTTLib.mrml.tables import add_table_node, rows_from_table_node
from DTTLib.mrml.texts import add_text_node, text_of

ROWS = [
    {"lesion": "L1", "timepoint": 0, "ld_mm": 32.25, "target": True},
    {"lesion": "L2 (liver)", "timepoint": 1, "ld_mm": None, "target": False},
]


def test_table_keeps_types_and_missing_values(mrml):
    node = add_table_node(ROWS, "Measurements")
    back = rows_from_table_node(node)
    assert back[0] == ROWS[0]
    assert back[1]["lesion"] == "L2 (liver)" and back[1]["target"] is False
    assert math.isnan(back[1]["ld_mm"])
    table = node.GetTable()
    assert table.GetColumnByName("ld_mm").IsA("vtkDoubleArray")
    assert table.GetColumnByName("timepoint").IsA("vtkIntArray")


def test_table_without_columns_is_refused(mrml):
    with pytest.raises(InputError, match="no columns"):
        add_table_node([], "Empty")


def test_roi_and_line_round_trip(mrml):
    box = RASBox(center=(10.5, -20.0, 3.25), size=(12.0, 8.0, 6.5))
    back = box_from_roi_node(add_roi_node(box, "Box L1"))
    np.testing.assert_allclose(back.center, box.center)
    np.testing.assert_allclose(back.size, box.size)
    low, high = back.bounds
    np.testing.assert_allclose(low, (4.5, -24.0, 0.0))
    np.testing.assert_allclose(high, (16.5, -16.0, 6.5))
    start, end = line_endpoints(add_line_node((0, 1, 2), (30, 41, 2), "RECIST L1"))
    assert np.linalg.norm(end - start) == pytest.approx(50.0)


def test_rotated_roi_is_refused(mrml):
    import vtk

    node = add_roi_node(RASBox((0, 0, 0), (1, 1, 1)))
    rotation = vtk.vtkMatrix4x4()
    rotation.SetElement(0, 0, 0.0)
    rotation.SetElement(0, 1, -1.0)
    rotation.SetElement(1, 0, 1.0)
    rotation.SetElement(1, 1, 0.0)
    node.SetAndObserveObjectToNodeMatrix(rotation)
    with pytest.raises(InputError, match="rotated"):
        box_from_roi_node(node)


def test_text_node_keeps_unicode_and_attributes(mrml):
    node = add_text_node("Tumour ↓ 32 % — AI-generated", "Narrative", attributes={"DTT.Backend": "template"})
    assert text_of(node) == "Tumour ↓ 32 % — AI-generated"
    assert node.GetAttribute("DTT.Backend") == "template"


def test_patient_timepoint_tree(mrml):
    patient = add_patient("Patient 1", {"DTT.PseudonymousID": "p-001"})
    baseline = add_timepoint(patient, 0, day=0)
    follow_up = add_timepoint(patient, 1, day=91.5, name="Follow-up")
    place_node(add_text_node("a", "scan t0"), baseline)
    place_node(add_text_node("b", "scan t1"), follow_up)
    tree = describe()
    assert len(tree) == 1 and tree[0].name == "Patient 1"
    assert [s.name for s in tree[0].studies] == ["Timepoint 0", "Follow-up"]
    assert tree[0].studies[1].attributes[TIMEPOINT_DAY_ATTRIBUTE] == "91.5"
    assert tree[0].studies[1].nodes == ["scan t1"]
    with pytest.raises(InputError, match="not a patient"):
        add_study(baseline, "nested study")


def test_dicom_tags_reuse_patient_and_study_items(mrml):
    tags = {"PatientID": "ANON1", "PatientName": "Anon^One", "StudyInstanceUID": "1.2.3",
            "StudyDate": "20240102", "StudyDescription": "CT chest"}
    first = patient_and_study_from_dicom(add_text_node("", "series A"), tags)
    second = patient_and_study_from_dicom(add_text_node("", "series B"), tags)
    third = patient_and_study_from_dicom(add_text_node("", "series C"), {**tags, "StudyInstanceUID": "1.2.4"})
    assert first == second
    assert third[0] == first[0] and third[1] != first[1]
    tree = describe()
    assert tree[0].attributes["DICOM.PatientID"] == "ANON1"
    assert tree[0].studies[0].nodes == ["series A", "series B"]
    with pytest.raises(InputError, match="PatientID"):
        patient_and_study_from_dicom(add_text_node("", "x"), {"StudyInstanceUID": "9"})
