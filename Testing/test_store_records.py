"""Records round-trip on both backends; bad input is refused; the audit chain catches tampering."""

from __future__ import annotations

import hashlib
import sqlite3

import numpy as np
import pytest

from DTTLib.errors import InputError
from DTTLib.store import (
    Embedding, GrowthFit, LesionLink, MaskFile, Measurement, Narrative, RecistOverride, RecistResult,
    Scenario, open_store, sha256_file)
from store_fixtures import pg_server, pg_url, populate, store  # noqa: F401


def test_every_record_round_trips_with_one_audit_entry_per_write(store, tmp_path):
    patient, point, lesions = populate(store)
    mask = tmp_path / "m.nrrd"
    mask.write_bytes(b"mask-bytes")
    m = store.add(Measurement(lesion_id=lesions[0].id, timepoint_id=point.id, quantity="longest_diameter_mm",
                              value=21.5, unit="mm", source="ai_suggested", confidence=0.82))
    edited = store.add(Measurement(lesion_id=lesions[0].id, timepoint_id=point.id, quantity="longest_diameter_mm",
                                   value=20.0, unit="mm", source="edited", supersedes=m.id, actor="dr-a"))
    result = store.add(RecistResult(patient_id=patient.id, timepoint_id=point.id, response="SD",
                                    sum_diameters_mm=41.0, details={"targets": 2}))
    store.add(RecistOverride(result_id=result.id, response="PR", reason="lesion 2 is atelectasis"))
    fit = store.add(GrowthFit(lesion_id=lesions[0].id, model="gompertz", parameters={"r": 0.01}, metrics={"aic": 3.2}))
    store.add(Scenario(fit_id=fit.id, name="halved growth", parameters={"factor": 0.5}, result={"v365": 2.0}))
    store.add(Narrative(patient_id=patient.id, backend="template", prompt_sha256=hashlib.sha256(b"p").hexdigest(),
                        text="Stable disease."))
    store.add(LesionLink(from_lesion=lesions[0].id, to_lesion=lesions[1].id, relation="split", reason="two foci"))
    store.add(MaskFile(lesion_id=lesions[0].id, timepoint_id=point.id, path=str(mask), sha256=sha256_file(mask)))
    vector = np.arange(1, 9, dtype=np.float32)
    store.add_embeddings([Embedding(lesion_id=lesions[0].id, vector=vector, model="m1")])

    assert store.get(Measurement, edited.id).supersedes == m.id
    assert store.get(Measurement, m.id).confidence == pytest.approx(0.82)
    assert store.get(RecistResult, result.id).details == {"targets": 2}
    assert store.find(RecistOverride, result_id=result.id)[0].reason == "lesion 2 is atelectasis"
    assert store.get(GrowthFit, fit.id).parameters == {"r": 0.01}
    np.testing.assert_array_equal(store.embeddings(lesions[0].id)[0].vector, vector)
    assert len(list(store.audit_entries())) == 11  # populate + 10 writes
    assert store.verify() == []
    stats = store.stats()
    assert stats["counts"]["lesions"] == 6 and stats["embeddings"] == [{"kind": "appearance", "dim": 8, "count": 1}]


@pytest.mark.parametrize("bad", [
    dict(source="robot"), dict(confidence=1.5), dict(value=float("nan")), dict(quantity=""),
])
def test_invalid_measurements_are_refused_before_writing(store, bad):
    _, point, lesions = populate(store)
    before = len(list(store.audit_entries()))
    values = dict(lesion_id=lesions[0].id, timepoint_id=point.id, quantity="ld", value=1.0, unit="mm") | bad
    with pytest.raises(InputError):
        store.add(Measurement(**values))
    assert len(list(store.audit_entries())) == before


def test_override_without_reason_and_dangling_reference_are_refused(store):
    patient, point, _ = populate(store)
    with pytest.raises(InputError, match="reason"):
        store.add(RecistOverride(result_id="x", response="PR", reason="  "))
    with pytest.raises(InputError, match="refused"):  # foreign key: no such lesion
        store.add(Measurement(lesion_id="no-such", timepoint_id=point.id, quantity="ld", value=1, unit="mm"))
    assert store.find(Measurement) == []


def test_audit_log_is_append_only(store):
    populate(store)
    with pytest.raises(Exception, match="append-only"):
        with store._tx() as cur:
            cur.execute("UPDATE audit_log SET actor = 'mallory'")
    with pytest.raises(Exception, match="append-only"):
        with store._tx() as cur:
            cur.execute("DELETE FROM audit_log")


def test_tampering_and_truncation_are_detected(tmp_path):
    path = tmp_path / "s.sqlite"
    with open_store(path) as s:
        for _ in range(3):
            populate(s)
        assert s.verify() == []
    raw = sqlite3.connect(path)
    raw.execute("DROP TRIGGER audit_log_no_update")
    raw.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    raw.commit()
    with open_store(path) as s:
        assert any("entry 2 was altered" in p for p in s.verify())
    raw.execute("UPDATE audit_log SET actor = 'dtt' WHERE seq = 2")
    raw.execute("DROP TRIGGER audit_log_no_delete")
    raw.execute("DELETE FROM audit_log WHERE seq = 3")
    raw.commit()
    raw.close()
    with open_store(path) as s:
        problems = s.verify()
    assert any("recorded head is entry 3" in p for p in problems), problems


def test_changed_mask_file_is_reported(tmp_path):
    mask = tmp_path / "mask.seg.nrrd"
    mask.write_bytes(b"v1")
    with open_store(tmp_path / "s.sqlite") as s:
        _, point, lesions = populate(s)
        s.add(MaskFile(lesion_id=lesions[0].id, timepoint_id=point.id, path=mask.name, sha256=sha256_file(mask)))
        assert s.verify() == []
        mask.write_bytes(b"v2")
        assert any("changed since" in p for p in s.verify())
