"""Input records of a response assessment: lesions, timepoints, the case.

Plain frozen dataclasses so the rules code can be tested without files or MRML; JSON
parsing and its checks live in :mod:`DTTLib.response.parse`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

from DTTLib.response.rules import NODE_ORGAN_GROUP

TOO_SMALL = "too_small"
NOT_EVALUABLE = "not_evaluable"

#: A measurement in mm, or a marker: present but too small to measure (RECIST §4.3.2), or
#: not evaluable (not assessed, unreadable).
SizeValue = Union[float, Literal["too_small", "not_evaluable"]]

NonTargetStatus = Literal["none", "CR", "nonCR_nonPD", "PD", "NE"]
#: Non-target statuses: ``none`` = no non-target disease recorded.
NON_TARGET_VALUES: tuple[str, ...] = ("none", "CR", "nonCR_nonPD", "PD", "NE")


@dataclass(frozen=True)
class LesionMeasurement:
    """One lesion at one timepoint.

    ``ld_mm`` is the longest diameter, ``sa_mm`` the short axis (the RECIST measure for a
    lymph node). ``target`` is only meaningful at baseline: ``True``/``False`` are user
    overrides, ``None`` lets the automatic selection decide.
    """

    id: str
    organ: str
    nodal: bool
    ld_mm: SizeValue | None
    sa_mm: SizeValue | None = None
    target: bool | None = None
    volume_mm3: float | None = None

    @property
    def organ_group(self) -> str:
        """Organ used for the two-per-organ limit: all lymph nodes are one organ (§4.2)."""
        return NODE_ORGAN_GROUP if self.nodal else self.organ.strip().lower()

    @property
    def recist_size(self) -> SizeValue | None:
        """The RECIST measure: short axis for nodes, longest diameter otherwise (§4.2)."""
        if self.nodal:
            if self.sa_mm is None and isinstance(self.ld_mm, str):
                return self.ld_mm
            return self.sa_mm
        return self.ld_mm

    @property
    def measure_name(self) -> str:
        return "SA" if self.nodal else "LD"


@dataclass(frozen=True)
class Timepoint:
    """One assessment. The first timepoint of a case is the baseline.

    ``new_lesions`` says whether unequivocal new lesions are present.
    ``new_lesion_measurements`` optionally measures them (ids stable across timepoints) so
    iRECIST can track new-lesion targets apart from the target sum.
    ``non_target_further_increase`` (iRECIST only, optional) refines a ``PD`` non-target
    status after a non-target iUPD: ``True`` = increased further since the last assessment
    (confirms iCPD); ``False`` = still progressed, no further increase (stays iUPD); ``None``
    = not assessed (stays iUPD, and the reason says so: iCPD needs evidence, see
    DTTLib.response.irecist).
    """

    day: float
    lesions: tuple[LesionMeasurement, ...]
    non_target: str = "none"
    new_lesions: bool = False
    new_lesion_measurements: tuple[LesionMeasurement, ...] = ()
    non_target_further_increase: bool | None = None

    def lesion(self, lesion_id: str) -> LesionMeasurement | None:
        for lesion in self.lesions:
            if lesion.id == lesion_id:
                return lesion
        return None


@dataclass(frozen=True)
class Case:
    """A patient's assessments plus the trial settings that change the rules."""

    timepoints: tuple[Timepoint, ...]
    immunotherapy: bool = False
    confirmation_required: bool = False
    min_sd_days: float = 42.0
    slice_thickness_mm: float | None = None

    @property
    def baseline(self) -> Timepoint:
        return self.timepoints[0]

    @property
    def follow_ups(self) -> tuple[Timepoint, ...]:
        return self.timepoints[1:]
