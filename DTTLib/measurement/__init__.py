"""Measurements of lesion masks in physical units (mm, mm³, RAS)."""

from DTTLib.measurement.basic import centroid_ras, mask_volume_mm3, voxel_volume_mm3
from DTTLib.measurement.diameters import (
    LesionMeasurement,
    LesionPiece,
    measure_lesion,
    slice_diameters,
)

__all__ = ["LesionMeasurement", "LesionPiece", "centroid_ras", "mask_volume_mm3", "measure_lesion",
           "slice_diameters", "voxel_volume_mm3"]
