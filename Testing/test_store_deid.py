"""De-identification on import: a DICOM series with planted identifiers leaves no trace in the store."""

from __future__ import annotations

import sqlite3
from datetime import date
from pathlib import Path

import pydicom
import pytest

from DTTLib.errors import InputError
from DTTLib.imaging import read_dicom_series
from DTTLib.store import Study, Timepoint, open_store
from DTTLib.store.deid import IDENTIFYING, Deidentifier, import_header, load_or_create_key
from test_imaging_dicom import make_series

PLANTED = {
    "PatientName": "Plantedname^Zebulon", "PatientID": "MRN-99887766", "PatientBirthDate": "19510317",
    "PatientAddress": "17 Quarantine Lane Springfield", "InstitutionName": "Saint Plantedia Hospital",
    "ReferringPhysicianName": "Refdoc^Ophelia", "PerformingPhysicianName": "Perfdoc^Ignatius",
    "OperatorsName": "Operator^Quentin", "PatientTelephoneNumbers": "555-0199-42",
    "AccessionNumber": "ACC-31415926", "OtherPatientIDs": "OTHER-27182818",
    "StudyDescription": "CT chest for Zebulon Plantedname", "InstitutionAddress": "1 Hospital Road Plantville",
    "StudyDate": "20240102",
}
PRIVATE_VALUE = "PRIVATE-SECRET-Xyzzy"


def _plant(folder: Path) -> None:
    for file in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(file)
        for keyword, value in PLANTED.items():
            setattr(ds, keyword, value)
        block = ds.private_block(0x0011, "PLANTED CREATOR", create=True)
        block.add_new(0x01, "LO", PRIVATE_VALUE)
        ds.save_as(file, enforce_file_format=True)


def _needles() -> list[bytes]:
    values = [v for k, v in PLANTED.items() if k != "StudyDate"] + [PRIVATE_VALUE]
    parts = [p for v in values for p in v.replace("^", " ").split() if len(p) >= 5]
    return sorted({s.encode() for s in values + parts + ["1951-03-17"]})


def test_planted_identifiers_never_reach_the_store(tmp_path, monkeypatch):
    monkeypatch.delenv("DTT_DEID_KEY", raising=False)
    folder = tmp_path / "dicom"
    written = make_series(folder, n=3)
    _plant(folder)
    volume = read_dicom_series(folder)
    assert volume.metadata["dicom"]["PatientName"] == PLANTED["PatientName"]  # the reader does see them
    db = tmp_path / "store" / "s.sqlite"
    db.parent.mkdir()
    key = load_or_create_key(db.with_name("deid.key"))
    deid = Deidentifier(key, shift_dates=True)
    with open_store(db) as store:
        full = pydicom.dcmread(next(folder.glob("*.dcm")))  # the complete header, private tags included
        first = import_header(store, full, deid, timepoint="t0")
        again = import_header(store, volume.metadata["dicom"], deid, timepoint="t1", days_from_baseline=90)
        assert again["patient"].id == first["patient"].id  # same patient → same pseudonym, no duplicate
        study = store.find(Study)[0]
        assert len(store.find(Study)) == 1 and len(store.find(Timepoint)) == 2
        assert study.modality == "CT" and study.study_uid_hash and study.study_uid_hash != written["study_uid"]
        assert study.accession_hash == deid.hash("accession", PLANTED["AccessionNumber"])
        shift = deid.shift_days(PLANTED["PatientID"])
        assert -365 <= shift <= -1
        assert date.fromisoformat(study.study_date) == date(2024, 1, 2).__add__(__import__("datetime").timedelta(days=shift))
    # Every byte of the store (database, WAL, index) — and every value through plain sqlite3.
    blobs = b"".join(p.read_bytes() for p in db.parent.rglob("*") if p.is_file() and p.name != "deid.key")
    found = [n for n in _needles() if n in blobs or n.lower() in blobs.lower()]
    assert found == [], found
    raw = sqlite3.connect(db)
    tables = [r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    text = " ".join(str(v) for t in tables for row in raw.execute(f"SELECT * FROM {t}") for v in row)
    raw.close()
    assert not [n for n in _needles() if n.decode().lower() in text.lower()]
    assert written["uid"] not in text and written["study_uid"] not in text  # UIDs only as keyed hashes


def test_pseudonyms_are_keyed_and_dates_unshifted_unless_asked():
    a, b = Deidentifier(b"k" * 32), Deidentifier(b"j" * 32)
    header = {"PatientID": "P1", "StudyDate": "20240102", "Modality": "MR", "PatientName": "X^Y"}
    assert a.header(header).pseudonym != b.header(header).pseudonym
    assert a.header(header).pseudonym == Deidentifier(b"k" * 32, shift_dates=True).header(header).pseudonym
    assert a.header(header).study_date == "2024-01-02"
    assert set(vars(a.header(header))) >= {"pseudonym"} and "X^Y" not in repr(a.header(header))
    assert all(k not in a.header(header).attributes for k in IDENTIFYING)
    with pytest.raises(InputError, match="PatientID"):
        a.header({"Modality": "CT"})
