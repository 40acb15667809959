"""The pipeline's store step keeps the twin's growth fits: each lesion's diameter fit under the
lesion, the sum-of-diameters (SOD) fit under the patient, and the what-if curves as that fit's
scenarios; read back from the store they equal what the twin computed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from DTTLib.growth.models import Exposure, get_model
from DTTLib.pipeline.store_step import CURVE_ARRAYS, store_run
from DTTLib.store import GrowthFit, Lesion, Patient, Scenario, open_store
from DTTLib.twin import SOD_SERIES, LesionMeasurement, TherapyEntry, TimepointInfo, TwinInputs, build_twin
from store_fixtures import pg_server, pg_url  # noqa: F401


def _twin():
    """Two lesions on therapy over five visits (Claret model with noise)."""
    days = [0.0, 42.0, 84.0, 126.0, 168.0]
    exposure = Exposure.from_log([(0.0, math.inf, 1.0)])
    noise = np.exp(0.02 * np.random.default_rng(11).standard_normal((2, len(days))))
    rows = []
    for j, (lesion, organ, size) in enumerate((("L1", "liver", 40.0), ("L2", "lung", 25.0))):
        sizes = get_model("claret").predict(np.array(days), [size, 0.004, 0.015, 0.012], exposure) * noise[j]
        rows += [LesionMeasurement(lesion, i, round(float(v), 1), organ=organ) for i, v in enumerate(sizes)]
    timepoints = [TimepointInfo(d, "none" if i == 0 else "nonCR_nonPD") for i, d in enumerate(days)]
    state, _ = build_twin(TwinInputs("Patient Real-Name", timepoints, rows, [TherapyEntry(0.0, None, 1.0, "drug")]))
    return state, [f"t{i}" for i in range(len(days))], days


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path) -> str:
    return str(tmp_path / "run.sqlite") if request.param == "sqlite" else request.getfixturevalue("pg_url")


def test_store_run_keeps_the_sod_fit_and_its_what_if_scenarios(location, tmp_path):
    state, labels, days = _twin()
    sod = state.series(SOD_SERIES)
    assert sod is not None and sod.selected and len(state.whatif) >= 2  # the case has something to store
    lesion_series = [s for s in state.growth if s.name.startswith("LD ") and s.selected]
    narrative = {"backend": "template", "text": "Partial response."}
    stored = store_run(location, tmp_path / "key", state, labels, days, {}, narrative, "prompt", "model-x")
    assert stored.counts["GrowthFit"] == 1 + len(lesion_series)
    assert stored.counts["Scenario"] == len(state.whatif)

    with open_store(location) as s:
        patient = s.get(Patient, stored.patient_record)
        assert patient is not None and patient.pseudonym != state.patient
        (fit,) = s.find(GrowthFit, patient_id=patient.id)
        assert fit.subject == ("patient", patient.id) and fit.lesion_id is None
        assert fit.model == sod.selected
        assert fit.parameters == sod.models[sod.selected]["params"]
        assert fit.metrics["series"] == SOD_SERIES and fit.metrics["points"] == len(sod.t) == len(days)
        assert sum(fit.metrics["weights"].values()) == pytest.approx(1.0)
        scenarios = {sc.name: sc for sc in s.find(Scenario, fit_id=fit.id)}
        assert set(scenarios) == {c.name for c in state.whatif}
        for curve in state.whatif:
            stored_curve = scenarios[curve.name]
            assert stored_curve.parameters == {"kind": "hypothesis", "label": curve.label}
            for key in CURVE_ARRAYS:
                assert stored_curve.result[key] == getattr(curve, key), (curve.name, key)
        for series in lesion_series:
            (lesion,) = s.find(Lesion, patient_id=patient.id, label=series.name.removeprefix("LD "))
            (lesion_fit,) = s.find(GrowthFit, lesion_id=lesion.id)
            assert lesion_fit.model == series.selected and lesion_fit.patient_id is None
            assert lesion_fit.metrics["series"] == series.name
            assert s.find(Scenario, fit_id=lesion_fit.id) == []
        assert s.verify() == []
