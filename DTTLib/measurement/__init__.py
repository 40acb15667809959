"""Measurements of lesion masks in physical units (mm, mm³, RAS)."""

from DTTLib.measurement.basic import centroid_ras, mask_volume_mm3, voxel_volume_mm3

__all__ = ["centroid_ras", "mask_volume_mm3", "voxel_volume_mm3"]
