"""Registration recovers a known rigid motion of the real brain MR (brain1)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from mrml_helpers import rotation

from DTTLib.imaging import read_image
from DTTLib.imaging.io import sitk_to_volume, volume_to_sitk
from DTTLib.tracking import RegistrationOptions, RegistrationResult, register


def test_rigid_affine_recovers_a_known_transform_of_brain1(shared_data):
    base = read_image(shared_data / "imaging" / "brain1_image.nrrd")
    centre = (base.ijk_to_ras() @ np.array([127.5, 127.5, 12.0, 1.0]))[:3]
    truth = np.eye(4)
    truth[:3, :3] = rotation(1.5, -1.0, 4.0)
    truth[:3, 3] = centre - truth[:3, :3] @ centre + np.array([4.0, -3.0, 2.0])
    # follow-up(q) = baseline(truth⁻¹ q): anatomy at p in the baseline is at truth·p in the follow-up
    image = volume_to_sitk(base)
    moved = sitk.Resample(image, image, RegistrationResult(np.linalg.inv(truth)).sitk_transform(),
                          sitk.sitkLinear, 0.0, image.GetPixelID())
    found = register(base, sitk_to_volume(moved), RegistrationOptions(shrink_factors=(4, 2), smoothing_sigmas_mm=(2.0, 1.0)))
    assert found.stages == ["rigid", "affine"]
    ijk = np.array(np.meshgrid([64, 128, 192], [64, 128, 192], [4, 12, 20])).reshape(3, -1)
    points = (base.ijk_to_ras()[:3, :3] @ ijk).T + base.ijk_to_ras()[:3, 3]
    error = np.linalg.norm(found.to_followup(points) - RegistrationResult(truth).to_followup(points), axis=1)
    assert error.max() < 1.0, error
    residual = RegistrationResult(np.linalg.inv(truth) @ found.matrix_ras)
    assert residual.rotation_deg() < 0.5
    # inverse maps back; the SimpleITK form agrees with the RAS matrix (LPS flip done right)
    np.testing.assert_allclose(found.to_baseline(found.to_followup(points)), points, atol=1e-9)
    lps = np.array([found.sitk_transform().TransformPoint((-p[0], -p[1], p[2])) for p in points])
    np.testing.assert_allclose(lps * [-1, -1, 1], found.to_followup(points), atol=1e-9)


def _phantom_centre(labels, number: int) -> np.ndarray:
    kji = np.argwhere(labels.array == number).mean(axis=0)
    return (labels.ijk_to_ras() @ np.array([*kji[::-1], 1.0]))[:3]


def test_phantom_pair_whose_affine_stage_ran_away_maps_every_lesion_within_a_millimetre(tmp_path):
    """Scans 4 → 5 of the demo phantom: the affine optimiser ran away (scale 1.57) and carried
    the small lesions' boxes 20–30 mm off; the guard must keep the rigid answer instead."""
    from DTTLib.demo.phantom import make_phantom  # noqa: PLC0415

    case = make_phantom(tmp_path)
    paths = sorted(tmp_path.glob("tp*_day*.nrrd"))
    images = [read_image(p) for p in paths[4:6]]
    labels = [read_image(tmp_path / "truth" / p.name.replace(".nrrd", "_labels.nrrd")) for p in paths[4:6]]
    found = register(images[0], images[1])
    for number in range(1, len({t.lesion_id for t in case.truth}) + 1):
        mapped = found.to_followup([_phantom_centre(labels[0], number)])[0]
        assert np.linalg.norm(mapped - _phantom_centre(labels[1], number)) < 1.0, (number, found.notes)
    scales = np.linalg.svd(found.matrix_ras[:3, :3], compute_uv=False)
    assert np.all(np.abs(scales - 1.0) < 0.02), scales


def test_affine_guard_rejects_a_runaway_scale_and_a_worse_metric(shared_data):
    from DTTLib.tracking.registration import _affine_rejection, _prepared  # noqa: PLC0415

    base = read_image(shared_data / "imaging" / "brain1_image.nrrd")
    fixed = moving = _prepared(base, 600_000)
    opts = RegistrationOptions()
    identity = sitk.Euler3DTransform()
    assert _affine_rejection(fixed, moving, identity, sitk.AffineTransform(3), opts) == ""
    grown = sitk.AffineTransform(3)
    grown.SetMatrix((1.5, 0, 0, 0, 1.5, 0, 0, 0, 1.0))
    assert "scale factors 1.50, 1.50, 1.00" in _affine_rejection(fixed, moving, identity, grown, opts)
    shifted = sitk.AffineTransform(3)
    shifted.SetTranslation((12.0, -9.0, 0.0))  # plausible scale, but the images no longer line up
    assert "worse than the rigid stage" in _affine_rejection(fixed, moving, identity, shifted, opts)
