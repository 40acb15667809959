"""Images as plain records, their I/O and preprocessing (no MRML here)."""

from DTTLib.imaging.dicom import (
    DicomSeriesInfo,
    check_slice_geometry,
    find_dicom_series,
    read_dicom_series,
    read_series_info,
)
from DTTLib.imaging.io import read_image, sitk_to_volume, volume_to_sitk, write_image
from DTTLib.imaging.preprocess import (
    WindowPreset,
    apply_window,
    load_window_presets,
    nearest_axis_permutation,
    normalize_mr_percentiles,
    reorient_to_ras,
    resample_isotropic,
)
from DTTLib.imaging.volume import ImageVolume

__all__ = [
    "DicomSeriesInfo",
    "ImageVolume",
    "WindowPreset",
    "apply_window",
    "check_slice_geometry",
    "find_dicom_series",
    "load_window_presets",
    "nearest_axis_permutation",
    "normalize_mr_percentiles",
    "read_dicom_series",
    "read_image",
    "read_series_info",
    "reorient_to_ras",
    "resample_isotropic",
    "sitk_to_volume",
    "volume_to_sitk",
    "write_image",
]
