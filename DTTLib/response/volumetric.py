"""Volumetric equivalents of the RECIST thresholds — a supplementary readout, not RECIST.

RECIST 1.1 is defined on diameters. For a sphere V ∝ d³, so a diameter change ``p`` maps to
a volume change ``(1 + p)³ − 1``: +20 % diameter ≈ +72.8 % volume (PD), −30 % diameter ≈
−65.7 % volume (PR). Eisenhauer et al. 2009 (§2, "volumetric assessment") leave volumetry
to future work, hence every volumetric category here is labelled "supplementary, not RECIST".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from DTTLib.response.records import LesionMeasurement

LABEL = "supplementary, not RECIST"


def volume_change_from_diameter_change(diameter_change_pct: float) -> float:
    """Percent volume change of a sphere whose diameter changes by ``diameter_change_pct``."""
    return ((1.0 + diameter_change_pct / 100.0) ** 3 - 1.0) * 100.0


def diameter_change_from_volume_change(volume_change_pct: float) -> float:
    """Inverse of :func:`volume_change_from_diameter_change`."""
    return ((1.0 + volume_change_pct / 100.0) ** (1.0 / 3.0) - 1.0) * 100.0


#: +20 % diameter → +72.8 % volume; −30 % diameter → −65.7 % volume.
VOLUME_PD_PCT = volume_change_from_diameter_change(20.0)
VOLUME_PR_PCT = volume_change_from_diameter_change(-30.0)


@dataclass(frozen=True)
class VolumetricReadout:
    total_volume_mm3: float
    change_from_baseline_pct: float | None
    change_from_nadir_pct: float | None
    category: str | None
    label: str = LABEL


def total_target_volume(lesions: Iterable[LesionMeasurement], target_ids: Iterable[str]
                        ) -> float | None:
    """Sum of target volumes; a target recorded as 0 mm counts 0 mm³; any other gap → None."""
    by_id = {lesion.id: lesion for lesion in lesions}
    total = 0.0
    for target_id in target_ids:
        lesion = by_id.get(target_id)
        if lesion is None:
            return None
        if lesion.volume_mm3 is not None:
            total += lesion.volume_mm3
        elif lesion.recist_size == 0:
            continue
        else:
            return None
    return total


def volumetric_category(total: float, baseline: float, nadir: float) -> str:
    """vCR (no volume left), vPD (≥ +72.8 % over the nadir), vPR (≤ −65.7 % from baseline), else vSD."""
    tol = 1e-9
    if total == 0:
        return "vCR"
    if nadir > 0 and (total / nadir - 1.0) * 100.0 >= VOLUME_PD_PCT - tol:
        return "vPD"
    if nadir == 0:
        return "vPD"
    if baseline > 0 and (total / baseline - 1.0) * 100.0 <= VOLUME_PR_PCT + tol:
        return "vPR"
    return "vSD"


def volumetric_readout(total: float | None, baseline: float | None, nadir: float | None
                       ) -> VolumetricReadout | None:
    """Readout for one follow-up, given the baseline total and the nadir of earlier totals."""
    if total is None or baseline is None:
        return None
    from_base = (total / baseline - 1.0) * 100.0 if baseline > 0 else None
    from_nadir = (total / nadir - 1.0) * 100.0 if nadir else None
    category = volumetric_category(total, baseline, nadir if nadir is not None else baseline)
    return VolumetricReadout(total, from_base, from_nadir, category)


def volumetric_thresholds() -> Mapping[str, float]:
    return {"pd_volume_change_pct": VOLUME_PD_PCT, "pr_volume_change_pct": VOLUME_PR_PCT}
