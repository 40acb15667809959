"""The records the store keeps, as plain dataclasses.

Each class names its table, so one generic ``add``/``get``/``find`` serves every record on
both backends. Validation lives here (not in SQL only) so both backends reject the same bad
input with the same clear :class:`~DTTLib.errors.InputError` before anything is written.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, ClassVar

import numpy as np

from DTTLib.errors import InputError

MEASUREMENT_SOURCES = ("manual", "ai_suggested", "ai_confirmed", "edited")
LINK_RELATIONS = ("same", "split", "merge")
EMBEDDING_KINDS = ("appearance", "shape", "growth")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def new_id() -> str:
    """Random ids, so records exported from one store import into another without clashes."""
    return uuid.uuid4().hex


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass
class Record:
    """Base: an id, a creation time, and the table it lives in."""

    TABLE: ClassVar[str] = ""
    JSON_FIELDS: ClassVar[tuple[str, ...]] = ()

    def validate(self) -> None:  # overridden where there is something to check
        """Raise InputError for values the store must never hold."""

    def to_row(self) -> dict[str, Any]:
        row = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in self.JSON_FIELDS:
            row[name] = json.dumps(row[name], sort_keys=True)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Record":
        values = {f.name: row[f.name] for f in fields(cls) if f.name in row}
        for name in cls.JSON_FIELDS:
            if isinstance(values.get(name), str):
                values[name] = json.loads(values[name])
        return cls(**values)


def _need(value: Any, what: str) -> None:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InputError(f"{what} is empty", f"give a non-empty {what}")


@dataclass
class Patient(Record):
    """A pseudonymous patient: ``pseudonym`` is a keyed hash, never a real id or name."""

    TABLE: ClassVar[str] = "patients"
    pseudonym: str = ""
    sex: str | None = None
    id: str = field(default_factory=new_id)
    created_at: str = field(default_factory=utc_now)

    def validate(self) -> None:
        _need(self.pseudonym, "patient pseudonym")


@dataclass
class Study(Record):
    TABLE: ClassVar[str] = "studies"
    patient_id: str = ""
    study_uid_hash: str | None = None
    accession_hash: str | None = None
    study_date: str | None = None  # shifted per patient when the import asked for it
    modality: str | None = None
    body_part: str | None = None
    id: str = field(default_factory=new_id)
    created_at: str = field(default_factory=utc_now)

    def validate(self) -> None:
        _need(self.patient_id, "study patient_id")


@dataclass
class Timepoint(Record):
    TABLE: ClassVar[str] = "timepoints"
    patient_id: str = ""
    label: str = ""
    study_id: str | None = None
    days_from_baseline: float | None = None
    id: str = field(default_factory=new_id)
    created_at: str = field(default_factory=utc_now)

    def validate(self) -> None:
        _need(self.patient_id, "timepoint patient_id")
        _need(self.label, "timepoint label")


@dataclass
class Lesion(Record):
    TABLE: ClassVar[str] = "lesions"
    patient_id: str = ""
    label: str = ""
    organ: str | None = None
    is_target: bool = False
    id: str = field(default_factory=new_id)
    created_at: str = field(default_factory=utc_now)

    def validate(self) -> None:
        _need(self.patient_id, "lesion patient_id")
        _need(self.label, "lesion label")

    def to_row(self) -> dict[str, Any]:
        row = super().to_row()
        row["is_target"] = int(bool(self.is_target))
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Lesion":
        lesion = super().from_row(row)
        lesion.is_target = bool(lesion.is_target)
        return lesion  # type: ignore[return-value]


@dataclass
class LesionLink(Record):
    """Identity across timepoints: the same lesion, or one that split or merged."""

    TABLE: ClassVar[str] = "lesion_links"
    from_lesion: str = ""
    to_lesion: str = ""
    relation: str = "same"
    reason: str | None = None
    actor: str | None = None
    id: str = field(default_factory=new_id)
    created_at: str = field(default_factory=utc_now)

    def validate(self) -> None:
        if self.relation not in LINK_RELATIONS:
            raise InputError(f"unknown lesion link relation {self.relation!r}",
                             f"use one of {', '.join(LINK_RELATIONS)}")
        if self.from_lesion == self.to_lesion:
            raise InputError("a lesion cannot be linked to itself", "link two different lesions")


@dataclass
class Measurement(Record):
    TABLE: ClassVar[str] = "measurements"
    lesion_id: str = ""
    timepoint_id: str = ""
    quantity: str = ""  # e.g. longest_diameter_mm, short_axis_mm, volume_ml
    value: float = 0.0
    unit: str = ""
    source: str = "manual"
    confidence: float | None = None
    supersedes: str | None = None  # the measurement an edit replaces
    actor: str | None = None
    id: str = field(default_factory=new_id)
    created_at: str = field(default_factory=utc_now)

    def validate(self) -> None:
        _need(self.lesion_id, "measurement lesion_id")
        _need(self.timepoint_id, "measurement timepoint_id")
        _need(self.quantity, "measurement quantity")
        if self.source not in MEASUREMENT_SOURCES:
            raise InputError(f"unknown measurement source {self.source!r}",
                             f"use one of {', '.join(MEASUREMENT_SOURCES)}")
        if not np.isfinite(self.value):
            raise InputError(f"measurement value {self.value!r} is not finite", "store a real number")
        if self.confidence is not None and not 0.0 <= float(self.confidence) <= 1.0:
            raise InputError(f"confidence {self.confidence} is outside [0, 1]",
                             "give a probability between 0 and 1")


@dataclass
class MaskFile(Record):
    """A mask on disk, pinned by its SHA-256 so a changed or swapped file is detected."""

    TABLE: ClassVar[str] = "masks"
    lesion_id: str = ""
    timepoint_id: str = ""
    path: str = ""
    sha256: str = ""
    id: str = field(default_factory=new_id)
    created_at: str = field(default_factory=utc_now)

    def validate(self) -> None:
        _need(self.path, "mask path")
        if not _SHA256.match(self.sha256 or ""):
            raise InputError(f"mask sha256 {self.sha256!r} is not 64 lowercase hex digits",
                             "compute it with DTTLib.store.sha256_file")


@dataclass
class RecistResult(Record):
    TABLE: ClassVar[str] = "recist_results"
    JSON_FIELDS: ClassVar[tuple[str, ...]] = ("details",)
    patient_id: str = ""
    timepoint_id: str = ""
    criteria: str = "RECIST 1.1"
    response: str = ""
    sum_diameters_mm: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_id)
    created_at: str = field(default_factory=utc_now)

    def validate(self) -> None:
        _need(self.response, "RECIST response")


@dataclass
class RecistOverride(Record):
    """A reader's override of a computed response; the reason is mandatory."""

    TABLE: ClassVar[str] = "recist_overrides"
    result_id: str = ""
    response: str = ""
    reason: str = ""
    actor: str | None = None
    id: str = field(default_factory=new_id)
    created_at: str = field(default_factory=utc_now)

    def validate(self) -> None:
        _need(self.response, "override response")
        _need(self.reason, "override reason")


