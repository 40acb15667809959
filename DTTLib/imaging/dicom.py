"""DICOM series folders → :class:`ImageVolume` with patient/study/series tags.

GDCM (through SimpleITK) finds the series, sorts the slices and applies RescaleSlope and
RescaleIntercept; pydicom reads the descriptive tags and the per-slice positions. The slice
positions are checked here because ITK only *prints* a warning for missing or unevenly spaced
slices and then returns a volume whose measurements are silently wrong.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from DTTLib.errors import GeometryError, InputError
from DTTLib.imaging.io import _short, sitk_to_volume
from DTTLib.imaging.volume import ImageVolume

#: The DICOM attributes kept per series (field names are the DICOM keywords verbatim, so
#: ``metadata["dicom"]`` can be handed to subject-hierarchy code without renaming).
DICOM_KEYWORDS: tuple[str, ...] = (
    "PatientID", "PatientName", "PatientBirthDate",
    "StudyInstanceUID", "StudyDate", "StudyDescription",
    "SeriesInstanceUID", "SeriesDescription", "Modality", "SliceThickness",
)

#: Largest deviation (mm) between slice gaps still treated as uniform; Slicer uses 0.01 mm.
SPACING_TOLERANCE_MM = 1e-2


@dataclass
class DicomSeriesInfo:
    """What identifies one series, enough to build patient → study → series items.

    CamelCase fields are DICOM attributes under their DICOM keywords; the two snake_case
    fields are ours (how many files GDCM assigned to the series, and where they are).
    """

    PatientID: str = ""
    PatientName: str = ""
    PatientBirthDate: str = ""
    StudyInstanceUID: str = ""
    StudyDate: str = ""
    StudyDescription: str = ""
    SeriesInstanceUID: str = ""
    SeriesDescription: str = ""
    Modality: str = ""
    SliceThickness: float | None = None
    number_of_files: int = 0
    folder: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line for messages and pickers."""
        description = self.SeriesDescription or "(no description)"
        return (f"{self.SeriesInstanceUID}  {self.Modality or '?'}  '{description}'  "
                f"{self.number_of_files} files")


# -- tags ----------------------------------------------------------------------------
def _text(dataset: pydicom.Dataset, keyword: str) -> str:
    value = dataset.get(keyword, "")
    return "" if value is None else str(value).strip()


def _float_or_none(dataset: pydicom.Dataset, keyword: str) -> float | None:
    value = dataset.get(keyword, None)
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def read_series_info(file_names: list[str] | tuple[str, ...]) -> DicomSeriesInfo:
    """Read the descriptive tags of a series from its first readable file (no pixels)."""
    dataset = None
    for name in file_names:
        try:
            dataset = pydicom.dcmread(name, stop_before_pixels=True)
            break
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue
    if dataset is None:
        raise InputError("none of the series' files could be read as DICOM",
                         "the files are corrupt or not DICOM; export the series again")
    tags: dict[str, Any] = {keyword: _text(dataset, keyword) for keyword in DICOM_KEYWORDS}
    tags["SliceThickness"] = _float_or_none(dataset, "SliceThickness")
    return DicomSeriesInfo(**tags, number_of_files=len(file_names),
                           folder=str(Path(file_names[0]).parent) if file_names else "")


# -- discovery -----------------------------------------------------------------------
def _series_files(folder: Path) -> dict[str, tuple[str, ...]]:
    """Series UID → file names in GDCM's slice order."""
    # ITK prints "No Series were found" to stderr for folders without DICOM; we raise our
    # own error instead, so silence (and then restore) ITK's global warning switch.
    warnings_were_on = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
        return {uid: tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
                for uid in ids}
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warnings_were_on)


def _unrecognised_files(folder: Path, series: dict[str, tuple[str, ...]]) -> list[str]:
    """Files in ``folder`` that GDCM did not put in any series (corrupt or not DICOM)."""
    known = {Path(name).resolve() for files in series.values() for name in files}
    return sorted(p.name for p in folder.iterdir()
                  if p.is_file() and p.resolve() not in known and not p.name.startswith("."))


