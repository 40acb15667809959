"""Reading and writing image files as :class:`ImageVolume` records.

SimpleITK does the file work; this module owns the two things it gets wrong for us:
ITK geometry is LPS while Slicer (and ImageVolume) is RAS, and ITK errors are raw C++
messages. Every failure is re-raised as a :mod:`DTTLib.errors` error that names the
problem and the fix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from DTTLib.errors import GeometryError, InputError
from DTTLib.imaging.volume import ImageVolume

#: LPS <-> RAS: negate the first two world axes (the matrix is its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])

#: File endings we read, longest first so ".nii.gz" wins over ".gz".
READ_EXTENSIONS = (".nii.gz", ".nrrd", ".nhdr", ".nii", ".mha", ".mhd")
#: File endings we write.
WRITE_EXTENSIONS = (".nii.gz", ".nrrd", ".nii", ".mha")


def file_extension(path: str | Path) -> str:
    """Lower-case ending, treating ``.nii.gz`` as one extension."""
    name = Path(path).name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


def _short(message: str) -> str:
    """The useful last line of an ITK exception (the rest is C++ file/line noise)."""
    lines = [line.strip() for line in str(message).strip().splitlines() if line.strip()]
    text = lines[-1] if lines else str(message)
    return text.removeprefix("sitk::ERROR: ").strip()


# -- geometry conversion -------------------------------------------------------------
def sitk_to_volume(image: sitk.Image, name: str = "", source: str = "image") -> ImageVolume:
    """Convert a 3-D scalar SimpleITK image (LPS) into an ImageVolume (RAS).

    The voxel type is kept as stored (CT stays int16), so no precision is lost or invented.
    """
    dimension = image.GetDimension()
    if dimension == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]  # a single time point stored as 4-D: drop the unit axis
        dimension = 3
    _check_dimension(dimension, tuple(image.GetSize()), source)
    _check_components(image.GetNumberOfComponentsPerPixel(), source)
    _check_spacing(tuple(image.GetSpacing()), source)
    direction_lps = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    origin_lps = np.array(image.GetOrigin(), dtype=float)
    array = sitk.GetArrayFromImage(image)  # (k, j, i), a copy owned by numpy
    return ImageVolume(array=array, spacing=tuple(image.GetSpacing()),
                       origin=tuple(LPS_TO_RAS @ origin_lps),
                       direction=LPS_TO_RAS @ direction_lps, name=name)


def volume_to_sitk(volume: ImageVolume) -> sitk.Image:
    """Convert an ImageVolume (RAS) into a SimpleITK image (LPS) with the same voxels."""
    volume.validate()
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array), isVector=False)
    image.SetSpacing([float(s) for s in volume.spacing])
    image.SetOrigin([float(o) for o in LPS_TO_RAS @ np.asarray(volume.origin)])
    image.SetDirection([float(d) for d in (LPS_TO_RAS @ volume.direction).ravel()])
    return image


# -- checks --------------------------------------------------------------------------
def _check_dimension(dimension: int, size: tuple[int, ...], source: str) -> None:
    if dimension == 3:
        return
    if dimension == 4:
        raise GeometryError(
            f"{source} has 4 dimensions (size {size}); a 3-D volume is required",
            "split it into one 3-D volume per time point or channel (e.g. in 3D Slicer's "
            "Sequences module, or with SimpleITK image[:, :, :, t]) and load one of those")
    if dimension == 2:
        raise GeometryError(
            f"{source} has 2 dimensions (size {size}); a single 2-D slice has no slice "
            "spacing to measure volumes with",
            "load the whole 3-D volume (or the complete DICOM series) instead of one slice")
    raise GeometryError(f"{source} has {dimension} dimensions (size {size}); "
                        "a 3-D volume is required", "convert it to a 3-D scalar volume")


def _check_components(components: int, source: str) -> None:
    if components != 1:
        raise InputError(
            f"{source} has {components} values per voxel (a vector, colour or tensor image); "
            "a scalar (grey-level) volume is required",
            "extract one component or convert the colour image to grey levels before loading")


def _check_spacing(spacing: tuple[float, ...], source: str) -> None:
    values = np.asarray(spacing, dtype=float)
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise GeometryError(
            f"{source} has zero, negative or undefined voxel spacing {tuple(spacing)}",
            "fix the header so every axis has a positive spacing in millimetres "
            "(NRRD 'space directions'/'spacings', NIfTI pixdim, MetaImage ElementSpacing)")


# -- reading -------------------------------------------------------------------------
def read_image(path: str | Path, series_uid: str | None = None) -> ImageVolume:
    """Read a volume file (.nrrd/.nhdr/.nii/.nii.gz/.mha/.mhd) or a DICOM series folder.

    ``series_uid`` picks one series when a DICOM folder holds several. The returned
    geometry is RAS; ``metadata["source_path"]`` records where it came from.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"image file '{path}' does not exist",
                         "check the path (and that the drive or network share is mounted)")
    if path.is_dir():
        from DTTLib.imaging.dicom import read_dicom_series  # local: avoids a cycle

        return read_dicom_series(path, series_uid=series_uid)
    extension = file_extension(path)
    if extension == ".dcm" or extension == "":
        raise InputError(
            f"'{path.name}' looks like a single DICOM file; one file is one slice",
            f"pass the folder that holds the whole series ('{path.parent}')")
    if extension not in READ_EXTENSIONS:
        raise InputError(f"'{path.name}' has unsupported file type '{extension}'",
                         "use NRRD (.nrrd/.nhdr), NIfTI (.nii/.nii.gz), MetaImage "
                         "(.mha/.mhd) or a folder with a DICOM series")
    if path.stat().st_size == 0:
        raise InputError(f"image file '{path}' is empty (0 bytes)",
                         "the copy or download was incomplete; copy the file again")

    source = f"image '{path.name}'"
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise InputError(f"cannot read the header of {source}: {_short(str(error))}",
                         "the file is corrupt, truncated or not really a "
                         f"{extension} file; export it again from the original data") from None
    # Check before reading voxels: ITK silently replaces a negative spacing by its absolute
    # value (and rejects zero with an obscure message), so the header is the only witness.
    size = tuple(reader.GetSize())
    dimension = reader.GetDimension()
    if not (dimension == 4 and size[3] == 1):
        _check_dimension(dimension, size, source)
    _check_components(reader.GetNumberOfComponents(), source)
    _check_spacing(tuple(reader.GetSpacing())[:3], source)
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise InputError(f"cannot read the voxel data of {source}: {_short(str(error))}",
                         "the file is truncated or corrupt (or its detached data file is "
                         "missing); copy or export it again") from None
    volume = sitk_to_volume(image, name=_stem(path), source=source)
    volume.metadata["source_path"] = str(path)
    return volume


def _stem(path: Path) -> str:
    name = path.name
    extension = file_extension(path)
    return name[: len(name) - len(extension)] if extension else name


# -- writing -------------------------------------------------------------------------
def write_image(volume: ImageVolume, path: str | Path) -> Path:
    """Write ``volume`` to .nrrd (gzip-compressed), .nii.gz, .nii or .mha, chosen by extension.

    Geometry is written in LPS (the file formats' convention) so that 3D Slicer and every
    ITK-based tool read it back at the same RAS positions.
    """
    path = Path(path)
    extension = file_extension(path)
    if extension not in WRITE_EXTENSIONS:
        raise InputError(f"cannot write '{path.name}': unsupported file type '{extension}'",
                         "use a name ending in .nrrd, .nii.gz, .nii or .mha")
    if not path.parent.exists():
        raise InputError(f"folder '{path.parent}' does not exist",
                         "create the output folder first or choose another path")
    image = volume_to_sitk(volume)
    compress = extension in (".nrrd", ".nii.gz", ".mha")
    try:
        sitk.WriteImage(image, str(path), useCompression=compress)
    except RuntimeError as error:
        raise InputError(f"cannot write image '{path}': {_short(str(error))}",
                         "check that the folder is writable and the disk is not full") from None
    return path
