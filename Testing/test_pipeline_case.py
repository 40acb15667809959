"""case.json parsing and the content-hash step cache."""

from __future__ import annotations

import json
import math

import pytest

from DTTLib.errors import InputError
from DTTLib.pipeline.cache import StepCache, file_digest, key_of
from DTTLib.pipeline.case import load_case


def write_case(folder, **overrides):
    (folder / "a.nrrd").write_bytes(b"x")
    (folder / "b.nrrd").write_bytes(b"y")
    case = {"patient": "P1",
            "timepoints": [{"id": "t0", "path": "a.nrrd", "day": 0}, {"id": "t1", "path": "b.nrrd", "day": 56}],
            "therapy": [{"start_day": 7, "end_day": 84, "dose_level": 1.0}],
            "lesions": [{"id": "L1", "organ": "liver", "box": {"timepoint": "t0", "ijk": [1, 2, 3, 4, 5, 3]}}]}
    case.update(overrides)
    (folder / "case.json").write_text(json.dumps(case))
    return folder


def test_a_good_case_is_read(tmp_path):
    case = load_case(write_case(tmp_path))
    assert [t.day for t in case.timepoints] == [0.0, 56.0]
    assert case.lesions[0].boxes[0].coordinates == (1, 2, 3, 4, 5, 3)
    assert case.therapy[0].end_day == 84.0


def test_dates_become_days(tmp_path):
    case = load_case(write_case(tmp_path, timepoints=[
        {"id": "t0", "path": "a.nrrd", "date": "2024-01-31"}, {"id": "t1", "path": "b.nrrd", "date": "2024-03-01"}]))
    assert [t.day for t in case.timepoints] == [0.0, 30.0]


@pytest.mark.parametrize("overrides,message", [
    ({"timepoints": []}, "no timepoints"),
    ({"timepoints": [{"id": "t0", "path": "missing.nrrd", "day": 0}]}, "not found"),
    ({"timepoints": [{"id": "t0", "path": "a.nrrd", "day": 5}, {"id": "t1", "path": "b.nrrd", "day": 5}]}, "increase"),
    ({"lesions": [{"id": "L1", "box": {"timepoint": "t9", "ijk": [1, 2, 3, 4, 5, 3]}}]}, "t9"),
    ({"lesions": [{"id": "L1", "box": {"timepoint": "t0", "ijk": [1, 2, 3]}}]}, "six numbers"),
    ({"lesions": [{"id": "L1", "box": {"timepoint": "t0", "ijk": [1.5, 2, 3, 4, 5, 3]}}]}, "non-integer"),
    ({"lesions": [{"id": "L1"}]}, "no box"),
    ({"therapy": [{"start_day": 10, "end_day": 5}]}, "end_day > start_day"),
    ({"timepoints": [{"id": "t0", "path": "a.nrrd", "day": "zero"}]}, "must be a number"),
])
def test_bad_cases_are_named(tmp_path, overrides, message):
    with pytest.raises(InputError, match=message):
        load_case(write_case(tmp_path, **overrides))


def test_missing_folder_and_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_case(tmp_path / "nope")
    with pytest.raises(InputError, match="no case.json"):
        load_case(tmp_path)


def test_cache_recomputes_only_when_inputs_change(tmp_path):
    cache = StepCache(tmp_path / "cache")
    calls = []
    compute = lambda value: (lambda: calls.append(value) or {"value": value})  # noqa: E731
    assert cache.get_or_compute("fit", {"a": 1}, compute(1)) == {"value": 1}
    assert cache.get_or_compute("fit", {"a": 1}, compute(2)) == {"value": 1}  # cached
    assert cache.get_or_compute("fit", {"a": 2}, compute(3)) == {"value": 3}
    assert calls == [1, 3] and (cache.hits, cache.misses) == (1, 2)
    forced = StepCache(tmp_path / "cache", force=True)
    assert forced.get_or_compute("fit", {"a": 1}, compute(4)) == {"value": 4}
    assert not list((tmp_path / "cache").rglob("*.partial"))


def test_digests_follow_content(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    first = file_digest(tmp_path / "f")
    (tmp_path / "f").write_bytes(b"abd")
    assert file_digest(tmp_path / "f") != first
    assert key_of("s", {"x": 1, "y": math.pi}) == key_of("s", {"y": math.pi, "x": 1})


def test_modality_is_read_for_the_case_and_per_timepoint(tmp_path):
    case = load_case(write_case(tmp_path, modality="ct", timepoints=[
        {"id": "t0", "path": "a.nrrd", "day": 0}, {"id": "t1", "path": "b.nrrd", "day": 56, "modality": "MR"}]))
    assert case.modality == "CT"
    assert [t.modality for t in case.timepoints] == ["", "MR"]


def test_a_modality_that_is_not_a_code_is_refused(tmp_path):
    with pytest.raises(InputError, match="not a modality code"):
        load_case(write_case(tmp_path, modality="C T!"))


def test_scan_modality_prefers_case_json_then_the_dicom_tag(tmp_path):
    import numpy as np  # noqa: PLC0415

    from DTTLib.imaging.volume import ImageVolume  # noqa: PLC0415
    from DTTLib.pipeline.segment_step import scan_modality  # noqa: PLC0415

    image = ImageVolume(np.zeros((2, 3, 3), np.float32), metadata={"dicom": {"Modality": "CT"}})
    plain = load_case(write_case(tmp_path))
    assert scan_modality(plain, "t0", image) == "CT"
    assert scan_modality(plain, "t0", ImageVolume(np.zeros((2, 3, 3), np.float32))) == ""
    stated = load_case(write_case(tmp_path, modality="MR"))
    assert scan_modality(stated, "t1", image) == "MR"


def test_carry_pairs_are_the_registrations_the_carry_overs_use(tmp_path):
    """The background registrations must be exactly the pairs the segmentation loop asks for."""
    from DTTLib.pipeline.segment_step import carry_pairs, carry_plan  # noqa: PLC0415

    for name in ("c.nrrd", "d.nrrd"):
        (tmp_path / name).write_bytes(b"z")
    timepoints = [{"id": f"t{i}", "path": p, "day": 30 * i} for i, p in enumerate(("a.nrrd", "b.nrrd", "c.nrrd", "d.nrrd"))]
    case = load_case(write_case(tmp_path, timepoints=timepoints, lesions=[
        {"id": "L1", "box": {"timepoint": "t0", "ijk": [1, 2, 3, 4, 5, 3]}},
        {"id": "L2", "box": {"timepoint": "t2", "ijk": [1, 2, 3, 4, 5, 3]}}]))
    # L1 walks forward from t0; L2 starts at t2, then the nearest not yet done (earlier on
    # ties): t1 from t2, t0 from t1, t3 from t2; the walks are interleaved step by step
    plan = carry_plan(case)
    assert [(lesion.lesion_id, t, ref) for lesion, t, ref in plan] == [
        ("L1", "t0", None), ("L2", "t2", None), ("L1", "t1", "t0"), ("L2", "t1", "t2"),
        ("L1", "t2", "t1"), ("L2", "t0", "t1"), ("L1", "t3", "t2"), ("L2", "t3", "t2")]
    assert carry_pairs(plan) == [("t0", "t1"), ("t2", "t1"), ("t1", "t2"), ("t1", "t0"), ("t2", "t3")]