def _check_folder(folder: Path) -> None:
    if not folder.exists():
        raise InputError(f"DICOM folder '{folder}' does not exist", "check the path")
    if not folder.is_dir():
        raise InputError(f"'{folder}' is a file, not a folder",
                         "pass the folder that holds the DICOM series")


def _no_dicom_error(folder: Path) -> InputError:
    subfolders = [p.name for p in folder.iterdir() if p.is_dir()]
    if subfolders:
        shown = ", ".join(sorted(subfolders)[:5]) + (" ..." if len(subfolders) > 5 else "")
        fix = f"the series may be in a subfolder ({shown}); pass that folder instead"
    else:
        fix = "pass a folder that holds the DICOM files of one series (.dcm or no extension)"
    return InputError(f"no DICOM series found in folder '{folder}'", fix)


def find_dicom_series(folder: str | Path) -> list[DicomSeriesInfo]:
    """All DICOM series directly inside ``folder`` (not its subfolders), with their tags."""
    folder = Path(folder)
    _check_folder(folder)
    return [read_series_info(files) for files in _series_files(folder).values() if files]


# -- geometry checks -----------------------------------------------------------------
def check_slice_geometry(file_names: tuple[str, ...] | list[str]) -> float | None:
    """Verify the slices form one regular grid; return the slice spacing (mm).

    Raises GeometryError for missing slices, uneven gaps, repeated positions (several
    volumes in one series), mixed orientations or gantry tilt. Returns None for a single
    file (a multi-frame object, checked by GDCM itself).
    """
    if len(file_names) < 2:
        return None
    positions, orientations = [], []
    for name in file_names:
        try:
            ds = pydicom.dcmread(name, stop_before_pixels=True,
                                 specific_tags=["ImagePositionPatient", "ImageOrientationPatient"])
        except (InvalidDicomError, OSError, ValueError, EOFError) as error:
            raise InputError(f"DICOM file '{Path(name).name}' cannot be read: {error}",
                             "the file is corrupt; remove it or export the series again") from None
        ipp, iop = ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient")
        if ipp is None or iop is None or len(ipp) != 3 or len(iop) != 6:
            raise GeometryError(
                f"DICOM file '{Path(name).name}' has no slice position/orientation "
                "(ImagePositionPatient/ImageOrientationPatient)",
                "this series (e.g. a screenshot or secondary capture) has no 3-D geometry "
                "and cannot be measured; load the original acquisition")
        positions.append([float(v) for v in ipp])
        orientations.append([float(v) for v in iop])
    positions_mm = np.asarray(positions)
    orientation = np.asarray(orientations)
    if np.max(np.abs(orientation - orientation[0])) > 1e-4:
        raise GeometryError("the slices of this DICOM series have different orientations",
                            "the series mixes several stacks (e.g. a localizer); "
                            "load each stack as its own series")
    row, column = orientation[0, :3], orientation[0, 3:]
    if (abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(column) - 1) > 1e-3
            or abs(row @ column) > 1e-3):
        raise GeometryError(
            f"the DICOM ImageOrientationPatient {tuple(orientation[0])} is not two "
            "perpendicular unit vectors", "the header is damaged; export the series again")
    normal = np.cross(row, column)
    distance = positions_mm @ normal
    gaps = np.diff(distance)
    n = len(file_names)
    if np.any(np.abs(gaps) < SPACING_TOLERANCE_MM):
        unique = len(np.unique(np.round(distance / SPACING_TOLERANCE_MM)))
        raise GeometryError(
            f"{n} DICOM files share only {unique} slice positions: the series holds several "
            "volumes (time points, echoes, phases or b-values)",
            "split the series into one volume per time point/echo (3D Slicer's DICOM "
            "browser does this) and load one of them")
    if not (np.all(gaps > 0) or np.all(gaps < 0)):
        raise GeometryError("the slices of this DICOM series are not ordered along one axis",
                            "the series is irregular; load it with 3D Slicer's DICOM browser")
    gaps = np.abs(gaps)
    step = float(np.min(gaps))
    if np.max(gaps) - step > SPACING_TOLERANCE_MM:
        multiples = gaps / step
        if np.allclose(multiples, np.round(multiples), atol=SPACING_TOLERANCE_MM / step):
            missing = int(np.sum(np.round(multiples) - 1))
            raise GeometryError(
                f"the DICOM series has {missing} missing slice(s) ({n} files, gaps of "
                f"{step:.4g} mm and up to {np.max(gaps):.4g} mm)",
                "copy the complete series again (some files did not arrive)")
        raise GeometryError(
            f"the DICOM series has non-uniform slice spacing (gaps from {step:.4g} to "
            f"{np.max(gaps):.4g} mm)",
            "load it with 3D Slicer's DICOM browser (which can resample irregular "
            "acquisitions) or resample it to a regular grid first")
    # Slices must advance along the normal; a sideways drift means a tilted gantry, which
    # a volume with orthogonal axes cannot represent.
    travel = positions_mm[-1] - positions_mm[0]
    sideways = travel - (travel @ normal) * normal
    if np.linalg.norm(sideways) > SPACING_TOLERANCE_MM * (n - 1):
        raise GeometryError(
            "the DICOM slices are sheared (gantry tilt): they do not stack perpendicular "
            "to the image plane",
            "load the series with 3D Slicer's DICOM browser, which can correct gantry tilt")
    return float(np.mean(gaps))


