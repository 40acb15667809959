"""Write one run of the twin into the store (records, mask files with hashes, vectors).

The patient is stored under a keyed pseudonym only; every write is one audited transaction
in the store itself, so a crash leaves either the whole record or none of it.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from DTTLib.store import (Embedding, GrowthFit, Lesion, MaskFile, Measurement, Narrative, Patient,
                          RecistResult, Scenario, Timepoint, open_store, sha256_file)
from DTTLib.store.deid import Deidentifier, load_or_create_key
from DTTLib.store.descriptors import growth_trajectory, shape_descriptor
from DTTLib.twin.assemble import SOD_SERIES
from DTTLib.twin.records import TwinState

ACTOR = "dtt run"
COMPONENT = "pipeline"
CURVE_ARRAYS = ("t", "median", "lo80", "hi80", "lo95", "hi95")  # a what-if Curve's values, as stored


@dataclass
class StoredRun:
    location: str
    patient_record: str
    counts: dict[str, int] = field(default_factory=dict)


def store_run(db: str, key_path: Path, state: TwinState, timepoint_labels: list[str], days: list[float],
              masks: dict[tuple[str, str], tuple[np.ndarray, tuple[float, float, float], Path, Path]],
              narrative: dict[str, Any], prompt_text: str, model_name: str,
              appearance: dict[tuple[str, str], np.ndarray] | None = None) -> StoredRun:
    """Store the run; ``masks`` maps (lesion, timepoint label) → (mask, spacing, written file, final path).

    The file is hashed where it was written (a staging folder) and recorded under the path it
    will have once the run's outputs are swapped in."""
    deid = Deidentifier(load_or_create_key(key_path))
    store = open_store(db)
    try:
        pseudonym = deid.hash("patient", state.patient)
        existing = store.find(Patient, pseudonym=pseudonym)
        patient = existing[0] if existing else Patient(pseudonym=pseudonym)
        new: list[Any] = [] if existing else [patient]
        timepoints = []
        for label, day in zip(timepoint_labels, days):
            found = store.find(Timepoint, patient_id=patient.id, label=label) if existing else []
            timepoints.append(found[0] if found else Timepoint(patient_id=patient.id, label=label,
                                                                days_from_baseline=day))
            new += [] if found else [timepoints[-1]]
        targets = {t["id"] for t in (state.recist or {}).get("targets", [])}
        organs = {row["lesion"]: row["organ"] for row in state.lesion_table}
        lesions: dict[str, Lesion] = {}
        for lesion_id in sorted({row["lesion"] for row in state.lesion_table}):
            found = store.find(Lesion, patient_id=patient.id, label=lesion_id) if existing else []
            lesions[lesion_id] = found[0] if found else Lesion(patient_id=patient.id, label=lesion_id,
                                                                organ=organs.get(lesion_id), is_target=lesion_id in targets)
            new += [] if found else [lesions[lesion_id]]
        records = new + _run_records(store, state, patient, timepoints, timepoint_labels, lesions, masks,
                                     narrative, prompt_text, model_name, bool(existing))
        store.add_many(records, actor=ACTOR, component=COMPONENT)  # one transaction: all or nothing
        embeddings = _embeddings(lesions, timepoints, timepoint_labels, masks, state, appearance or {}, model_name)
        for lesion in lesions.values() if existing else ():  # a re-run replaces the lesion's vectors
            store.delete_embeddings(lesion.id, actor=ACTOR)
        if embeddings:
            store.add_embeddings(embeddings, actor=ACTOR, component=COMPONENT)
        counts: dict[str, int] = {}
        for record in records:
            counts[type(record).__name__] = counts.get(type(record).__name__, 0) + 1
        counts["Embedding"] = len(embeddings)
        return StoredRun(str(db), patient.id, counts)
    finally:
        store.close()


