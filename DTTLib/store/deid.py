"""De-identification between DICOM import and the store.

Allow-list, not deny-list: only the attributes in :data:`KEPT` ever leave this module, so
names, ids, birth dates, addresses, institutions, physicians, operators, phone numbers,
free-text descriptions and every private tag are dropped by construction — including ones
nobody thought to list. Patient and accession ids and UIDs become keyed HMAC-SHA256 hashes
(without the key they cannot be reversed by trying candidate ids); dates are shifted by a
per-patient number of days when asked, so intervals between a patient's scans survive.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from DTTLib.errors import InputError, ResourceError

#: Attributes that identify a person or place; documented here and checked by the tests.
IDENTIFYING = (
    "PatientName", "PatientID", "OtherPatientIDs", "OtherPatientNames", "PatientBirthDate",
    "PatientBirthName", "PatientMotherBirthName", "PatientAddress", "PatientTelephoneNumbers",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "ReferringPhysicianName",
    "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers", "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy", "PhysiciansOfRecord", "OperatorsName", "AccessionNumber",
    "StationName", "StudyID", "RequestingPhysician", "StudyDescription", "SeriesDescription",
)
#: The only attributes kept (as is); dates and ids are handled separately below.
KEPT = ("Modality", "BodyPartExamined", "PatientSex", "SliceThickness")
DATES = ("StudyDate", "SeriesDate", "AcquisitionDate")
MAX_SHIFT_DAYS = 365
KEY_ENV = "DTT_DEID_KEY"


@dataclass
class DeidentifiedHeader:
    """What the store may keep about one series."""

    pseudonym: str
    accession_hash: str | None
    study_uid_hash: str | None
    series_uid_hash: str | None
    dates: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def study_date(self) -> str | None:
        return self.dates.get("StudyDate")


def load_or_create_key(path: str | Path) -> bytes:
    """The HMAC key: ``$DTT_DEID_KEY`` (hex) if set, else a random key kept in ``path`` (0600)."""
    if os.environ.get(KEY_ENV):
        try:
            key = bytes.fromhex(os.environ[KEY_ENV])
        except ValueError as error:
            raise InputError(f"{KEY_ENV} is not hexadecimal", "set it to 64 hex digits") from error
        if len(key) < 16:
            raise InputError(f"{KEY_ENV} is shorter than 16 bytes", "set it to 64 hex digits")
        return key
    path = Path(path)
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    key = secrets.token_bytes(32)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key.hex())
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, path)  # fails if another process created the key first: use theirs
    except FileExistsError:
        pass
    except OSError as error:
        raise ResourceError(f"cannot write the de-identification key {path}: {error.strerror}",
                            f"make the folder writable or set {KEY_ENV}") from error
    finally:
        tmp.unlink(missing_ok=True)
    return bytes.fromhex(path.read_text().strip())


def _value(source: Any, keyword: str) -> Any:
    if isinstance(source, dict):
        value = source.get(keyword)
    else:  # a pydicom Dataset: read by keyword only, so private tags are never touched
        element = source.get(keyword) if hasattr(source, "get") else None
        value = element
    if value is None:
        return None
    text = str(value).strip()
    return text or None


class Deidentifier:
    """Keyed pseudonyms and per-patient date shifts for one installation."""

    def __init__(self, key: bytes, *, shift_dates: bool = False) -> None:
        if len(key) < 16:
            raise InputError("de-identification key shorter than 16 bytes", "use a 32-byte random key")
        self._key = key
        self.shift_dates = shift_dates

    def hash(self, kind: str, value: str) -> str:
        return hmac.new(self._key, f"{kind}\x1f{value}".encode(), hashlib.sha256).hexdigest()[:32]

    def shift_days(self, patient_id: str) -> int:
        """Between −MAX_SHIFT_DAYS and −1, fixed per patient (same key → same shift)."""
        digest = hmac.new(self._key, f"date-shift\x1f{patient_id}".encode(), hashlib.sha256).digest()
        return -(1 + int.from_bytes(digest[:4], "big") % MAX_SHIFT_DAYS)

    def header(self, source: Any) -> DeidentifiedHeader:
        """De-identify a pydicom Dataset or a ``volume.metadata['dicom']`` dict."""
        patient_id = _value(source, "PatientID")
        if not patient_id:
            raise InputError("the DICOM header has no PatientID",
                             "give the series a patient id before import (it is stored only as a hash)")
        dates = {}
        for keyword in DATES:
            raw = _value(source, keyword)
            if raw:
                dates[keyword] = self._date(raw, patient_id)
        accession = _value(source, "AccessionNumber")
        study_uid = _value(source, "StudyInstanceUID")
        series_uid = _value(source, "SeriesInstanceUID")
        attributes = {k: v for k in KEPT if (v := _value(source, k)) is not None}
        if "SliceThickness" in attributes:
            try:
                attributes["SliceThickness"] = float(attributes["SliceThickness"])
            except ValueError:
                del attributes["SliceThickness"]
        if attributes.get("PatientSex") not in (None, "M", "F", "O"):
            del attributes["PatientSex"]
        return DeidentifiedHeader(
            pseudonym=self.hash("patient", patient_id),
            accession_hash=self.hash("accession", accession) if accession else None,
            study_uid_hash=self.hash("study-uid", study_uid) if study_uid else None,
            series_uid_hash=self.hash("series-uid", series_uid) if series_uid else None,
            dates=dates, attributes=attributes)

    def _date(self, raw: str, patient_id: str) -> str:
        """ISO date, shifted when asked; anything unparsable is dropped rather than kept."""
        digits = raw.replace("-", "")[:8]
        try:
            day = date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
        except ValueError:
            return ""
        if self.shift_dates:
            day += timedelta(days=self.shift_days(patient_id))
        return day.isoformat()


def import_header(store: Any, source: Any, deidentifier: Deidentifier, *, timepoint: str | None = None,
                  days_from_baseline: float | None = None, actor: str = "dtt") -> dict[str, Any]:
    """Create (or find) the pseudonymous patient, study and timepoint for one DICOM series."""
    from DTTLib.store.records import Patient, Study, Timepoint  # noqa: PLC0415

    header = deidentifier.header(source)
    records: list[Any] = []
    patients = store.find(Patient, pseudonym=header.pseudonym)
    patient = patients[0] if patients else Patient(pseudonym=header.pseudonym,
                                                  sex=header.attributes.get("PatientSex"))
    if not patients:
        records.append(patient)
    studies = (store.find(Study, patient_id=patient.id, study_uid_hash=header.study_uid_hash)
               if header.study_uid_hash and patients else [])
    study = studies[0] if studies else Study(
        patient_id=patient.id, study_uid_hash=header.study_uid_hash, accession_hash=header.accession_hash,
        study_date=header.study_date or None, modality=header.attributes.get("Modality"),
        body_part=header.attributes.get("BodyPartExamined"))
    if not studies:
        records.append(study)
    point = None
    if timepoint:
        found = store.find(Timepoint, patient_id=patient.id, label=timepoint) if patients else []
        point = found[0] if found else Timepoint(patient_id=patient.id, label=timepoint, study_id=study.id,
                                                 days_from_baseline=days_from_baseline)
        if not found:
            records.append(point)
    store.add_many(records, actor=actor, component="deid-import")
    return {"patient": patient, "study": study, "timepoint": point, "header": header}
