"""``dtt run`` with nnU-Net proposals: known lesions are found without boxes, new ones wait for
the reader.

A two-scan patient from the tiny nnU-Net's own generator (same organ, lesions changed): lesion
A is boxed at baseline only and shrinks at the follow-up, where lesion B appears. The real
tiny nnU-Net (Testing/data/tiny_nnunet) searches both scans and LiteMedSAM outlines A.
Without a decision B is listed and not counted (A's shrinkage alone: SD); once the reader
confirms B as new, RECIST says PD.

The lesions are rendered at 200 HU contrast, not the generator's 70: at 70 HU (contrast-to-noise
≈ 3.5 on a textured organ) LiteMedSAM itself segments A poorly even from a tight drawn box
(3-D Dice 0.30; 0.68 at 120 HU, 0.97 at 200 HU), which is not what this test is about.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nnunetv2")

from DTTLib.errors import InputError  # noqa: E402
from DTTLib.imaging.io import write_image  # noqa: E402
from DTTLib.measurement.diameters import measure_lesion  # noqa: E402
from DTTLib.pipeline.run import RunOptions, run_case  # noqa: E402
from DTTLib.segmentation.nnunet_synthetic import Ellipsoid, dice, make_case, render_case  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "Testing" / "data" / "tiny_nnunet"


def shrunk(lesion: Ellipsoid, factor: float) -> Ellipsoid:
    return Ellipsoid(lesion.center_ijk, tuple(r * factor for r in lesion.radii_mm))


@pytest.fixture(scope="module")
def patient(tmp_path_factory):
    folder = tmp_path_factory.mktemp("proposal-case")
    base = make_case(7101, lesions=2, radius_range=(6.0, 9.0))
    a, b = base.lesions
    rng = np.random.default_rng(7102)
    shape, spacing, organ = base.image.array.shape, base.image.spacing, base.organ_shape
    scans = [render_case(rng, shape, spacing, organ, (a,), "t0", contrast_hu=200.0),
             render_case(rng, shape, spacing, organ, (shrunk(a, 0.8), b), "t1", contrast_hu=200.0)]
    for name, scan in zip(("t0", "t1"), scans):
        write_image(scan.image, folder / f"{name}.nrrd")
    truth_a = scans[0].labels == 1
    k = int(truth_a.sum(axis=(1, 2)).argmax())
    jj, ii = np.nonzero(truth_a[k])
    case = {"patient": "PROPOSALS-001", "modality": "CT",
            "timepoints": [{"id": "t0", "path": "t0.nrrd", "day": 0}, {"id": "t1", "path": "t1.nrrd", "day": 56}],
            "lesions": [{"id": "A", "organ": "liver",
                         "box": {"timepoint": "t0", "ijk": [int(ii.min()) - 2, int(jj.min()) - 2, k,
                                                            int(ii.max()) + 2, int(jj.max()) + 2, k]}}],
            "proposals": {"model": f"nnunet:{TINY}"}}
    (folder / "case.json").write_text(json.dumps(case))
    return folder, case, scans


def rerun(folder: Path, out: Path, case: dict, decisions: list[dict]):
    case = json.loads(json.dumps(case))
    case["proposals"]["decisions"] = decisions
    (folder / "case.json").write_text(json.dumps(case))
    return run_case(folder, out, RunOptions(render=False))


@pytest.fixture(scope="module")
def first_run(patient, tmp_path_factory):
    folder, _case, _scans = patient
    out = tmp_path_factory.mktemp("proposal-out")
    events = []
    return out, run_case(folder, out, RunOptions(render=False), progress=events.append), events


def by_status(result, timepoint):
    return {(r.status, r.lesion) for r in result.proposals if r.timepoint == timepoint}


def test_the_known_lesion_is_found_at_follow_up_from_its_proposal(patient, first_run):
    _folder, _case, scans = patient
    out, result, events = first_run
    document = json.loads((out / "twin.json").read_text())
    at_t1 = next(s for s in document["segmentations"] if s["lesion"] == "A" and s["timepoint"] == "t1")
    assert at_t1["box_source"].startswith("nnU-Net proposal") and at_t1["proposal"]
    from DTTLib.imaging.io import read_image  # noqa: PLC0415

    mask = read_image(out / "masks" / "A_t1.nrrd").array > 0
    truth = scans[1].labels == 1
    assert dice(mask, truth) >= 0.8
    rows = {r["timepoint"]: r for r in result.twin.lesion_table if r["lesion"] == "A"}
    expected = measure_lesion(truth.astype(np.uint8), scans[1].image).longest_diameter_mm
    assert rows[1]["ld_mm"] == pytest.approx(expected, abs=2.0)
    assert any(e.step == "find lesions (nnU-Net)" for e in events)


def test_every_proposal_is_accounted_for_and_the_new_one_is_not_counted(first_run):
    out, result, _events = first_run
    assert by_status(result, "t0") == {("matched", "A")}
    assert by_status(result, "t1") == {("prompted", "A"), ("unconfirmed", "")}
    recist = result.twin.recist["timepoints"]
    assert recist[1]["overall"] == "SD"  # A shrank by ~20 %: stable, B is not counted yet
    assert any("not counted" in note and "t1" in note for note in result.notes)
    document = json.loads((out / "twin.json").read_text())
    assert {item["status"] for item in document["proposals"]["items"]} == {"matched", "prompted", "unconfirmed"}
    assert document["proposals"]["device"] == "cpu"
    page = (out / "report.html").read_text()
    assert "Lesion proposals (nnU-Net)" in page and "unconfirmed" in page
    # the open proposal is a tagged proposal segment in the scene, next to A's lesion segment
    from DTTLib.mrml.runtime import get_scene  # noqa: PLC0415
    from DTTLib.segmentation.nnunet_scene import pending_proposals  # noqa: PLC0415

    from DTTLib.mrml.lesions import read_lesion_anatomy  # noqa: PLC0415

    node = get_scene().GetFirstNodeByName("t1 lesions")
    assert len(pending_proposals(node)) == 1
    segment = node.GetSegmentation().GetSegment(node.GetSegmentation().GetSegmentIdBySegmentName("A @ t1"))
    assert read_lesion_anatomy(segment) == ("liver", False)  # the main module reads the organ from the tags


def test_the_readers_decision_makes_it_a_new_lesion_or_dismisses_it(patient, first_run):
    folder, case, scans = patient
    out, result, _ = first_run
    new_one = next(r for r in result.proposals if r.status == "unconfirmed")
    overlapped = scans[1].labels[tuple(np.round(np.linalg.inv(scans[1].image.ijk_to_ras())
                                                @ np.array([*new_one.centroid_ras, 1.0]))[[2, 1, 0]].astype(int))]
    assert overlapped == 2  # the unconfirmed proposal is lesion B
    confirmed = rerun(folder, out, case, [{"timepoint": "t1", "proposal": new_one.proposal_id, "decision": "new",
                                           "reason": "new liver lesion"}])
    assert confirmed.cache_misses == 0  # proposals and segmentations come from the cache
    assert confirmed.twin.recist["timepoints"][1]["overall"] == "PD"
    assert by_status(confirmed, "t1") == {("prompted", "A"), ("confirmed new", "")}
    rejected = rerun(folder, out, case, [{"timepoint": "t1", "proposal": new_one.proposal_id, "decision": "reject"}])
    assert rejected.twin.recist["timepoints"][1]["overall"] == "SD"
    assert by_status(rejected, "t1") == {("prompted", "A"), ("rejected", "")}
    with pytest.raises(InputError, match="P9 at t1"):
        rerun(folder, out, case, [{"timepoint": "t1", "proposal": "P9", "decision": "reject"}])
    (folder / "case.json").write_text(json.dumps(case))


@pytest.mark.parametrize("proposals,message", [
    ({"model": "litemedsam"}, "nnunet:"),
    ({"model": "nnunet:x", "decisions": [{"timepoint": "t0", "proposal": "P1", "decision": "new"}]}, "first scan"),
    ({"model": "nnunet:x", "decisions": [{"timepoint": "t1", "proposal": "P1", "decision": "maybe"}]}, "not one of"),
    ({"model": "nnunet:x", "decisions": [{"timepoint": "t7", "proposal": "P1", "decision": "new"}]}, "t7"),
    ({"model": "nnunet:x", "decisions": [{"timepoint": "t1", "decision": "new"}]}, "names no proposal"),
])
def test_bad_proposal_sections_are_named(tmp_path, proposals, message):
    from DTTLib.pipeline.case import load_case  # noqa: PLC0415

    for name in ("a.nrrd", "b.nrrd"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "case.json").write_text(json.dumps({
        "timepoints": [{"id": "t0", "path": "a.nrrd", "day": 0}, {"id": "t1", "path": "b.nrrd", "day": 56}],
        "lesions": [{"id": "L1", "box": {"timepoint": "t0", "ijk": [1, 2, 3, 4, 5, 3]}}],
        "proposals": proposals}))
    with pytest.raises(InputError, match=message):
        load_case(tmp_path)


def test_the_command_line_option_names_a_wrong_model(patient, tmp_path):
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    folder, _case, _scans = patient
    done = subprocess.run([sys.executable, "-m", "DTTLib.cli.main", "run", str(folder), "--out", str(tmp_path),
                           "--proposals", "litemedsam"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2 and "is not an nnU-Net model" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "twin.json").exists()