def _run_records(store: Any, state: TwinState, patient: Patient, timepoints: list[Timepoint], labels: list[str],
                 lesions: dict[str, Lesion], masks: dict, narrative: dict[str, Any], prompt_text: str,
                 model_name: str, patient_known: bool) -> list[Any]:
    records: list[Any] = []
    for row in state.lesion_table:
        timepoint = timepoints[int(row["timepoint"])]
        previous = ({(m.quantity): m.id for m in store.find(Measurement, lesion_id=lesions[row["lesion"]].id,
                                                               timepoint_id=timepoint.id)}
                    if patient_known else {})
        for quantity, unit in (("ld_mm", "mm"), ("sa_mm", "mm"), ("volume_mm3", "mm3")):
            if row.get(quantity) is not None:
                records.append(Measurement(lesion_id=lesions[row["lesion"]].id, timepoint_id=timepoint.id,
                                           quantity=quantity, value=float(row[quantity]), unit=unit,
                                           source="ai_suggested", actor=model_name,
                                           supersedes=previous.get(quantity)))
    for (lesion, label), (_mask, _spacing, written, final) in masks.items():
        if lesion in lesions:
            records.append(MaskFile(lesion_id=lesions[lesion].id, timepoint_id=timepoints[labels.index(label)].id,
                                    path=str(final), sha256=sha256_file(written)))
    if state.recist:
        for index, tp in enumerate(state.recist["timepoints"]):
            records.append(RecistResult(patient_id=patient.id, timepoint_id=timepoints[index].id,
                                        criteria=state.criteria, response=tp["overall"] or "baseline",
                                        sum_diameters_mm=tp["sod_mm"], details=tp))
    records += _growth_records(state, patient, lesions)
    records.append(Narrative(patient_id=patient.id, backend=narrative["backend"], model=narrative.get("model"),
                             text=narrative["text"], prompt_sha256=hashlib.sha256(prompt_text.encode()).hexdigest()))
    return records


def _growth_records(state: TwinState, patient: Patient, lesions: dict[str, Lesion]) -> list[Any]:
    """Fits of each series with a selected model: a lesion's diameter series belongs to the
    lesion, the sum of diameters (SOD) to the patient; the what-if curves, computed from the
    SOD fit, are stored as its scenarios (hypotheses, with their bands)."""
    records: list[Any] = []
    sod_fit = None
    for series in state.growth:
        if not series.selected:
            continue
        owner = lesions.get(series.name.removeprefix("LD ")) if series.name.startswith("LD ") else None
        if series.name != SOD_SERIES and owner is None:
            continue
        fit = GrowthFit(lesion_id=owner.id if owner else None,
                        patient_id=patient.id if series.name == SOD_SERIES else None, model=series.selected,
                        parameters=series.models.get(series.selected, {}).get("params", {}),
                        metrics={"series": series.name, "unit": series.unit, "status": series.status,
                                 "points": len(series.t),
                                 "weights": {m: v["akaike_weight"] for m, v in series.models.items()}})
        records.append(fit)
        if series.name == SOD_SERIES:
            sod_fit = fit
    if sod_fit is not None:
        for curve in state.whatif:
            values = asdict(curve)
            records.append(Scenario(fit_id=sod_fit.id, name=curve.name,
                                    parameters={"kind": curve.kind, "label": curve.label},
                                    result={key: values[key] for key in CURVE_ARRAYS}))
    return records


def _embeddings(lesions: dict[str, Lesion], timepoints: list[Timepoint], labels: list[str],
                masks: dict[tuple[str, str], tuple[np.ndarray, tuple[float, float, float], Path, Path]],
                state: TwinState, appearance: dict[tuple[str, str], np.ndarray], model_name: str) -> list[Embedding]:
    out = []
    for (lesion, label), (mask, spacing, _written, _final) in masks.items():
        if lesion not in lesions or not mask.any():
            continue
        timepoint_id = timepoints[labels.index(label)].id
        out.append(Embedding(lesion_id=lesions[lesion].id, kind="shape", vector=shape_descriptor(mask, spacing),
                             model="shape descriptor v1", timepoint_id=timepoint_id))
        if (lesion, label) in appearance:
            out.append(Embedding(lesion_id=lesions[lesion].id, kind="appearance",
                                 vector=appearance[(lesion, label)], model=f"{model_name} encoder (pooled in mask)",
                                 timepoint_id=timepoint_id))
    for lesion, record in lesions.items():
        rows = sorted((r["day"], r["volume_mm3"]) for r in state.lesion_table
                      if r["lesion"] == lesion and r["volume_mm3"])
        if len(rows) >= 2:
            days, volumes = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
            out.append(Embedding(lesion_id=record.id, kind="growth", vector=growth_trajectory(days, volumes),
                                 model="log volume trajectory v1"))
    return out
