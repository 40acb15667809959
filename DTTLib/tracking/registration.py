"""Rigid then affine registration of a follow-up scan to the baseline (SimpleITK, Mattes MI).

Convention: baseline = fixed, follow-up = moving. SimpleITK's transform then maps a *baseline*
physical point to the matching *follow-up* point (that is what image resampling needs), so a
baseline lesion centroid is carried into follow-up space with ``to_followup`` and a follow-up
centroid back with ``to_baseline`` (the exact inverse; rigid and affine maps are invertible).
SimpleITK works in LPS; every point that enters or leaves this module is RAS.

Deterministic: metric sampling uses a fixed seed (SimpleITK's seed 0 means "wall clock", so
we pass seed + 1) and a single thread; the same scans give the same matrix to ~1e-12 (measured;
without a fixed seed runs differed by 0.07 in the matrix).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from DTTLib.errors import GeometryError, InputError
from DTTLib.imaging.io import volume_to_sitk
from DTTLib.imaging.volume import ImageVolume

FLIP = np.diag([-1.0, -1.0, 1.0])  # RAS <-> LPS (its own inverse)


@dataclass(frozen=True)
class RegistrationOptions:
    """Knobs; defaults suit MR/CT of one patient a few weeks apart (seconds on 2 cores)."""

    stages: tuple[str, ...] = ("rigid", "affine")
    histogram_bins: int = 32
    sampling_fraction: float = 0.2
    shrink_factors: tuple[int, ...] = (4, 2, 1)
    smoothing_sigmas_mm: tuple[float, ...] = (2.0, 1.0, 0.0)
    iterations: int = 200
    learning_rate: float = 1.0
    min_step: float = 1e-3  # optimizer stops when its step (mm, physical-shift scales) falls below this
    max_voxels: int = 600_000  # larger scans are block-averaged in-plane first (speed, not accuracy)
    seed: int = 0
    threads: int = 1
    #: An affine stage is kept only if it does not worsen the full-resolution metric of the
    #: stage before it and its scaling stays within these bounds (the same patient's body a
    #: few weeks apart does not shrink or grow by a third). Outside them it has diverged.
    max_scale_change: float = 0.25
    metric_tolerance: float = 0.01


@dataclass
class RegistrationResult:
    """The baseline→follow-up map as a 4×4 RAS matrix, plus the metric trace per stage."""

    matrix_ras: np.ndarray  # p_followup_ras = M @ [p_baseline_ras, 1]
    stages: list[str] = field(default_factory=list)
    final_metric: list[float] = field(default_factory=list)
    iterations: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # stages tried and rejected, and why

    @classmethod
    def identity(cls) -> "RegistrationResult":
        return cls(np.eye(4), ["identity"], [], [])

    def to_followup(self, points_ras: Sequence[Sequence[float]]) -> np.ndarray:
        return _apply(self.matrix_ras, points_ras)

    def to_baseline(self, points_ras: Sequence[Sequence[float]]) -> np.ndarray:
        return _apply(np.linalg.inv(self.matrix_ras), points_ras)

    def rotation_deg(self) -> float:
        """Angle of the nearest rotation to the linear part (polar decomposition)."""
        u, _, vt = np.linalg.svd(self.matrix_ras[:3, :3])
        r = u @ vt
        return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0))))

    def sitk_transform(self) -> sitk.AffineTransform:
        """The same map for SimpleITK resampling (LPS, baseline point → follow-up point)."""
        lin = FLIP @ self.matrix_ras[:3, :3] @ FLIP
        tr = FLIP @ self.matrix_ras[:3, 3]
        t = sitk.AffineTransform(3)
        t.SetMatrix(lin.ravel().tolist())
        t.SetTranslation(tr.tolist())
        return t

    def to_dict(self) -> dict:
        return {"matrix_ras": self.matrix_ras.tolist(), "stages": list(self.stages),
                "final_metric": list(self.final_metric), "iterations": list(self.iterations),
                "notes": list(self.notes)}


def _apply(m: np.ndarray, points: Sequence[Sequence[float]]) -> np.ndarray:
    p = np.atleast_2d(np.asarray(points, float))
    if p.shape[-1] != 3:
        raise InputError(f"points have shape {p.shape}", "pass RAS points as (n, 3)")
    return p @ m[:3, :3].T + m[:3, 3]


def _matrix_ras_from_sitk(t: sitk.Transform) -> np.ndarray:
    """4×4 RAS matrix of a (composite of) rigid/affine SimpleITK transform(s)."""
    origin = np.zeros(3)
    basis = np.eye(3)
    p0 = np.array(t.TransformPoint(origin.tolist()))
    lin = np.column_stack([np.array(t.TransformPoint(b.tolist())) - p0 for b in basis])
    m = np.eye(4)
    m[:3, :3] = FLIP @ lin @ FLIP
    m[:3, 3] = FLIP @ p0
    return m


def _prepared(volume: ImageVolume, max_voxels: int) -> sitk.Image:
    img = sitk.Cast(volume_to_sitk(volume), sitk.sitkFloat32)
    size = np.array(img.GetSize())
    factor = 1
    while np.prod(np.maximum(size // np.array([factor, factor, 1]), 1)) > max_voxels and factor < 16:
        factor *= 2
    if factor > 1:
        img = sitk.BinShrink(img, [factor, factor, 1])
    return img


def register(baseline: ImageVolume, followup: ImageVolume,
             options: RegistrationOptions | None = None) -> RegistrationResult:
    """Register ``followup`` (moving) to ``baseline`` (fixed): rigid, then affine from the rigid."""
    opts = options or RegistrationOptions()
    for v in (baseline, followup):
        if min(v.array.shape) < 4 and v.array.size < 64:
            raise GeometryError(f"scan '{v.name}' is too small to register ({v.array.shape})",
                                "register whole scans, not crops of a few voxels")
    unknown = set(opts.stages) - {"rigid", "affine"}
    if unknown or not opts.stages:
        raise InputError(f"unknown registration stage(s) {sorted(unknown)}", "use 'rigid' and/or 'affine'")
    # Every filter SimpleITK runs here (shrinking, smoothing, the metric) sums in thread order;
    # one thread makes the transform repeatable bit for bit, so cached carry-over boxes and the
    # pipeline's measurements do not change between identical runs.
    threads_before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(opts.threads)
    try:
        return _register(baseline, followup, opts)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads_before)


def _register(baseline: ImageVolume, followup: ImageVolume, opts: RegistrationOptions) -> RegistrationResult:
    fixed = _prepared(baseline, opts.max_voxels)
    moving = _prepared(followup, opts.max_voxels)
    current: sitk.Transform = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS)
    result = RegistrationResult(np.eye(4))
    for stage in opts.stages:
        if stage == "rigid":
            initial = current
        else:
            initial = sitk.AffineTransform(3)
            m = _matrix_ras_from_sitk(current)
            lin = FLIP @ m[:3, :3] @ FLIP
            centre = np.array(fixed.TransformContinuousIndexToPhysicalPoint(
                [(s - 1) / 2.0 for s in fixed.GetSize()]))
            initial.SetCenter(centre.tolist())
            initial.SetMatrix(lin.ravel().tolist())
            # x' = A(x - c) + c + t  must equal  x' = A x + b
            initial.SetTranslation((FLIP @ m[:3, 3] - centre + lin @ centre).tolist())
        reg = _method(opts)
        reg.SetOptimizerScalesFromPhysicalShift()
        reg.SetShrinkFactorsPerLevel(list(opts.shrink_factors))
        reg.SetSmoothingSigmasPerLevel(list(opts.smoothing_sigmas_mm))
        reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
        reg.SetInitialTransform(initial, inPlace=False)
        try:
            found = reg.Execute(fixed, moving)
        except RuntimeError as exc:
            raise GeometryError(f"{stage} registration failed: {str(exc).splitlines()[-1][:200]}",
                                "check that both scans show the same body region and overlap") from exc
        if stage == "affine" and result.stages:
            rejection = _affine_rejection(fixed, moving, current, found, opts)
            if rejection:
                result.notes.append(f"affine stage rejected ({rejection}); the rigid result is kept")
                continue
        current = found
        result.stages.append(stage)
        result.final_metric.append(float(reg.GetMetricValue()))
        result.iterations.append(int(reg.GetOptimizerIteration()))
    result.matrix_ras = _matrix_ras_from_sitk(current)
    return result


def _method(opts: RegistrationOptions) -> sitk.ImageRegistrationMethod:
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=opts.histogram_bins)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(opts.sampling_fraction, opts.seed + 1)  # SimpleITK seed 0 = wall clock
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=opts.learning_rate, minStep=opts.min_step, numberOfIterations=opts.iterations,
        relaxationFactor=0.5, gradientMagnitudeTolerance=1e-8)
    reg.SetNumberOfThreads(opts.threads)
    return reg


def _full_resolution_metric(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform,
                            opts: RegistrationOptions) -> float:
    """Mattes MI of ``transform`` on the full-resolution images (same samples for every call)."""
    reg = _method(opts)
    reg.SetInitialTransform(transform, inPlace=False)
    return float(reg.MetricEvaluate(fixed, moving))


def _affine_rejection(fixed: sitk.Image, moving: sitk.Image, rigid: sitk.Transform,
                      affine: sitk.Transform, opts: RegistrationOptions) -> str:
    """Why the affine result must not replace the rigid one ('' when it may).

    Gradient descent on the 12 affine parameters can run away (seen on a phantom pair: scale
    1.57, metric −0.18 where the rigid stage had −0.88), and a runaway map carries lesion
    boxes 20 mm off. Both checks use quantities the registration itself defines.
    """
    scales = np.linalg.svd(_matrix_ras_from_sitk(affine)[:3, :3], compute_uv=False)
    if np.any(np.abs(np.log(scales)) > np.log1p(opts.max_scale_change)):
        return f"scale factors {', '.join(f'{v:.2f}' for v in scales)} outside 1 ± {opts.max_scale_change:.2f}"
    before = _full_resolution_metric(fixed, moving, rigid, opts)
    after = _full_resolution_metric(fixed, moving, affine, opts)
    if after > before + opts.metric_tolerance * abs(before):  # Mattes MI: lower is better
        return f"metric {after:.3f} worse than the rigid stage's {before:.3f}"
    return ""


def warp_mask_to_baseline(mask: np.ndarray, followup: ImageVolume, baseline: ImageVolume,
                          reg: RegistrationResult) -> np.ndarray:
    """A follow-up mask resampled (nearest neighbour) onto the baseline grid."""
    if mask.shape != followup.array.shape:
        raise GeometryError(f"mask shape {mask.shape} differs from its scan {followup.array.shape}",
                            "pass the mask on the grid of the scan it was drawn on")
    src = volume_to_sitk(followup.with_array((np.asarray(mask) > 0).astype(np.uint8)))
    ref = volume_to_sitk(baseline.with_array(np.zeros(baseline.array.shape, np.uint8)))
    out = sitk.Resample(src, ref, reg.sitk_transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(out) > 0
