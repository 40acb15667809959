"""The synthetic patient's written scans agree with the truth it reports."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from DTTLib.demo.phantom import PhantomSpec, diameter_scale, make_phantom
from DTTLib.imaging import read_image


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return make_phantom(tmp_path_factory.mktemp("phantom"))


def test_labels_match_analytic_volumes_and_diameters(phantom):
    spec = PhantomSpec()
    case = json.loads((phantom.case_dir / "case.json").read_text())
    assert len(case["timepoints"]) >= 5
    for timepoint in case["timepoints"]:
        labels = read_image(phantom.case_dir / "truth" / timepoint["path"].replace(".nrrd", "_labels.nrrd"))
        voxel_mm3 = float(np.prod(labels.spacing))
        for number, lesion in enumerate(spec.lesions, start=1):
            truth = phantom.truth_for(lesion.lesion_id, timepoint["day"])
            voxels = int((labels.array == number).sum())
            assert voxels * voxel_mm3 == pytest.approx(truth.volume_mm3, rel=0.08), (lesion.lesion_id, timepoint)


def test_growth_truth_solves_the_claret_equation():
    lesion = PhantomSpec().lesions[0]
    therapy = PhantomSpec().therapy
    # integrate d ln y/dt = kg - kd E(t) exp(-lam (t - t0)) numerically, independently
    t = np.linspace(0, 200, 200001)
    exposure = np.array([sum(level for a, b, level in therapy if a <= x < b) for x in t])
    start = therapy[0][0]
    rate = lesion.kg - lesion.kd * exposure * np.exp(-lesion.lam * (t - start))
    log_ratio = np.concatenate([[0.0], np.cumsum((rate[1:] + rate[:-1]) / 2 * np.diff(t))])
    assert diameter_scale(lesion, 200.0, therapy) == pytest.approx(math.exp(log_ratio[-1]), rel=1e-4)


def test_case_file_boxes_contain_their_lesions(phantom):
    case = json.loads((phantom.case_dir / "case.json").read_text())
    labels = read_image(phantom.case_dir / "truth" / "tp0_day000_labels.nrrd").array
    for number, lesion in enumerate(case["lesions"], start=1):
        i0, j0, k0, i1, j1, k1 = lesion["box"]["ijk"]
        assert k0 == k1
        inside = labels[k0] == number
        j, i = np.nonzero(inside)
        assert inside.any() and i0 <= i.min() and i.max() <= i1 and j0 <= j.min() and j.max() <= j1
