"""The image record every layer exchanges.

Geometry follows 3D Slicer: voxel arrays are indexed (k, j, i) — slice, row, column — and
positions are RAS millimetres. ``direction`` holds the unit RAS vectors of the i, j and k
axes as its columns, so ``ras = origin + direction @ (spacing * ijk)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from DTTLib.errors import GeometryError, InputError

#: dtypes that VTK image data (and so a Slicer volume node) can hold without loss.
SUPPORTED_DTYPES = (
    np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.float32, np.float64,
)


@dataclass
class ImageVolume:
    """A 3D scalar image with its physical geometry."""

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    name: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.spacing = tuple(float(s) for s in self.spacing)  # type: ignore[assignment]
        self.origin = tuple(float(o) for o in self.origin)  # type: ignore[assignment]
        self.direction = np.asarray(self.direction, dtype=float).reshape(3, 3)
        self.validate()

    # -- checks ---------------------------------------------------------------------
    def validate(self) -> None:
        """Raise a specific error for anything that would give silently wrong numbers."""
        array = self.array
        if not isinstance(array, np.ndarray):
            raise InputError(f"image '{self.name}' is a {type(array).__name__}, not a numpy array",
                             "pass the voxels as a numpy array indexed (k, j, i)")
        if array.ndim != 3:
            hint = ("split the 4-D image into one 3-D volume per time point or channel"
                    if array.ndim == 4 else "provide a 3-D volume (slices, rows, columns)")
            raise GeometryError(f"image '{self.name}' has {array.ndim} dimensions {array.shape}; "
                                "a 3-D volume is required", hint)
        if 0 in array.shape:
            raise GeometryError(f"image '{self.name}' is empty (shape {array.shape})",
                                "check that the file holds voxel data")
        if array.dtype == np.int64 or array.dtype == np.uint64:
            raise InputError(f"image '{self.name}' has 64-bit integer voxels ({array.dtype}), "
                             "which Slicer volumes cannot hold",
                             "cast it first, e.g. array.astype(np.int32) (or int16 for CT)")
        if array.dtype == bool:
            raise InputError(f"image '{self.name}' is boolean",
                             "cast masks to np.uint8 before storing them as images")
        if not any(array.dtype == np.dtype(t) for t in SUPPORTED_DTYPES):
            raise InputError(f"image '{self.name}' has unsupported voxel type {array.dtype}",
                             "use one of uint8/int8/uint16/int16/uint32/int32/float32/float64")
        spacing = np.asarray(self.spacing)
        if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
            raise GeometryError(f"image '{self.name}' has invalid spacing {tuple(spacing)}",
                                "every voxel spacing must be a positive number of millimetres; "
                                "fix the header (NRRD 'space directions', NIfTI pixdim)")
        if not np.all(np.isfinite(self.origin)):
            raise GeometryError(f"image '{self.name}' has a non-finite origin {self.origin}",
                                "fix the image header's origin")
        gram = self.direction.T @ self.direction
        if not np.all(np.isfinite(self.direction)) or not np.allclose(gram, np.eye(3), atol=1e-4):
            raise GeometryError(f"image '{self.name}' has non-orthonormal axis directions",
                                "the direction cosines must be unit length and perpendicular; "
                                "resample the image or fix its header")

    # -- geometry -------------------------------------------------------------------
    @property
    def shape_ijk(self) -> tuple[int, int, int]:
        """Size along i, j, k (columns, rows, slices)."""
        k, j, i = self.array.shape
        return i, j, k

    def ijk_to_ras(self) -> np.ndarray:
        """4x4 matrix mapping homogeneous (i, j, k, 1) to RAS millimetres."""
        matrix = np.eye(4)
        matrix[:3, :3] = self.direction @ np.diag(self.spacing)
        matrix[:3, 3] = self.origin
        return matrix

    def ras_to_ijk(self) -> np.ndarray:
        return np.linalg.inv(self.ijk_to_ras())

    def with_array(self, array: np.ndarray, **changes: Any) -> ImageVolume:
        """Same geometry, new voxels (e.g. a mask or a normalised copy)."""
        return replace(self, array=array, metadata=dict(self.metadata), **changes)

    @property
    def modality(self) -> str:
        """The DICOM modality ("CT", "MR", …) when the source recorded one, else ""."""
        return str(self.metadata.get("dicom", {}).get("Modality", "") or "").upper()

    def same_grid(self, other: ImageVolume, tolerance: float = 1e-4) -> bool:
        """True when both images sample the same voxel grid."""
        return (self.array.shape == other.array.shape
                and np.allclose(self.ijk_to_ras(), other.ijk_to_ras(), atol=tolerance))

    @classmethod
    def from_ijk_to_ras(cls, array: np.ndarray, matrix: np.ndarray, **kwargs: Any) -> ImageVolume:
        """Build from an IJK-to-RAS matrix (as Slicer stores it)."""
        matrix = np.asarray(matrix, dtype=float)
        columns = matrix[:3, :3]
        spacing = np.linalg.norm(columns, axis=0)
        if np.any(spacing <= 0) or not np.all(np.isfinite(spacing)):
            raise GeometryError(f"IJK-to-RAS matrix has a zero or invalid axis (spacing {spacing})",
                                "every axis of the volume needs a positive spacing")
        return cls(array=array, spacing=tuple(spacing), origin=tuple(matrix[:3, 3]),
                   direction=columns / spacing, **kwargs)
