"""Geometry and intensity preparation before segmentation and measurement.

Every function returns a new :class:`ImageVolume` and leaves its input untouched, so the
raw voxels (CT Hounsfield units, MR signal) stay available for measurement and display.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from itertools import permutations
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from DTTLib.errors import DTTError, GeometryError, InputError
from DTTLib.imaging.volume import ImageVolume

WINDOW_PRESETS_FILE = Path(__file__).with_name("window_presets.json")

#: Refuse resampling results beyond this many voxels (about 8 GB as float32).
MAX_RESAMPLED_VOXELS = 2_000_000_000


# -- orientation ---------------------------------------------------------------------
def nearest_axis_permutation(direction: np.ndarray) -> tuple[tuple[int, int, int],
                                                               tuple[int, int, int]]:
    """For each RAS axis, the voxel axis closest to it and whether that axis runs backwards.

    Returns ``(source_axis, sign)``: RAS axis n is taken from voxel axis ``source_axis[n]``
    and points along ``sign[n]`` times that axis. The permutation that maximises the summed
    alignment is chosen (all six are tried), so oblique images map to their nearest
    anatomical orientation even when one axis alone is ambiguous.
    """
    direction = np.asarray(direction, dtype=float)
    best = max(permutations(range(3)),
               key=lambda perm: sum(abs(direction[n, perm[n]]) for n in range(3)))
    signs = tuple(-1 if direction[n, best[n]] < 0 else 1 for n in range(3))
    return tuple(best), signs  # type: ignore[return-value]


def reorient_to_ras(volume: ImageVolume) -> ImageVolume:
    """Permute and flip voxel axes so i→R, j→A, k→S as closely as possible.

    No interpolation: voxels are only rearranged, and the origin is moved so that every
    voxel keeps its physical (RAS) position. Oblique images stay oblique; their direction
    matrix just becomes the nearest one to identity.
    """
    volume.validate()
    source, signs = nearest_axis_permutation(volume.direction)
    array_ijk = volume.array.transpose(2, 1, 0)  # numpy axes now i, j, k
    size_ijk = array_ijk.shape
    rearranged = array_ijk.transpose(source)
    flipped = tuple(n for n in range(3) if signs[n] < 0)
    if flipped:
        rearranged = np.flip(rearranged, axis=flipped)
    array = np.ascontiguousarray(rearranged.transpose(2, 1, 0))
    spacing = np.asarray(volume.spacing)
    direction = np.empty((3, 3))
    origin = np.asarray(volume.origin, dtype=float).copy()
    for n in range(3):
        axis = source[n]
        direction[:, n] = volume.direction[:, axis] * signs[n]
        if signs[n] < 0:  # the old last voxel along this axis becomes the first
            origin += volume.direction[:, axis] * spacing[axis] * (size_ijk[axis] - 1)
    result = ImageVolume(array=array, spacing=tuple(spacing[list(source)]), origin=tuple(origin),
                         direction=direction, name=volume.name, metadata=dict(volume.metadata))
    result.metadata["reoriented"] = {"source_axes_ijk": list(source), "flipped": list(signs)}
    return result


# -- resampling ----------------------------------------------------------------------
def resample_isotropic(volume: ImageVolume, spacing_mm: float | None = None,
                       is_label: bool = False) -> ImageVolume:
    """Resample to cubic voxels of ``spacing_mm`` (default: the finest input spacing).

    The new grid keeps the direction and the centre of the field of view, and covers the
    same extent (exactly when the extent is a multiple of the new spacing, otherwise to
    within one new voxel). Images use linear interpolation and come back as float32 (or
    float64 if they were float64) so no precision is invented or rounded away; labels use
    nearest neighbour and keep their integer type and label values.
    """
    volume.validate()
    spacing = np.asarray(volume.spacing, dtype=float)
    try:
        target = float(np.min(spacing)) if spacing_mm is None else float(spacing_mm)
    except (TypeError, ValueError):
        target = float("nan")
    if not np.isfinite(target) or target <= 0:
        raise InputError(f"resampling spacing {spacing_mm!r} is not a positive number of mm",
                         "pass spacing_mm > 0, or leave it out to use the finest input spacing")
    size_ijk = np.asarray(volume.shape_ijk, dtype=float)
    new_size = np.maximum(1, np.round(size_ijk * spacing / target)).astype(int)
    voxels = int(np.prod(new_size))
    if voxels > MAX_RESAMPLED_VOXELS:
        raise InputError(f"resampling to {target:g} mm would create {voxels:,} voxels "
                         f"(grid {tuple(new_size)})", "choose a coarser spacing_mm")
    # Keep the field-of-view centre: shift of the new first voxel centre along each axis.
    shift_mm = (size_ijk - 1) / 2 * spacing - (new_size - 1) / 2 * target
    origin = np.asarray(volume.origin) + volume.direction @ shift_mm
    # Output voxel m along axis a samples input index (shift_a + m * target) / spacing_a.
    scale_ijk = target / spacing
    offset_ijk = shift_mm / spacing
    matrix_kji, offset_kji = scale_ijk[::-1], offset_ijk[::-1]
    shape_kji = tuple(int(s) for s in new_size[::-1])
    if is_label:
        array = ndimage.affine_transform(volume.array, matrix_kji, offset=offset_kji,
                                         output_shape=shape_kji, output=volume.array.dtype,
                                         order=0, mode="nearest")
    else:
        dtype = np.float64 if volume.array.dtype == np.float64 else np.float32
        array = ndimage.affine_transform(volume.array.astype(dtype, copy=False), matrix_kji,
                                         offset=offset_kji, output_shape=shape_kji,
                                         output=dtype, order=1, mode="nearest")
    result = ImageVolume(array=array, spacing=(target, target, target), origin=tuple(origin),
                         direction=volume.direction.copy(), name=volume.name,
                         metadata=dict(volume.metadata))
    result.metadata["resampled"] = {"from_spacing": list(volume.spacing), "spacing": target,
                                    "interpolation": "nearest" if is_label else "linear"}
    return result


# -- CT windows ----------------------------------------------------------------------
@dataclass(frozen=True)
class WindowPreset:
    """A display window in Hounsfield units: values level ± width/2 map to 0…1."""

    name: str
    level: float
    width: float
    description: str = ""

    @property
    def lower(self) -> float:
        return self.level - self.width / 2

    @property
    def upper(self) -> float:
        return self.level + self.width / 2


@lru_cache(maxsize=4)
def _load_presets(path: str) -> tuple[WindowPreset, ...]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        presets = tuple(WindowPreset(name=str(item["name"]), level=float(item["level"]),
                                     width=float(item["width"]),
                                     description=str(item.get("description", "")))
                        for item in data["presets"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DTTError(f"window preset file '{path}' cannot be read: {error}",
                       "restore window_presets.json from the DigitalTwinTumor installation")
    for preset in presets:
        if not preset.width > 0:
            raise DTTError(f"window preset '{preset.name}' in '{path}' has width "
                           f"{preset.width}", "every window width must be positive")
    return presets


def load_window_presets(path: str | Path | None = None) -> dict[str, WindowPreset]:
    """Window presets by name, from the packaged JSON file (or ``path``)."""
    presets = _load_presets(str(path or WINDOW_PRESETS_FILE))
    return {preset.name: preset for preset in presets}


@lru_cache(maxsize=4)
def _segmentation_rules(path: str) -> dict:
    """The "segmentation" section of a presets file (read once per file: it is asked per lesion)."""
    try:
        return dict(json.loads(Path(path).read_text(encoding="utf-8")).get("segmentation", {}))
    except (OSError, ValueError) as error:
        raise DTTError(f"window preset file '{path}' cannot be read: {error}",
                       "restore window_presets.json from the DigitalTwinTumor installation")


def _modality_rules(modality: str, path: str | Path | None) -> tuple[dict, dict | None]:
    """The "segmentation" rules and the entry for ``modality`` (None when it has none)."""
    rules = _segmentation_rules(str(path or WINDOW_PRESETS_FILE))
    by_modality = rules.get((modality or "").upper())
    return rules, by_modality if isinstance(by_modality, dict) else None


def segmentation_window(modality: str, organ: str = "", path: str | Path | None = None) -> str:
    """How to window slices for a box-prompt model: a CT preset name, or "slice" (percentiles).

    Read from the "segmentation" section of ``window_presets.json``; an unknown modality gets
    the default (percentiles, which is right for MR and harmless elsewhere)."""
    rules, by_modality = _modality_rules(modality, path)
    if by_modality is None:
        return str(rules.get("default", "slice"))
    window = str(by_modality.get("by_organ", {}).get((organ or "").lower(), by_modality.get("default", "slice")))
    if window != "slice":
        resolve_window(window)  # a name that is not a preset is an error in the data file
    return window


def segmentation_edge_refinement(modality: str, path: str | Path | None = None) -> bool:
    """Whether the model's outline is moved to the lesion's intensity edge for this modality
    (``refine_edges`` in the "segmentation" section of ``window_presets.json``; off by default)."""
    rules, by_modality = _modality_rules(modality, path)
    value = None if by_modality is None else by_modality.get("refine_edges")
    return bool(rules.get("refine_edges", False) if value is None else value)


def segmentation_denoise_mm(modality: str, path: str | Path | None = None) -> float:
    """In-plane smoothing (Gaussian sigma, mm) of slices before a box-prompt model sees them
    (``denoise_mm`` in the "segmentation" section of ``window_presets.json``; 0 = none)."""
    rules, by_modality = _modality_rules(modality, path)
    value = None if by_modality is None else by_modality.get("denoise_mm")
    value = rules.get("denoise_mm", 0.0) if value is None else value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 5:
        raise InputError(f"denoise_mm {value!r} in window_presets.json is not a sigma in mm (0-5)",
                         "fix the data file")
    return float(value)


def resolve_window(window: str | WindowPreset | tuple[float, float]) -> WindowPreset:
    """A preset name, a preset or (level, width) → a checked :class:`WindowPreset`."""
    if isinstance(window, WindowPreset):
        preset = window
    elif isinstance(window, str):
        presets = load_window_presets()
        if window not in presets:
            raise InputError(f"unknown CT window preset '{window}'",
                             f"use one of {', '.join(sorted(presets))} or (level, width)")
        preset = presets[window]
    else:
        try:
            level, width = (float(v) for v in window)
        except (TypeError, ValueError):
            raise InputError(f"window {window!r} is neither a preset name nor (level, width)",
                             "pass e.g. 'soft_tissue' or (40, 400)") from None
        preset = WindowPreset(name="custom", level=level, width=width)
    if not (np.isfinite(preset.level) and np.isfinite(preset.width) and preset.width > 0):
        raise InputError(f"window level {preset.level} / width {preset.width} is invalid",
                         "the width must be a positive number of HU")
    return preset


def _check_finite(volume: ImageVolume) -> None:
    array = volume.array
    if not np.issubdtype(array.dtype, np.floating):
        return
    nan = int(np.count_nonzero(np.isnan(array)))
    inf = int(np.count_nonzero(np.isinf(array)))
    if nan or inf:
        parts = [f"{nan} NaN" if nan else "", f"{inf} infinite" if inf else ""]
        raise InputError(f"image '{volume.name}' has {' and '.join(p for p in parts if p)} "
                         f"voxel(s) out of {array.size}",
                         "replace them first (e.g. np.nan_to_num) or mask them out; they "
                         "usually come from a failed earlier processing step")


def apply_window(volume: ImageVolume,
                 window: str | WindowPreset | tuple[float, float]) -> ImageVolume:
    """Map a CT window to float32 in [0, 1] (clipped) on a copy; the raw HU are kept.

    ``window`` is a preset name (see :func:`load_window_presets`), a WindowPreset or
    ``(level, width)``. The window used is recorded in ``metadata["window"]``.
    """
    volume.validate()
    preset = resolve_window(window)
    _check_finite(volume)
    values = (volume.array.astype(np.float64) - preset.lower) / preset.width
    array = np.clip(values, 0.0, 1.0).astype(np.float32)
    result = volume.with_array(array)
    result.metadata["window"] = asdict(preset)
    return result


# -- MR intensity normalisation ------------------------------------------------------
def _mask_array(volume: ImageVolume, mask: np.ndarray | ImageVolume | None) -> np.ndarray | None:
    if mask is None:
        return None
    values = mask.array if isinstance(mask, ImageVolume) else np.asarray(mask)
    if values.shape != volume.array.shape:
        raise GeometryError(f"mask shape {values.shape} differs from image shape "
                            f"{volume.array.shape}", "resample the mask onto the image grid")
    selected = values != 0
    if not selected.any():
        raise InputError("the normalisation mask is empty",
                         "pass a mask with at least some non-zero voxels, or no mask")
    return selected


def normalize_mr_percentiles(volume: ImageVolume, low: float = 0.5, high: float = 99.5,
                             per_slice: bool = False,
                             mask: np.ndarray | ImageVolume | None = None) -> ImageVolume:
    """Scale intensities so the ``low``/``high`` percentiles map to 0/1 (clipped, float32).

    MR signal has no absolute unit, so percentiles give a reproducible scale. With
    ``per_slice`` each k-slice (axis 0 of the array; reorient to RAS first for axial
    slices) gets its own window, as LiteMedSAM expects; constant slices (e.g. empty slices
    at the edge of the field of view) become 0, and slices without mask voxels use the
    whole-volume window. Percentiles are taken over ``mask`` voxels when a mask is given.
    """
    volume.validate()
    if not (0 <= low < high <= 100):
        raise InputError(f"percentiles low={low}, high={high} are invalid",
                         "use 0 <= low < high <= 100, e.g. 0.5 and 99.5")
    _check_finite(volume)
    selected = _mask_array(volume, mask)
    data = volume.array.astype(np.float64)
    sample = data if selected is None else data[selected]
    global_low, global_high = (float(v) for v in np.percentile(sample, [low, high]))
    if not global_high > global_low:
        where = "inside the mask " if selected is not None else ""
        raise InputError(
            f"image '{volume.name}' is constant {where}between the {low} and {high} "
            f"percentiles (value {global_low:g}); it cannot be normalised",
            "check that the right image (and mask) was loaded; a blank or fully masked "
            "image has no contrast to scale")
    metadata: dict[str, Any] = {"method": "percentile", "low_percentile": low,
                                "high_percentile": high, "per_slice": per_slice,
                                "low_value": global_low, "high_value": global_high}
    if not per_slice:
        output = np.clip((data - global_low) / (global_high - global_low), 0.0, 1.0)
    else:
        output = np.zeros_like(data)
        lows, highs, constant = [], [], []
        for k in range(data.shape[0]):
            plane = data[k]
            if selected is None:
                values = plane
            elif selected[k].any():
                values = plane[selected[k]]
            else:
                values = None
            if values is None:
                lo, hi = global_low, global_high
            else:
                lo, hi = (float(v) for v in np.percentile(values, [low, high]))
            lows.append(lo)
            highs.append(hi)
            if hi > lo:
                output[k] = np.clip((plane - lo) / (hi - lo), 0.0, 1.0)
            else:
                constant.append(k)  # no contrast: leave the slice at 0
        metadata.update(slice_low_values=lows, slice_high_values=highs, constant_slices=constant)
    result = volume.with_array(output.astype(np.float32))
    result.metadata["normalization"] = metadata
    return result
