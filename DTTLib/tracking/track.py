"""Track lesions over a patient's timepoints: register consecutive scans, match, build the graph."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from DTTLib.errors import InputError
from DTTLib.imaging.volume import ImageVolume
from DTTLib.measurement.basic import centroid_ras, mask_volume_mm3
from DTTLib.tracking.appearance import Similarity, default_similarity
from DTTLib.tracking.matching import MatchOptions, match_pair
from DTTLib.tracking.records import IdentityGraph, LesionObservation
from DTTLib.tracking.registration import (
    RegistrationOptions,
    RegistrationResult,
    register,
    warp_mask_to_baseline,
)


@dataclass
class TimepointLesions:
    """One timepoint: its day, its scan (optional) and its segmented lesions."""

    day: float
    observations: list[LesionObservation]
    scan: ImageVolume | None = None


def observation_from_mask(lesion_id: str, timepoint: int, mask: np.ndarray, scan: ImageVolume,
                          embedding: np.ndarray | None = None) -> LesionObservation:
    """Centroid, volume and appearance of one lesion mask on its scan."""
    inside = np.asarray(mask) > 0
    values = np.asarray(scan.array, float)
    return LesionObservation(str(lesion_id), int(timepoint), centroid_ras(inside, scan), inside,
                             values[inside], (float(values.mean()), float(values.std())), embedding,
                             mask_volume_mm3(inside, scan))


def track_timepoints(timepoints: list[TimepointLesions], patient: str = "Patient",
                     registration: RegistrationOptions | None = None, register_scans: bool = True,
                     similarity: Similarity | None = default_similarity,
                     options: MatchOptions | None = None,
                     registrations: list[RegistrationResult | None] | None = None) -> IdentityGraph:
    """Identity graph over timepoints in day order; each scan is registered to the previous one.

    ``registrations[k]`` (k ≥ 1) may give the map from timepoint k−1 to k (e.g. from Slicer);
    otherwise it is computed when both scans exist and ``register_scans``, else identity.
    """
    days = [float(tp.day) for tp in timepoints]
    if days != sorted(days) or len(set(days)) != len(days):
        raise InputError(f"timepoint days {days} are not strictly increasing",
                         "order timepoints by day, one scan per day")
    graph = IdentityGraph(patient, days)
    for k, tp in enumerate(timepoints):
        ids = [o.lesion_id for o in tp.observations]
        if len(set(ids)) != len(ids):
            raise InputError(f"timepoint {k} has duplicate lesion ids {ids}", "give each lesion its own id")
        for o in tp.observations:
            if o.timepoint != k:
                raise InputError(f"lesion {o.lesion_id} says timepoint {o.timepoint} but is listed at {k}",
                                 "build observations with their timepoint index")
            graph.lesions.append(o.key)
    for k in range(1, len(timepoints)):
        prev, cur = timepoints[k - 1], timepoints[k]
        reg = registrations[k] if registrations and k < len(registrations) else None
        if reg is None and register_scans and prev.scan is not None and cur.scan is not None:
            reg = register(prev.scan, cur.scan, registration)
        reg = reg or RegistrationResult.identity()
        graph.registrations.append({"from": k - 1, "to": k, **reg.to_dict()})
        warped = {}
        if prev.scan is not None and cur.scan is not None:
            for o in cur.observations:
                if o.mask is not None:
                    warped[o.lesion_id] = warp_mask_to_baseline(o.mask, cur.scan, prev.scan, reg)
        pm = match_pair(prev.observations, cur.observations, reg, warped, similarity, options)
        graph.links += pm.links
        graph.events += pm.events
    return graph
