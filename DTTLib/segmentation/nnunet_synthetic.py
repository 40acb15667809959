"""Synthetic CT-like volumes with planted ellipsoid lesions, for the tiny nnU-Net and its tests.

One generator serves both sides: ``tools/train_tiny_nnunet.py`` trains on one range of seeds,
the tests check inference on volumes made with other seeds, so the held-out data come from
the same distribution but were never seen in training. The truth is exact (the lesion
ellipsoids are known in millimetres), so Dice and per-lesion counts need no reference model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from DTTLib.imaging.volume import ImageVolume

#: organ, surrounding fat and lesion means in HU; noise is white + smooth texture, so a fixed
#: threshold is not enough. Like the Decathlon liver task, lesions lie inside an organ that is
#: labelled too (label 1 organ, 2 lesion), so nnU-Net's CT normalisation — clipped to the
#: foreground's intensity percentiles — keeps the organ's texture visible instead of flattening it.
TISSUE_HU = 40.0
FAT_HU = -90.0
LESION_CONTRAST_HU = 70.0
NOISE_SD_HU = 20.0
TEXTURE_SD_HU = 12.0


@dataclass(frozen=True)
class Ellipsoid:
    """Axis-aligned lesion: centre (i, j, k) in voxels, radii (along i, j, k) in millimetres."""

    center_ijk: tuple[float, float, float]
    radii_mm: tuple[float, float, float]


@dataclass(frozen=True)
class SyntheticCase:
    image: ImageVolume          # int16 "HU", (k, j, i)
    labels: np.ndarray          # uint8 (k, j, i): 0 background, n = n-th lesion
    lesions: tuple[Ellipsoid, ...]
    organ: np.ndarray           # bool (k, j, i): the organ the lesions lie in
    organ_shape: Ellipsoid | None = None  # the organ's ellipsoid, to render follow-ups of the same patient

    @property
    def mask(self) -> np.ndarray:
        return self.labels > 0

    def training_labels(self) -> np.ndarray:
        """uint8 (k, j, i): 0 background, 1 organ, 2 lesion (nnU-Net's label map)."""
        return np.where(self.labels > 0, 2, np.where(self.organ, 1, 0)).astype(np.uint8)


def ellipsoid_mask(shape_kji: tuple[int, int, int], spacing_ijk: tuple[float, float, float],
                   lesion: Ellipsoid) -> np.ndarray:
    k, j, i = np.indices(shape_kji, dtype=float)
    ci, cj, ck = lesion.center_ijk
    ri, rj, rk = lesion.radii_mm
    si, sj, sk = spacing_ijk
    return (((i - ci) * si / ri) ** 2 + ((j - cj) * sj / rj) ** 2 + ((k - ck) * sk / rk) ** 2) <= 1.0


def _place(rng: np.random.Generator, shape_kji: tuple[int, int, int], spacing_ijk: tuple[float, float, float],
           count: int, radius_range: tuple[float, float], placed: list[Ellipsoid],
           organ: Ellipsoid) -> list[Ellipsoid]:
    organ_center = np.array(organ.center_ijk) * spacing_ijk
    organ_radii = np.array(organ.radii_mm)
    for _ in range(400 * count):
        if len(placed) == count:
            break
        radii = rng.uniform(*radius_range, size=3)
        room = organ_radii - radii - 2.0  # the whole lesion inside the organ
        if np.any(room <= 0):
            continue
        center_mm = organ_center + rng.uniform(-room, room)
        if np.sum(((center_mm - organ_center) / room) ** 2) > 1.0:
            continue
        # lesions stay apart by at least 6 mm between their bounding spheres
        if any(np.linalg.norm(center_mm - np.array(o.center_ijk) * spacing_ijk) < max(radii) + max(o.radii_mm) + 6.0
               for o in placed):
            continue
        placed.append(Ellipsoid(tuple(float(v) for v in center_mm / spacing_ijk), tuple(float(r) for r in radii)))
    return placed


def make_case(seed: int, shape_kji: tuple[int, int, int] = (48, 48, 48),
              spacing_ijk: tuple[float, float, float] = (1.0, 1.0, 2.0), lesions: int | None = None,
              radius_range: tuple[float, float] = (4.0, 9.0)) -> SyntheticCase:
    """One volume with ``lesions`` ellipsoids (1–3 drawn from the seed when None)."""
    rng = np.random.default_rng(seed)
    count = int(rng.integers(1, 4)) if lesions is None else int(lesions)
    size_mm = np.array(shape_kji[::-1]) * np.array(spacing_ijk)
    organ = Ellipsoid(tuple(float(v) for v in (np.array(shape_kji[::-1]) - 1) / 2 + rng.uniform(-2, 2, 3)),
                      tuple(float(r) for r in size_mm * rng.uniform(0.36, 0.44, 3)))
    placed: list[Ellipsoid] = []
    for _ in range(20):  # a fresh start when the first lesions left no room for the rest
        placed = _place(rng, shape_kji, spacing_ijk, count, radius_range, [], organ)
        if len(placed) == count:
            break
    if lesions is None and placed:
        count = len(placed)
    if len(placed) != count:
        raise ValueError(f"could not place {count} separate lesions in {shape_kji}")
    return render_case(rng, shape_kji, spacing_ijk, organ, tuple(placed), f"synthetic_{seed}")


def render_case(rng: np.random.Generator, shape_kji: tuple[int, int, int], spacing_ijk: tuple[float, float, float],
                organ: Ellipsoid, placed: tuple[Ellipsoid, ...], name: str,
                contrast_hu: float = LESION_CONTRAST_HU) -> SyntheticCase:
    """The scan of a given organ and lesions (noise and texture from ``rng``): follow-ups of one
    patient are the same organ with the lesions changed."""
    labels = np.zeros(shape_kji, np.uint8)
    lesion_signal = np.zeros(shape_kji, float)
    for n, lesion in enumerate(placed, start=1):
        inside = ellipsoid_mask(shape_kji, spacing_ijk, lesion)
        labels[inside] = n
        lesion_signal += inside
    sigma_vox = [1.0 / s for s in spacing_ijk[::-1]]  # 1 mm partial-volume blur, in (k, j, i) voxels
    contrast = contrast_hu * rng.uniform(0.8, 1.2)
    texture = ndimage.gaussian_filter(rng.normal(0, 1, shape_kji), [3.0 / s for s in spacing_ijk[::-1]])
    texture *= TEXTURE_SD_HU / max(texture.std(), 1e-6)
    organ_mask = ellipsoid_mask(shape_kji, spacing_ijk, organ)
    organ_signal = ndimage.gaussian_filter(organ_mask.astype(float), sigma_vox)
    values = (FAT_HU + (TISSUE_HU - FAT_HU + rng.normal(0, 5)) * organ_signal + texture
              + contrast * ndimage.gaussian_filter(lesion_signal, sigma_vox)
              + rng.normal(0, NOISE_SD_HU, shape_kji))
    image = ImageVolume(np.round(values).astype(np.int16), spacing_ijk, name=name)
    return SyntheticCase(image, labels, tuple(placed), organ_mask | (labels > 0), organ)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    total = int(a.sum() + b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


__all__ = ["Ellipsoid", "SyntheticCase", "dice", "ellipsoid_mask", "make_case", "render_case"]
