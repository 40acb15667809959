"""Box prompts in voxel indices, from RAS boxes or typed in by the user."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np

from DTTLib.errors import InputError
from DTTLib.imaging.volume import ImageVolume


@dataclass(frozen=True)
class VoxelBox:
    """Inclusive voxel bounds (i = column, j = row, k = slice)."""

    i0: int
    j0: int
    k0: int
    i1: int
    j1: int
    k1: int

    def slices(self) -> tuple[slice, slice, slice]:
        """numpy (k, j, i) slices selecting the box."""
        return (slice(self.k0, self.k1 + 1), slice(self.j0, self.j1 + 1), slice(self.i0, self.i1 + 1))

    @property
    def size(self) -> tuple[int, int, int]:
        return (self.i1 - self.i0 + 1, self.j1 - self.j0 + 1, self.k1 - self.k0 + 1)


def checked_box(box: VoxelBox, image: ImageVolume) -> VoxelBox:
    """The box clipped to the image; a box entirely outside or inverted is an error."""
    ni, nj, nk = image.shape_ijk
    if box.i0 > box.i1 or box.j0 > box.j1 or box.k0 > box.k1:
        raise InputError(f"box {box} has a lower corner above its upper corner",
                         "give the box as I0,J0,K0,I1,J1,K1 with I0<=I1, J0<=J1, K0<=K1")
    clipped = VoxelBox(max(box.i0, 0), max(box.j0, 0), max(box.k0, 0),
                       min(box.i1, ni - 1), min(box.j1, nj - 1), min(box.k1, nk - 1))
    if clipped.i0 > clipped.i1 or clipped.j0 > clipped.j1 or clipped.k0 > clipped.k1:
        raise InputError(f"box {box} lies outside the image (size {ni}×{nj}×{nk} voxels)",
                         "draw the box on the lesion inside the scan")
    return clipped


def voxel_box_from_ras(image: ImageVolume, low_ras: np.ndarray, high_ras: np.ndarray) -> VoxelBox:
    """Smallest voxel box containing an axis-aligned RAS box (all 8 corners mapped)."""
    corners = np.array([[(low_ras, high_ras)[c][axis] for axis, c in enumerate(choice)]
                        for choice in product((0, 1), repeat=3)])
    ijk = (image.ras_to_ijk() @ np.c_[corners, np.ones(8)].T)[:3].T
    low = np.floor(ijk.min(axis=0) + 0.5 - 1e-9).astype(int)
    high = np.floor(ijk.max(axis=0) + 0.5 + 1e-9).astype(int)
    return checked_box(VoxelBox(*low, *high), image)
