"""A deterministic synthetic patient whose truth is known: CT-like scans over time.

Ellipsoid lesions in a liver-like organ grow and respond to a therapy log following the
Claret tumour-growth-inhibition model with resistance (diameter scale), the body shifts a
little between scans (so tracking has work to do), and Gaussian noise is added. The
analytic volumes and diameters of every lesion at every timepoint are returned so tests
and benchmarks can compare the pipeline's measurements with the truth.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from DTTLib.imaging.volume import ImageVolume


@dataclass(frozen=True)
class PhantomLesion:
    lesion_id: str
    organ: str
    nodal: bool
    center_mm: tuple[float, float, float]  # from the volume centre, (x=i, y=j, z=k) mm
    semi_axes_mm: tuple[float, float, float]  # at baseline, along i, j, k
    kg: float  # growth rate (1/day)
    kd: float  # drug effect (1/day per unit exposure)
    lam: float  # resistance: effect decays as exp(-lam (t - therapy start))


@dataclass(frozen=True)
class PhantomSpec:
    days: tuple[float, ...] = (0.0, 42.0, 84.0, 126.0, 168.0, 210.0)
    therapy: tuple[tuple[float, float, float], ...] = ((28.0, 196.0, 1.0),)  # start, end, dose
    shape: tuple[int, int, int] = (40, 144, 144)  # (k, j, i)
    spacing: tuple[float, float, float] = (1.0, 1.0, 2.5)  # (i, j, k) mm
    noise_hu: float = 12.0
    shift_mm: float = 3.0  # largest rigid shift between scans
    seed: int = 20261128
    lesions: tuple[PhantomLesion, ...] = (
        PhantomLesion("L1", "liver", False, (-22.0, 8.0, 0.0), (15.0, 12.0, 11.0), 0.007, 0.032, 0.025),
        PhantomLesion("L2", "liver", False, (24.0, -14.0, 10.0), (10.0, 9.0, 9.0), 0.004, 0.012, 0.004),
        PhantomLesion("N1", "lymph node", True, (30.0, 42.0, -10.0), (12.0, 8.5, 9.0), 0.003, 0.010, 0.0),
    )


@dataclass
class LesionTruth:
    lesion_id: str
    day: float
    scale: float  # diameter ratio to baseline
    semi_axes_mm: tuple[float, float, float]
    volume_mm3: float
    longest_diameter_mm: float  # axial plane
    short_axis_mm: float  # axial plane, perpendicular to the longest diameter


@dataclass
class PhantomCase:
    case_dir: Path
    truth: list[LesionTruth] = field(default_factory=list)

    def truth_for(self, lesion_id: str, day: float) -> LesionTruth:
        return next(t for t in self.truth if t.lesion_id == lesion_id and t.day == day)


def diameter_scale(lesion: PhantomLesion, day: float, therapy: tuple[tuple[float, float, float], ...]) -> float:
    """Claret model on the diameter scale, integrated exactly (piecewise-constant exposure).

    d ln y / dt = kg − kd · E(t) · exp(−lam (t − t_start)); written out here, independently of
    DTTLib.growth, so the phantom is a check on the fitter and not a copy of it.
    """
    start = min((a for a, _, _ in therapy), default=0.0)
    log_ratio = lesion.kg * day
    for a, b, level in therapy:
        lo, hi = max(a, 0.0), min(b, day)
        if hi <= lo:
            continue
        if lesion.lam == 0:
            decayed = hi - lo
        else:
            decayed = (math.exp(-lesion.lam * (lo - start)) - math.exp(-lesion.lam * (hi - start))) / lesion.lam
        log_ratio -= lesion.kd * level * decayed
    return math.exp(log_ratio)


def lesion_truth(lesion: PhantomLesion, day: float, spec: PhantomSpec) -> LesionTruth:
    scale = diameter_scale(lesion, day, spec.therapy)
    a, b, c = (s * scale for s in lesion.semi_axes_mm)
    return LesionTruth(lesion.lesion_id, day, scale, (a, b, c), 4.0 / 3.0 * math.pi * a * b * c,
                       2 * max(a, b), 2 * min(a, b))


def make_phantom(case_dir: str | Path, spec: PhantomSpec = PhantomSpec()) -> PhantomCase:
    """Write scans (NRRD), truth labels and ``case.json`` into ``case_dir``."""
    from DTTLib.imaging.io import write_image  # noqa: PLC0415

    case_dir = Path(case_dir)
    case_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    case = PhantomCase(case_dir)
    origin = tuple(-(n - 1) * s / 2 for n, s in zip(spec.shape[::-1], spec.spacing))
    timepoints, boxes = [], []
    for index, day in enumerate(spec.days):
        shift = np.zeros(3) if index == 0 else rng.uniform(-spec.shift_mm, spec.shift_mm, 3) * (1, 1, 0.5)
        x, y, z = _grid_mm(spec)
        x, y, z = x - shift[0], y - shift[1], z - shift[2]
        image = np.full(spec.shape, -1000.0)
        body = (x / 68) ** 2 + (y / 60) ** 2 <= 1
        image[body] = 40.0
        liver = ((x + 5) / 52) ** 2 + ((y + 2) / 44) ** 2 + (z / 45) ** 2 <= 1
        image[liver] = 65.0
        labels = np.zeros(spec.shape, np.uint8)
        for number, lesion in enumerate(spec.lesions, start=1):
            truth = lesion_truth(lesion, day, spec)
            case.truth.append(truth)
            cx, cy, cz = lesion.center_mm
            a, b, c = truth.semi_axes_mm
            inside = ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 + ((z - cz) / c) ** 2 <= 1
            image[inside] = 20.0 if not lesion.nodal else 100.0  # hypodense liver lesions, enhancing node
            labels[inside] = number
            if index == 0:
                boxes.append(_voxel_box(lesion, truth, spec, origin))
        image += rng.normal(0.0, spec.noise_hu, spec.shape)
        name = f"tp{index}_day{int(day):03d}"
        volume = ImageVolume(np.round(image).astype(np.int16), spec.spacing, origin, name=name)
        write_image(volume, case_dir / f"{name}.nrrd")
        (case_dir / "truth").mkdir(exist_ok=True)
        write_image(volume.with_array(labels), case_dir / "truth" / f"{name}_labels.nrrd")
        timepoints.append({"id": f"t{index}", "path": f"{name}.nrrd", "day": day})
    case_json = {
        "patient": "PHANTOM-001",
        "description": "Synthetic CT phantom (DTTLib.demo.phantom): known Claret growth, rigid shifts, noise",
        "modality": "CT",
        "timepoints": timepoints,
        "therapy": [{"start_day": a, "end_day": b, "dose_level": d, "agent": "synthetic drug"}
                    for a, b, d in spec.therapy],
        "lesions": [{"id": lesion.lesion_id, "organ": lesion.organ, "nodal": lesion.nodal,
                     "box": {"timepoint": "t0", "ijk": box}} for lesion, box in zip(spec.lesions, boxes)],
    }
    (case_dir / "case.json").write_text(json.dumps(case_json, indent=2))
    (case_dir / "truth" / "truth.json").write_text(json.dumps([asdict(t) for t in case.truth], indent=2))
    return case


def _grid_mm(spec: PhantomSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k, j, i = np.indices(spec.shape, dtype=float)
    nk, nj, ni = spec.shape
    si, sj, sk = spec.spacing
    return (i - (ni - 1) / 2) * si, (j - (nj - 1) / 2) * sj, (k - (nk - 1) / 2) * sk


def _voxel_box(lesion: PhantomLesion, truth: LesionTruth, spec: PhantomSpec,
               origin: tuple[float, float, float]) -> list[int]:
    """A baseline box as a radiologist draws it: the lesion's widest axial slice, 3 mm margin."""
    cx, cy, cz = lesion.center_mm
    a, b, _ = truth.semi_axes_mm
    si, sj, sk = spec.spacing
    nk, nj, ni = spec.shape
    ci, cj = cx / si + (ni - 1) / 2, cy / sj + (nj - 1) / 2
    ck = int(round(cz / sk + (nk - 1) / 2))
    margin = 3.0
    return [int(math.floor(ci - (a + margin) / si)), int(math.floor(cj - (b + margin) / sj)), ck,
            int(math.ceil(ci + (a + margin) / si)), int(math.ceil(cj + (b + margin) / sj)), ck]