@dataclass
class GrowthFit(Record):
    """A growth-model fit of one series: a lesion's (its diameter) or a patient's (the RECIST
    sum of diameters). Exactly one of ``lesion_id`` / ``patient_id`` is set (schema v2)."""

    TABLE: ClassVar[str] = "growth_fits"
    JSON_FIELDS: ClassVar[tuple[str, ...]] = ("parameters", "metrics")
    lesion_id: str | None = None
    model: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    patient_id: str | None = None
    id: str = field(default_factory=new_id)
    created_at: str = field(default_factory=utc_now)

    @property
    def subject(self) -> tuple[str, str]:
        """("lesion", id) or ("patient", id): what the fitted series belongs to."""
        return ("lesion", self.lesion_id) if self.lesion_id else ("patient", self.patient_id or "")

    def validate(self) -> None:
        _need(self.model, "growth model name")
        self.lesion_id = self.lesion_id or None
        self.patient_id = self.patient_id or None
        if (self.lesion_id is None) == (self.patient_id is None):
            raise InputError("a growth fit needs exactly one owner: lesion_id or patient_id",
                             "set lesion_id for a lesion's series, patient_id for the sum of diameters")


@dataclass
class Scenario(Record):
    """A what-if run on a fit (of a lesion or of a patient); always a hypothesis, never advice."""

    TABLE: ClassVar[str] = "scenarios"
    JSON_FIELDS: ClassVar[tuple[str, ...]] = ("parameters", "result")
    fit_id: str = ""
    name: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_id)
    created_at: str = field(default_factory=utc_now)

    def validate(self) -> None:
        _need(self.name, "scenario name")


@dataclass
class Narrative(Record):
    TABLE: ClassVar[str] = "narratives"
    patient_id: str = ""
    backend: str = ""
    model: str | None = None
    prompt_sha256: str = ""
    text: str = ""
    id: str = field(default_factory=new_id)
    created_at: str = field(default_factory=utc_now)

    def validate(self) -> None:
        _need(self.backend, "narrative backend")
        if not _SHA256.match(self.prompt_sha256 or ""):
            raise InputError("narrative prompt_sha256 is not 64 lowercase hex digits",
                             "store hashlib.sha256(prompt.encode()).hexdigest()")


@dataclass
class Embedding(Record):
    """A vector describing one lesion (appearance), its mask shape, or its growth trajectory."""

    TABLE: ClassVar[str] = "embeddings"
    lesion_id: str = ""
    kind: str = "appearance"
    vector: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    model: str | None = None
    timepoint_id: str | None = None
    id: str = field(default_factory=new_id)
    created_at: str = field(default_factory=utc_now)

    def validate(self) -> None:
        _need(self.lesion_id, "embedding lesion_id")
        if self.kind not in EMBEDDING_KINDS:
            raise InputError(f"unknown embedding kind {self.kind!r}",
                             f"use one of {', '.join(EMBEDDING_KINDS)}")
        vector = np.asarray(self.vector, dtype=np.float32)
        if vector.ndim != 1 or not 1 <= vector.size <= 2000:
            raise InputError(f"embedding has shape {vector.shape}",
                             "give a 1-D vector of 1 to 2000 values")
        if not np.isfinite(vector).all() or not np.any(vector):
            raise InputError("embedding contains NaN/inf or is all zeros",
                             "cosine similarity needs a finite, non-zero vector")
        self.vector = vector

    @property
    def dim(self) -> int:
        return int(np.asarray(self.vector).size)


@dataclass
class AuditEntry:
    """One link of the hash chain; ``hash`` covers every field and the previous hash."""

    seq: int
    at: str
    actor: str
    action: str
    component: str
    parameters: str  # canonical JSON
    data_hash: str
    prev_hash: str
    hash: str


@dataclass
class SimilarHit:
    lesion: Lesion
    score: float  # cosine similarity, 1 = same direction
    embedding_id: str


RECORD_TYPES: tuple[type[Record], ...] = (
    Patient, Study, Timepoint, Lesion, LesionLink, Measurement, MaskFile, RecistResult,
    RecistOverride, GrowthFit, Scenario, Narrative)
BY_TABLE: dict[str, type[Record]] = {cls.TABLE: cls for cls in RECORD_TYPES}
