"""A lesion's organ and lymph-node status as the twin reads them from real segments.

Segments are real ``vtkSegment``s of a ``vtkMRMLSegmentationNode``; terminology strings are
written out here in Slicer's serialised form (context~category~type~typeModifier~regionContext~
region~regionModifier, each code scheme^value^meaning), not built with the code under test.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from mrml_helpers import oblique_volume

from DTTLib.mrml.lesions import (
    SegmentAnatomy,
    lesion_anatomy,
    lesion_id_of_segment,
    lesion_segments,
    parse_anatomy_entries,
    segment_anatomy,
    with_anatomy_entry,
    write_lesion_anatomy,
)
from DTTLib.mrml.segmentations import add_segmentation_node, resolve_segment_id, set_segment_mask
from DTTLib.mrml.volumes import add_volume_node

CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
REGIONS = "Anatomic codes - DICOM master list"
#: a tumour with the liver as its anatomic region
LIVER_NEOPLASM = (f"{CONTEXT}~SCT^49755003^Morphologically Altered Structure~SCT^108369006^Neoplasm~^^"
                  f"~{REGIONS}~SCT^10200004^Liver~^^")
#: a lymph node by its type, no region
LYMPH_NODE_TYPE = (f"{CONTEXT}~SCT^123037004^Anatomical Structure~SCT^59441001^Lymph node~^^"
                   f"~{REGIONS}~^^~^^")
#: a tumour in an axillary lymph node (the region says node)
NODE_REGION_NEOPLASM = (f"{CONTEXT}~SCT^49755003^Morphologically Altered Structure~SCT^108369006^Neoplasm~^^"
                        f"~{REGIONS}~SCT^68171009^Axillary lymph node~^^")
#: Slicer's default "Tissue", no region: says nothing about the organ
PLAIN_TISSUE = f"{CONTEXT}~SCT^85756007^Tissue~SCT^85756007^Tissue~^^~{REGIONS}~^^~^^"


def _segments(names: list[str], label: str = "Lesions"):
    """A segmentation node with one small segment per name; returns (node, {name: vtkSegment})."""
    volume = add_volume_node(oblique_volume(), f"scan {label}")
    node = add_segmentation_node(volume, label)
    for index, name in enumerate(names):
        mask = np.zeros((6, 7, 9), np.uint8)
        mask[index % 6, 1:3, 1:3] = 1
        set_segment_mask(node, mask, name, volume, terminology=PLAIN_TISSUE)
    segments = {name: node.GetSegmentation().GetSegment(resolve_segment_id(node, name)) for name in names}
    return node, segments


def test_tags_win_over_terminology(mrml):
    _node, segments = _segments(["L1 @ t0"])
    segment = segments["L1 @ t0"]
    segment.SetTag("TerminologyEntry", LIVER_NEOPLASM)
    write_lesion_anatomy(segment, "lung", False)
    assert segment_anatomy(segment) == SegmentAnatomy("lung", False, "tag")
    # a nodal tag without an organ: a lymph node, even though the terminology says liver
    write_lesion_anatomy(segment, "", True)
    assert segment_anatomy(segment) == SegmentAnatomy("lymph node", True, "tag")


def test_terminology_region_gives_the_organ(mrml):
    _node, segments = _segments(["L2 @ t0"])
    segments["L2 @ t0"].SetTag("TerminologyEntry", LIVER_NEOPLASM)
    assert segment_anatomy(segments["L2 @ t0"]) == SegmentAnatomy("Liver", False, "terminology")


@pytest.mark.parametrize("terminology, organ", [(LYMPH_NODE_TYPE, "lymph node"),
                                                (NODE_REGION_NEOPLASM, "Axillary lymph node")])
def test_a_lymph_node_type_or_region_makes_it_nodal(mrml, terminology, organ):
    _node, segments = _segments(["N1 @ t0"])
    segments["N1 @ t0"].SetTag("TerminologyEntry", terminology)
    assert segment_anatomy(segments["N1 @ t0"]) == SegmentAnatomy(organ, True, "terminology")


@pytest.mark.parametrize("terminology", [None, PLAIN_TISSUE, "not~a~terminology"])
def test_a_segment_that_says_nothing(mrml, terminology):
    _node, segments = _segments(["Segment_1"])
    segment = segments["Segment_1"]
    if terminology is None:
        segment.RemoveTag("TerminologyEntry")
    else:
        segment.SetTag("TerminologyEntry", terminology)
    assert segment_anatomy(segment) == SegmentAnatomy("", False, "")


def test_lesion_ids_of_segment_names():
    assert [lesion_id_of_segment(name) for name in ("L1 @ t2", "Liver met 3 @ 2024-05-01", "Segment_1",
                                                    "P1 @ t1 (proposal)")] == [
        "L1", "Liver met 3", "Segment_1", "P1 @ t1 (proposal)"]


def test_pending_proposals_are_not_lesions_until_accepted(mrml):
    from DTTLib.segmentation.nnunet_scene import PROPOSAL_TAG, accept_proposal

    baseline, base_segments = _segments(["L1 @ t0"], "t0")
    follow_up, segments = _segments(["L1 @ t1", "P1 @ t1 (proposal)", "X9 @ t1"], "t1")
    base_segments["L1 @ t0"].SetTag("TerminologyEntry", LIVER_NEOPLASM)
    segments["P1 @ t1 (proposal)"].SetTag(PROPOSAL_TAG, "0.800")
    segments["P1 @ t1 (proposal)"].SetTag("TerminologyEntry", LIVER_NEOPLASM)
    segments["X9 @ t1"].SetTag(PROPOSAL_TAG, "0.600")  # the tag, not the name, marks a proposal
    assert [segment.GetName() for _id, segment in lesion_segments(follow_up)] == ["L1 @ t1"]
    assert set(lesion_anatomy([baseline, follow_up])) == {"L1"}
    accept_proposal(follow_up, "P1 @ t1 (proposal)", "L3", "t1")
    assert [segment.GetName() for _id, segment in lesion_segments(follow_up)] == ["L1 @ t1", "L3 @ t1"]
    assert lesion_anatomy([baseline, follow_up])["L3"] == {"organ": "Liver", "nodal": False,
                                                            "origin": "terminology"}


def test_baseline_first_and_the_user_wins(mrml):
    baseline, t0 = _segments(["L1 @ t0", "L2 @ t0", "N1 @ t0", "Segment_1"], "t0")
    follow_up, t1 = _segments(["L1 @ t1", "L2 @ t1", "N1 @ t1"], "t1")
    write_lesion_anatomy(t0["L1 @ t0"], "liver", False)
    t1["L1 @ t1"].SetTag("TerminologyEntry", NODE_REGION_NEOPLASM)  # later and weaker: ignored
    t1["L2 @ t1"].SetTag("TerminologyEntry", LIVER_NEOPLASM)  # the baseline says nothing: the follow-up tells
    t0["N1 @ t0"].SetTag("TerminologyEntry", LYMPH_NODE_TYPE)
    found = lesion_anatomy([baseline, None, follow_up])
    assert found == {"L1": {"organ": "liver", "nodal": False, "origin": "tag"},
                     "L2": {"organ": "Liver", "nodal": False, "origin": "terminology"},
                     "N1": {"organ": "lymph node", "nodal": True, "origin": "terminology"},
                     "Segment_1": {"organ": "", "nodal": False, "origin": ""}}
    text = with_anatomy_entry("{}", "L1", " lung ", False)
    text = with_anatomy_entry(text, "N1", "", True)
    text = with_anatomy_entry(text, "Z7", "bone", False)  # no such lesion: not listed
    assert json.loads(text) == {"L1": {"organ": "lung", "nodal": False}, "N1": {"organ": "", "nodal": True},
                                "Z7": {"organ": "bone", "nodal": False}}
    user = lesion_anatomy([baseline, follow_up], parse_anatomy_entries(text))
    assert user["L1"] == {"organ": "lung", "nodal": False, "origin": "user"}
    assert user["N1"] == {"organ": "lymph node", "nodal": True, "origin": "user"}  # empty organ keeps the segment's
    assert user["L2"]["origin"] == "terminology" and "Z7" not in user


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\"liver\"", "null"])
def test_unreadable_entries_give_nothing(text):
    assert parse_anatomy_entries(text) == {}


def test_entries_are_read_defensively():
    text = json.dumps({"L1": {"organ": " liver ", "nodal": 1}, "L2": "lung", "3": {"nodal": False}})
    assert parse_anatomy_entries(text) == {"L1": {"organ": "liver", "nodal": True},
                                           "3": {"organ": "", "nodal": False}}
    assert parse_anatomy_entries("") == {}
    # setting an entry on unreadable text starts over rather than failing
    assert json.loads(with_anatomy_entry("{broken", "L1", "liver", False)) == {"L1": {"organ": "liver",
                                                                                      "nodal": False}}
