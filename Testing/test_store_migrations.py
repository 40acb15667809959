"""Schema migrations: a store written at schema version 1 is upgraded in place on both
backends with every row kept, and then accepts growth fits owned by a patient (the SOD series)
with their what-if scenarios; export/import and ``dtt store verify`` handle those rows."""

from __future__ import annotations

import json
import sqlite3

import pytest

from DTTLib.cli.main import main
from DTTLib.errors import InputError
from DTTLib.store import (
    Embedding, GrowthFit, Measurement, Patient, Scenario, migrations, open_store)
from DTTLib.store.records import new_id, utc_now
from store_fixtures import clustered, pg_server, pg_url, populate  # noqa: F401

TABLES = ("patients", "studies", "timepoints", "lesions", "measurements", "growth_fits", "scenarios",
          "embeddings", "audit_log", "meta")


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path) -> str:
    return str(tmp_path / "old.sqlite") if request.param == "sqlite" else request.getfixturevalue("pg_url")


def _only_version_1(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the store code create schema 1, as the previous release did."""
    every = migrations.migrations
    monkeypatch.setattr(migrations, "migrations",
                        lambda dialect, vector_type="vector": [m for m in every(dialect, vector_type) if m.version == 1])


def _snapshot(store) -> dict[str, list[dict]]:
    order = {"audit_log": "seq", "meta": "key", "embeddings": "seq"}
    return {table: store._read(f"SELECT * FROM {table} ORDER BY {order.get(table, 'id')}") for table in TABLES}


def _write_v1_fit(store, lesion_id: str) -> GrowthFit:
    """A lesion's fit as schema 1 stored it (no patient_id column), with its audit entry."""
    fit = GrowthFit(lesion_id=lesion_id, model="gompertz", parameters={"r": 0.01}, metrics={"aicc": 3.2})
    row = fit.to_row()
    del row["patient_id"]
    with store._tx() as cur:
        store._insert(cur, "growth_fits", row)
        store._append_audit(cur, "dtt", "add", "store", {"records": [["growth_fits", fit.id]]}, [row])
    return fit


def test_a_version_1_store_is_upgraded_in_place_and_accepts_patient_fits(location, monkeypatch, capsys):
    assert migrations.latest_version() == 2
    vectors = clustered(4, 16, seed=5)
    with monkeypatch.context() as patch:
        _only_version_1(patch)
        with open_store(location) as old:
            assert old.schema_version() == 1
            assert "patient_id" not in {r["name"] for r in _columns(old, "growth_fits")}
            patient, point, lesions = populate(old, lesions=4)
            old.add(Measurement(lesion_id=lesions[0].id, timepoint_id=point.id, quantity="ld_mm", value=21.5, unit="mm"))
            fit = _write_v1_fit(old, lesions[0].id)
            old.add(Scenario(fit_id=fit.id, name="holiday", parameters={"days": [60, 90]}, result={"median": [1.0, 2.0]}))
            old.add_embeddings([Embedding(lesion_id=l.id, vector=v) for l, v in zip(lesions, vectors)])
            before = _snapshot(old)
            nearest = [h.lesion.id for h in old.similar(lesions[0].id, k=2)]
    if not location.startswith("postgres"):  # `dtt store verify` reads an old store without upgrading it
        assert main(["store", "verify", "--db", location]) == 0
        assert "store OK" in capsys.readouterr().out
        with open_store(location, readonly=True) as still_old:
            assert still_old.schema_version() == 1

    with open_store(location) as new:  # this DTT: migrates to version 2 on open
        assert new.schema_version() == 2
        after = _snapshot(new)
        for table, rows in before.items():
            assert len(after[table]) == len(rows), table
            assert [{k: r[k] for k in rows[0]} for r in after[table]] == rows, table  # same values, every column
        assert [r["patient_id"] for r in after["growth_fits"]] == [None]
        assert new.get(GrowthFit, fit.id).subject == ("lesion", lesions[0].id)
        assert [h.lesion.id for h in new.similar(lesions[0].id, k=2)] == nearest
        assert new.verify() == []

        sod = new.add(GrowthFit(patient_id=patient.id, model="claret", parameters={"k": 0.004},
                                metrics={"series": "SOD"}))
        new.add(Scenario(fit_id=sod.id, name="natural history", parameters={"kind": "hypothesis"},
                         result={"t": [0.0, 56.0], "median": [60.0, 71.5]}))
        assert [f.id for f in new.find(GrowthFit, patient_id=patient.id)] == [sod.id]
        assert new.get(GrowthFit, sod.id).subject == ("patient", patient.id)
        assert new.find(Scenario, fit_id=sod.id)[0].result["median"] == [60.0, 71.5]
        # the database itself (not only GrowthFit.validate) refuses two owners or none
        for lesion_id, patient_id in ((lesions[1].id, patient.id), (None, None)):
            with pytest.raises(InputError, match="refused"), new._tx() as cur:
                new._insert(cur, "growth_fits", {"id": new_id(), "lesion_id": lesion_id, "patient_id": patient_id,
                                                 "model": "m", "parameters": "{}", "metrics": "{}",
                                                 "created_at": utc_now()})
        with pytest.raises(InputError, match="exactly one owner"):
            new.add(GrowthFit(lesion_id=lesions[1].id, patient_id=patient.id, model="m"))
        # references still enforced on the rebuilt table
        with pytest.raises(InputError, match="refused"):
            new.add(GrowthFit(patient_id="no-such-patient", model="m"))
        with pytest.raises(InputError, match="refused"):
            new.add(Scenario(fit_id="no-such-fit", name="x"))
        assert new.verify() == []
    with open_store(location) as again:  # nothing applied twice
        assert [r["version"] for r in again._read("SELECT version FROM schema_version ORDER BY version")] == [1, 2]
        assert len(again.find(GrowthFit)) == 2


def _columns(store, table: str) -> list[dict]:
    if store.dialect == "sqlite":
        return store._read(f"PRAGMA table_info({table})")
    return store._read("SELECT column_name AS name FROM information_schema.columns WHERE table_name = %s", (table,))


def test_a_newer_store_is_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    open_store(path).close()
    raw = sqlite3.connect(path)
    raw.execute("INSERT INTO schema_version VALUES (99, 'from the future', 'now')")
    raw.commit()
    raw.close()
    with pytest.raises(InputError, match="schema version 99"):
        open_store(path)


def test_patient_fits_and_scenarios_survive_export_import_and_verify(tmp_path, pg_url, capsys):
    source = str(tmp_path / "a.sqlite")
    with open_store(source) as s:
        patient, _, lesions = populate(s, lesions=2)
        lesion_fit = GrowthFit(lesion_id=lesions[0].id, model="gompertz", parameters={"r": 0.02})
        sod_fit = GrowthFit(patient_id=patient.id, model="claret", parameters={"k": 0.004}, metrics={"series": "SOD"})
        scenario = Scenario(fit_id=sod_fit.id, name="therapy holiday", parameters={"kind": "hypothesis"},
                            result={"t": [0.0, 28.0], "median": [50.0, None]})
        s.add_many([lesion_fit, sod_fit, scenario])
        assert s.verify() == []
    assert main(["store", "export", str(tmp_path / "exp"), "--db", source]) == 0
    capsys.readouterr()
    for target in (str(tmp_path / "b.sqlite"), pg_url):
        assert main(["store", "import", str(tmp_path / "exp"), "--db", target, "--json"]) == 0
        counts = json.loads(capsys.readouterr().out)
        assert counts["growth_fits"] == 2 and counts["scenarios"] == 1
        with open_store(target) as t:
            fits = {f.id: f for f in t.find(GrowthFit)}
            assert fits[sod_fit.id].subject == ("patient", patient.id)
            assert fits[lesion_fit.id].subject == ("lesion", lesions[0].id)
            assert t.find(Scenario, fit_id=sod_fit.id)[0].result == scenario.result
        assert main(["store", "verify", "--db", target]) == 0
        capsys.readouterr()

    document = json.loads((tmp_path / "exp" / "store.json").read_text())
    bad_rows = {"two owners": lambda row: row.update(lesion_id=lesions[1].id, patient_id=patient.id),
                "unknown column": lambda row: row.update({"model) VALUES ('x'); --": "x"})}
    for name, change in bad_rows.items():
        broken = json.loads(json.dumps(document))
        change(next(r for r in broken["tables"]["growth_fits"] if r["id"] == sod_fit.id))
        folder = tmp_path / name.replace(" ", "_")
        folder.mkdir()
        (folder / "store.json").write_text(json.dumps(broken))
        (folder / "audit.json").write_text((tmp_path / "exp" / "audit.json").read_text())
        assert main(["store", "import", str(folder), "--db", str(tmp_path / "c.sqlite")]) == 2, name
        assert ("exactly one owner" if name == "two owners" else "unknown column") in capsys.readouterr().err
    with open_store(tmp_path / "c.sqlite") as c:
        assert c.find(GrowthFit) == [] and c.find(Patient) == []  # nothing partial


def test_verify_reports_a_patient_fit_whose_patient_is_gone(tmp_path, capsys):
    path = tmp_path / "s.sqlite"
    with open_store(path) as s:
        patient = s.add(Patient(pseudonym="alone"))
        s.add(GrowthFit(patient_id=patient.id, model="exponential"))
    raw = sqlite3.connect(path)  # foreign keys are off in a raw connection: a hand edit
    raw.execute("DELETE FROM patients WHERE id = ?", (patient.id,))
    raw.commit()
    raw.close()
    assert main(["store", "verify", "--db", str(path), "--json"]) == 1
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert any("growth_fits references a missing patients row" in p for p in problems), problems


def test_growth_fit_owner_is_checked_before_writing():
    with pytest.raises(InputError, match="exactly one owner"):
        GrowthFit(model="m").validate()
    fit = GrowthFit(lesion_id="", patient_id="p1", model="m")
    fit.validate()
    assert fit.lesion_id is None and fit.subject == ("patient", "p1")
    versions = [(m.version, m.description) for m in migrations.migrations("sqlite")]
    assert versions == [(m.version, m.description) for m in migrations.migrations("postgres")]
    assert [v for v, _ in versions] == list(range(1, migrations.latest_version() + 1))