# -- reading -------------------------------------------------------------------------
def _narrow_integers(array: np.ndarray) -> np.ndarray:
    """GDCM widens rescaled CT to int32; store it as int16 when no value changes."""
    if array.dtype == np.int32 and array.size:
        low, high = int(array.min()), int(array.max())
        if low >= np.iinfo(np.int16).min and high <= np.iinfo(np.int16).max:
            return array.astype(np.int16)
    return array


def read_dicom_series(folder: str | Path, series_uid: str | None = None) -> ImageVolume:
    """Read one DICOM series from ``folder`` into an ImageVolume in RAS.

    With several series in the folder, ``series_uid`` must name one; otherwise the error
    lists them. Voxels are rescaled by RescaleSlope/Intercept (as GDCM does); integer
    results that fit are stored as int16 like Slicer's CT volumes.
    ``metadata["dicom"]`` holds :class:`DicomSeriesInfo` as a dict.
    """
    folder = Path(folder)
    _check_folder(folder)
    series = _series_files(folder)
    if not series:
        raise _no_dicom_error(folder)
    if series_uid is None:
        if len(series) > 1:
            listing = "; ".join(read_series_info(files).summary() for files in series.values())
            raise InputError(f"folder '{folder}' holds {len(series)} DICOM series: {listing}",
                             "choose one by its SeriesInstanceUID (series_uid=... in Python, "
                             "--series on the dtt command line)")
        series_uid = next(iter(series))
    elif series_uid not in series:
        listing = "; ".join(read_series_info(files).summary() for files in series.values())
        raise InputError(f"series '{series_uid}' is not in folder '{folder}' "
                         f"(found: {listing})", "pass one of the listed series UIDs")
    files = series[series_uid]
    info = read_series_info(files)
    try:
        check_slice_geometry(files)
    except GeometryError as error:
        unreadable = _unrecognised_files(folder, series)
        if not unreadable:
            raise
        shown = ", ".join(unreadable[:5]) + (" ..." if len(unreadable) > 5 else "")
        raise GeometryError(f"{error.problem}; {len(unreadable)} file(s) in the folder could "
                            f"not be read as DICOM ({shown}) and may be corrupt slices",
                            error.fix) from None
    source = f"DICOM series '{info.SeriesDescription or series_uid}'"
    try:
        if len(files) == 1:
            image = sitk.ReadImage(files[0])
        else:
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(list(files))
            image = reader.Execute()
    except RuntimeError as error:
        raise InputError(f"cannot read the pixel data of {source}: {_short(str(error))}",
                         "one or more files are truncated or corrupt (or use an unsupported "
                         "compression); copy or export the series again") from None
    if image.GetDimension() == 3 and image.GetSize()[2] == 1:
        raise GeometryError(f"{source} has a single 2-D slice; a 3-D volume is required",
                            "load a series with several slices (a CT/MR stack), "
                            "not a localizer or a single image")
    volume = sitk_to_volume(image, name=info.SeriesDescription or series_uid, source=source)
    volume.array = _narrow_integers(volume.array)
    volume.metadata["dicom"] = info.to_dict()
    volume.metadata["source_path"] = str(folder)
    return volume
