"""The main job end to end on the synthetic phantom, whose truth is known.

One real run (LiteMedSAM on CPU, registration, tracking, RECIST, growth, what-if, narrative,
store, scene, report) is shared by the checks below; it is the slowest test of the suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from DTTLib.demo.phantom import PhantomSpec, make_phantom
from DTTLib.pipeline.run import run_case

ROOT = Path(__file__).resolve().parents[1]


def recist_by_hand(sods: list[float]) -> list[str]:
    """RECIST 1.1 target response from a SOD series (no non-targets, no new lesions)."""
    out, nadir = [], sods[0]
    for sod in sods[1:]:
        if sod >= 1.2 * nadir and sod - nadir >= 5.0:
            out.append("PD")
        elif sod <= 0.7 * sods[0]:
            out.append("PR")
        else:
            out.append("SD")
        nadir = min(nadir, sod)
    return out


@pytest.fixture(scope="module")
def phantom_run(tmp_path_factory):
    case = make_phantom(tmp_path_factory.mktemp("phantom-case"))
    out = tmp_path_factory.mktemp("phantom-out")
    events = []
    result = run_case(case.case_dir, out, progress=events.append)
    result.events = events  # what a progress display saw
    return case, out, result


def test_measurements_match_the_truth(phantom_run):
    case, _out, result = phantom_run
    spec = PhantomSpec()
    rows = {(r["lesion"], r["day"]): r for r in result.twin.lesion_table}

    def errors(lesions):
        volume, diameter = [], []
        for lesion in lesions:
            for day in spec.days:
                truth = case.truth_for(lesion.lesion_id, day)
                row = rows[(lesion.lesion_id, day)]
                volume.append(abs(row["volume_mm3"] - truth.volume_mm3) / truth.volume_mm3)
                diameter.append(abs(row["ld_mm"] - truth.longest_diameter_mm))
        return np.array(volume), np.array(diameter)

    # issue 7's tolerances (≤ 10 % volume, ≤ 2 mm longest diameter) hold for every lesion at
    # every timepoint — boxes are given at baseline only and carried over by registration, and
    # the small lesions shrink to 3–7 mm nodes on 2.5 mm slices by the end
    volume, diameter = errors(spec.lesions)
    assert volume.max() <= 0.10 and diameter.max() <= 2.0, (volume.round(3), diameter.round(2))
    assert np.median(volume) <= 0.05, volume  # measured 1 %: typical error is well inside the limit


def test_progress_counts_every_segmentation_and_names_every_step(phantom_run):
    _case, _out, result = phantom_run
    counted = [e for e in result.events if e.total]
    assert [e.done for e in counted] == list(range(18)) and {e.total for e in counted} == {18}
    assert {e.step for e in counted} == {"segment"} and str(counted[-1]).endswith("(18/18)")
    steps = [e.step for e in result.events if not e.message]
    assert sorted(steps) == sorted(result.timings)  # one event as each timed step starts
    assert steps.index("load model") == steps.index("segment") + 1  # loaded inside it, when first needed
    assert sum("registering" in e.message for e in result.events) == 5


def test_recist_sequence_follows_the_true_sizes(phantom_run):
    case, _out, result = phantom_run
    spec = PhantomSpec()
    true_sods = [sum(case.truth_for(l.lesion_id, d).short_axis_mm if l.nodal
                     else case.truth_for(l.lesion_id, d).longest_diameter_mm for l in spec.lesions)
                 for d in spec.days]
    expected = recist_by_hand(true_sods)
    measured = [tp["target_response"] for tp in result.twin.recist["timepoints"][1:]]
    # where the truth sits within 1.5 mm of a threshold the measured call may go either way
    margins = []
    nadir = true_sods[0]
    for sod in true_sods[1:]:
        margins.append(min(abs(sod - 0.7 * true_sods[0]), abs(sod - 1.2 * nadir)))
        nadir = min(nadir, sod)
    for want, got, margin in zip(expected, measured, margins):
        if margin > 1.5:
            assert got == want, (expected, measured, margins)
    # the truth's regrowth ends at PD (+21 % over the nadir) only 0.4 mm above the threshold, so
    # the last call may go either way; the response earlier (PR at −34 %, 2.6 mm clear) may not
    assert expected[-1] == "PD" and "PR" in expected and "PR" in measured


def test_true_model_family_is_among_the_best_weighted(phantom_run):
    _case, _out, result = phantom_run
    sod = result.twin.series("SOD")
    assert sod.status == "ok"
    weights = {name: model["akaike_weight"] for name, model in sod.models.items()}
    best_two = sorted(weights, key=weights.get, reverse=True)[:2]
    # the phantom grows by a Claret TGI model with resistance; Stein's regrowth model has the
    # same regression–regrowth shape, so one of the two must carry the most weight
    assert {"claret", "stein"} & set(best_two), weights
    assert all(curve.label.startswith("HYPOTHESIS") for curve in result.twin.whatif)


def test_outputs_exist_and_the_report_only_references_real_files(phantom_run):
    _case, out, _result = phantom_run
    for name in ("scene.mrb", "twin.json", "measurements.csv", "report.html", "dtt-run.log"):
        assert (out / name).is_file(), name
    assert not list(out.glob(".staging-*")) and not list(out.glob(".previous-*"))

    class Links(HTMLParser):
        def __init__(self):
            super().__init__()
            self.hrefs = []

        def handle_starttag(self, tag, attrs):
            if tag == "a":
                self.hrefs.append(dict(attrs)["href"])

    links = Links()
    links.feed((out / "report.html").read_text())
    assert links.hrefs, "the report links its PNG files"
    for href in links.hrefs:
        assert (out / href).is_file(), href
    document = json.loads((out / "twin.json").read_text())
    assert document["schema"] == "dtt-twin/1"
    assert len(document["case"]["timepoints"]) == 6
    assert document["narrative"]["grounding"]["ungrounded"] == []
    # how each outline was made is on record: the CT rule refined the edges of every segmentation
    for entry in document["segmentations"]:
        assert entry["window"] == "slice" and entry["outline"].startswith("model; edges refined on "), entry


def test_scene_bundle_reloads_with_every_node(phantom_run, mrml):
    from DTTLib.mrml.hierarchy import describe
    from DTTLib.mrml.segmentations import list_segments
    from DTTLib.mrml.storage import load_scene_mrb

    _case, out, result = phantom_run
    load_scene_mrb(out / "scene.mrb")
    scene = mrml.scene
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 6
    segment_names = {info.name for n in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))
                     for info in list_segments(scene.GetNthNodeByClass(n, "vtkMRMLSegmentationNode"))}
    assert {f"{l.lesion_id} @ t{i}" for l in PhantomSpec().lesions for i in range(6)} <= segment_names
    assert scene.GetNumberOfNodesByClass("vtkMRMLMarkupsLineNode") >= 18
    assert scene.GetNumberOfNodesByClass("vtkMRMLPlotChartNode") >= 3
    assert scene.GetFirstNodeByName(f"{result.twin.patient} narrative") is not None
    tree = describe()
    assert len(tree) == 1 and len(tree[0].studies) == 6


def test_the_main_module_opens_the_run_output_with_a_live_what_if(phantom_run, mrml):
    """DigitalTwinTumor's "Open run output": the scene comes back, and the what-if engine
    rebuilt from twin.json reproduces the run's own scenario curves and drives the chart."""
    from slicer_module_harness import load_module_file

    from DTTLib.mrml.twin_nodes import find_twin_nodes
    from DTTLib.twin.whatif import DEFAULT_SCENARIOS

    _case, out, result = phantom_run
    module = load_module_file(ROOT / "DigitalTwinTumor" / "DigitalTwinTumor.py")
    logic = module.DigitalTwinTumorLogic()
    summary = logic.openRunOutput(str(out))
    assert logic.hasTwin() and logic.reportPath == str(out / "report.html")
    assert summary.startswith(f"{result.twin.patient}: 6 timepoints opened")
    assert mrml.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 6
    for scenario, saved in zip(DEFAULT_SCENARIOS, result.twin.whatif):
        again = logic.whatif.run(scenario)
        np.testing.assert_allclose(np.array(again.median, float), np.array(saved.median, float), rtol=1e-9)
        np.testing.assert_allclose(np.array(again.hi80, float), np.array(saved.hi80, float), rtol=1e-9)
    label = logic.updateWhatIf(natural_history=True)
    assert "hypothesis" in label.lower()
    chart = find_twin_nodes(result.twin.patient)["growth"]
    live = [chart.GetNthPlotSeriesNode(i) for i in range(chart.GetNumberOfPlotSeriesNodes())]
    assert any(s.GetAttribute("DTT.Live") == "1" for s in live)


