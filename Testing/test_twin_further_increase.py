"""iRECIST non-target "further increase" from case.json through `dtt run`'s twin step.

The expectations come from the guideline, not the code: with the target lesion unchanged, a
non-target status of PD at day 56 is RECIST PD, so iRECIST says iUPD (unconfirmed); at day 112
the non-target status is PD again, and progression is confirmed (iCPD) only when the non-target
disease grew further since day 56 (Seymour et al. 2017, Table 2). The reader's "no" keeps iUPD;
no answer keeps iUPD too, and the response must say the increase was not assessed.
(The Slicer module's path, readTwinInputs -> computeTwin, is in its self-test:
DigitalTwinTumorTest.test_NonTargetFurtherIncrease, run by test_module_selftests.py.)
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest

from DTTLib.errors import InputError
from DTTLib.imaging import ImageVolume
from DTTLib.imaging.io import write_image
from DTTLib.pipeline.case import load_case

ROOT = Path(__file__).resolve().parents[1]
SHAPE, SPACING = (20, 64, 64), (1.0, 1.0, 2.0)
DAYS = (0, 56, 112)


def _sphere(radius_mm: float = 10.0) -> np.ndarray:
    k, j, i = np.indices(SHAPE)
    return (((i - 32) ** 2 + (j - 32) ** 2 + ((k - 10) * 2.0) ** 2) <= radius_mm ** 2).astype(np.uint8)


def _case(folder: Path, last: dict, immunotherapy: bool = True) -> Path:
    """Three scans of one unchanged 20 mm lesion; non-target present at baseline, PD at day 56,
    PD again at day 112 with ``last`` merged into that timepoint."""
    for index in range(3):
        array = np.where(_sphere(), 300, 100).astype(np.int16)
        write_image(ImageVolume(array, SPACING, name=f"t{index}"), folder / f"t{index}.nrrd")
    timepoints = [{"id": "t0", "path": "t0.nrrd", "day": 0, "non_target": "nonCR_nonPD"},
                  {"id": "t1", "path": "t1.nrrd", "day": 56, "non_target": "PD"},
                  {"id": "t2", "path": "t2.nrrd", "day": 112, "non_target": "PD", **last}]
    case = {"patient": "FURTHER-1", "immunotherapy": immunotherapy, "timepoints": timepoints,
            "lesions": [{"id": "L1", "organ": "liver", "box": {"timepoint": "t0", "ijk": [20, 20, 10, 44, 44, 10]}}]}
    (folder / "case.json").write_text(json.dumps(case))
    return folder


def _run_twin(case_dir: Path):
    """`dtt run` after segmentation: its load step, then its twin step on the lesion's masks."""
    from DTTLib.pipeline.run import _load, _twin
    from DTTLib.pipeline.segment_step import LesionSegmentation
    from DTTLib.segmentation.box import VoxelBox

    case = load_case(case_dir)
    images, _digests = _load(case)
    box = VoxelBox(20, 20, 10, 44, 44, 10)
    segmentations = {("L1", t.timepoint_id): LesionSegmentation("L1", t.timepoint_id, _sphere(), box, "given",
                                                                "test sphere", True)
                     for t in case.timepoints}
    notes: list[str] = []
    twin, _measurements, inputs = _twin(case, images, segmentations, [None, None, None], notes)
    return case, twin, inputs


@pytest.mark.parametrize("last, expected, said", [
    ({"non_target_further_increase": True}, "iCPD", "further non-target increase"),
    ({"non_target_further_increase": False}, "iUPD", "no further increase"),
    ({}, "iUPD", "further increase not assessed"),
    ({"non_target_further_increase": None}, "iUPD", "further increase not assessed"),
])
def test_dtt_run_carries_the_readers_call_into_irecist(tmp_path, last, expected, said):
    case, twin, inputs = _run_twin(_case(tmp_path, last))
    flag = last.get("non_target_further_increase")
    assert case.timepoints[2].non_target_further_increase is flag
    assert inputs.timepoints[2].non_target_further_increase is flag
    assert twin.criteria == "iRECIST"
    assert [tp["day"] for tp in twin.recist["timepoints"]] == list(DAYS)
    assert twin.recist["timepoints"][1]["target_response"] == "SD"  # the target did not change
    assert [tp["overall"] for tp in twin.recist["timepoints"][1:]] == ["iUPD", expected]
    assert said in twin.recist["timepoints"][2]["overall_reason"]
    # twin.json says what the reader said, and what the engine was given
    assert [tp["non_target_further_increase"] for tp in twin.timepoints] == [None, None, flag]
    assert twin.recist_case["timepoints"][2].get("non_target_further_increase") is flag
    saved = json.loads(twin.to_json())
    assert saved["timepoints"][2]["non_target_further_increase"] is flag


def test_under_recist_1_1_the_call_changes_nothing(tmp_path):
    _case_spec, twin, _inputs = _run_twin(_case(tmp_path, {"non_target_further_increase": True},
                                                immunotherapy=False))
    assert twin.criteria == "RECIST 1.1"
    assert [tp["overall"] for tp in twin.recist["timepoints"][1:]] == ["PD", "PD"]


@pytest.mark.parametrize("where, value, message", [
    (2, "yes", "must be true, false or null"),
    (2, 1, "must be true, false or null"),
    (0, False, "first timepoint"),
])
def test_bad_further_increase_is_named_with_its_fix(tmp_path, where, value, message):
    folder = _case(tmp_path, {})
    case = json.loads((folder / "case.json").read_text())
    case["timepoints"][where]["non_target_further_increase"] = value
    (folder / "case.json").write_text(json.dumps(case))
    with pytest.raises(InputError, match=message):
        load_case(folder)


def test_a_further_increase_needs_non_target_pd(tmp_path):
    folder = _case(tmp_path, {"non_target": "nonCR_nonPD", "non_target_further_increase": True})
    with pytest.raises(InputError, match="non_target is 'nonCR_nonPD'") as error:
        load_case(folder)
    assert "set non_target to PD" in error.value.fix
    # "no further increase" with a non-PD status is merely redundant
    folder = _case(tmp_path, {"non_target": "nonCR_nonPD", "non_target_further_increase": False})
    assert load_case(folder).timepoints[2].non_target_further_increase is False


def test_the_timepoints_table_has_a_header_for_every_column():
    from slicer_module_harness import load_module_file

    module = load_module_file(ROOT / "DigitalTwinTumor" / "DigitalTwinTumor.py")
    tree = ElementTree.parse(ROOT / "DigitalTwinTumor" / "Resources" / "UI" / "DigitalTwinTumor.ui")
    table = next(w for w in tree.iter("widget") if w.get("name") == "timepointsTableWidget")
    headers = [column.find("property/string").text for column in table.findall("column")]
    columns = module.DigitalTwinTumorWidget.TIMEPOINT_COLUMNS
    assert len(headers) == len(columns)
    assert headers[columns.index("furtherIncrease")] == "Further increase"
    assert headers[columns.index("nonTarget")] == "Non-target"
    from DigitalTwinTumorLib.Common import FURTHER_INCREASE_CHOICES  # the module's feature parts (on the path now)

    assert FURTHER_INCREASE_CHOICES[0] == "not_assessed"  # the padding value of old scenes
