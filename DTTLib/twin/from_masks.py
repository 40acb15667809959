"""Lesion masks per timepoint → measurements (LD, SA, volume) + tracked identities → twin inputs.

Measurement is ``DTTLib.measurement.diameters.measure_lesion`` (RECIST LD/SA on the best slice);
tracking is ``DTTLib.tracking``. Each measurement names its source (scan, segment, slice) so a
number in a report can be traced back to the voxels it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from DTTLib.imaging.volume import ImageVolume
from DTTLib.measurement.diameters import measure_lesion
from DTTLib.tracking import TimepointLesions, observation_from_mask, track_timepoints
from DTTLib.tracking.records import IdentityGraph
from DTTLib.twin.records import LesionMeasurement, TherapyEntry, TimepointInfo, TwinInputs


@dataclass
class TimepointMasks:
    day: float
    scan: ImageVolume
    masks: dict[str, np.ndarray]
    non_target: str = "none"
    organs: dict[str, str] = field(default_factory=dict)
    nodal: set[str] = field(default_factory=set)
    source: str = ""
    non_target_further_increase: bool | None = None  # the reader's iRECIST call (TimepointInfo)


def measure_timepoint(tp: TimepointMasks, index: int) -> tuple[TimepointLesions, list[LesionMeasurement]]:
    observations, measurements = [], []
    for lid, mask in tp.masks.items():
        if not np.any(mask):
            continue
        m = measure_lesion(mask, tp.scan)
        observations.append(observation_from_mask(lid, index, mask, tp.scan))
        where = (f"LD/SA on slice k={m.slice_index}" if len(m.pieces) <= 1 else  # fragments: LD is a sum
                 f"LD summed over {len(m.pieces)} pieces, SA of the largest on slice k={m.slice_index}")
        src = (f"{tp.source or tp.scan.name} segment '{lid}': {where}"
               + (f" ({'; '.join(m.notes)})" if m.notes else ""))
        nodal = lid in tp.nodal
        measurements.append(LesionMeasurement(lid, index, round(m.longest_diameter_mm, 2),
                                              round(m.short_axis_mm, 2), round(m.volume_mm3, 1),
                                              tp.organs.get(lid, "unspecified"), nodal, None, src))
    return TimepointLesions(float(tp.day), observations, tp.scan), measurements


def inputs_from_masks(patient: str, timepoints: list[TimepointMasks], therapy: list[TherapyEntry] | None = None,
                      register_scans: bool = True, registrations: list | None = None,
                      **settings) -> tuple[TwinInputs, IdentityGraph]:
    """Measure every mask, track lesions across timepoints, and return the twin's inputs.

    ``registrations[k]`` (k ≥ 1), when given, maps timepoint k−1 to k (already computed, e.g. by
    the pipeline's box carry-over); the others are computed when ``register_scans``."""
    measured = [measure_timepoint(tp, i) for i, tp in enumerate(timepoints)]
    graph = track_timepoints([m[0] for m in measured], patient, register_scans=register_scans,
                             registrations=registrations)
    measurements = [x for m in measured for x in m[1]]
    infos = [TimepointInfo(float(tp.day), tp.non_target, tp.source or tp.scan.name,
                           non_target_further_increase=tp.non_target_further_increase) for tp in timepoints]
    return TwinInputs(patient, infos, measurements, list(therapy or []), graph.to_dict(), **settings), graph