def test_opening_a_folder_that_is_not_a_run_output_names_the_fix(tmp_path):
    from DTTLib.errors import InputError
    from DTTLib.pipeline.open_output import open_run_output

    with pytest.raises(InputError, match="has no twin.json"):
        open_run_output(tmp_path)
    (tmp_path / "twin.json").write_text(json.dumps({"schema": "something-else/9", "twin": {}}))
    with pytest.raises(InputError, match="schema 'something-else/9'"):
        open_run_output(tmp_path)


def test_store_holds_the_run_without_identity(phantom_run):
    import sqlite3

    _case, out, result = phantom_run
    assert result.store.counts["Measurement"] >= 18 * 3
    with sqlite3.connect(out / "store.sqlite") as connection:
        dump = "\n".join(connection.iterdump())
    assert result.twin.patient not in dump  # the pseudonym is a keyed hash


def test_rerun_reuses_the_cache_and_a_failed_run_keeps_the_outputs(phantom_run):
    case, out, first = phantom_run
    second = run_case(case.case_dir, out)
    assert second.cache_misses == 0 and second.cache_hits >= 18
    assert "load model" in first.timings and "load model" not in second.timings  # nothing to segment
    assert second.twin.lesion_table == first.twin.lesion_table
    before = {name: (out / name).read_bytes() for name in ("report.html", "twin.json", "measurements.csv", "scene.mrb")}
    original = (case.case_dir / "case.json").read_text()
    broken = json.loads(original)
    broken["lesions"][0]["box"]["ijk"] = [900, 900, 5, 950, 950, 5]
    (case.case_dir / "case.json").write_text(json.dumps(broken))
    try:
        completed = run_cli("run", str(case.case_dir), "--out", str(out))
    finally:
        (case.case_dir / "case.json").write_text(original)
    assert completed.returncode == 2, completed.stderr
    assert "outside the image" in completed.stderr and len(completed.stderr.strip().splitlines()) == 1
    for name, content in before.items():
        assert (out / name).read_bytes() == content, f"{name} changed after a failed run"
    assert (out / "dtt-run.failed.log").is_file()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "DTTLib.cli.main", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)


def test_bad_cases_fail_with_one_clear_line(tmp_path):
    case = make_phantom(tmp_path / "case", PhantomSpec(days=(0.0, 42.0), shape=(12, 40, 40)))
    case_file = case.case_dir / "case.json"
    data = json.loads(case_file.read_text())
    for edit, message in ((lambda c: c["timepoints"][1].update(path="missing.nrrd"), "not found"),
                          (lambda c: c.update(timepoints=c["timepoints"][:1]), "at least 2")):
        changed = json.loads(json.dumps(data))
        edit(changed)
        case_file.write_text(json.dumps(changed))
        completed = run_cli("run", str(case.case_dir), "--out", str(tmp_path / "out"))
        assert completed.returncode == 2, completed.stderr
        assert message in completed.stderr and "Traceback" not in completed.stderr
        assert len(completed.stderr.strip().splitlines()) == 1
