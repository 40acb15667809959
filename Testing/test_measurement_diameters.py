"""RECIST diameters against analytic ellipsoids, brute force on the expert labels, and edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from mrml_helpers import rotation

from DTTLib.errors import GeometryError, InputError
from DTTLib.imaging import ImageVolume, read_image
from DTTLib.measurement import measure_lesion, slice_diameters


def _ellipsoid_on_grid(shape, spacing, direction, centre_ijk, axes_ras, radii):
    """Mask of voxels whose centres lie in the ellipsoid (axes as RAS unit columns, radii mm)."""
    image = ImageVolume(np.zeros(shape, np.int16), spacing=spacing, origin=(10.0, -20.0, 5.0),
                        direction=direction)
    k, j, i = np.indices(shape)
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)])
    centre = image.ijk_to_ras() @ np.array([*centre_ijk, 1.0])
    offsets = (image.ijk_to_ras() @ ijk)[:3] - centre[:3, None]
    local = np.asarray(axes_ras).T @ offsets / np.asarray(radii, float)[:, None]
    mask = (np.sum(local**2, axis=0) <= 1.0).reshape(shape).astype(np.uint8)
    quadric = np.asarray(axes_ras) @ np.diag(1.0 / np.asarray(radii, float) ** 2) @ np.asarray(axes_ras).T
    return image, mask, quadric


def _section_axes(quadric, direction, spacing, dk):
    """Semi-axes and major direction (RAS) of the section of x^T A x <= 1 by the plane of
    the i and j axes shifted ``dk`` slices from the centre (independent of the code)."""
    e = direction[:, :2]
    n = direction[:, 2] * dk * spacing[2]
    b = e.T @ quadric @ e
    g = e.T @ quadric @ n
    r = 1.0 - n @ quadric @ n + g @ np.linalg.solve(b, g)
    values, vectors = np.linalg.eigh(b)
    semi = np.sqrt(r / values)            # values ascending -> semi-axes descending
    return semi[0], semi[1], e @ vectors[:, 0]


def _angle_deg(a, b):
    a, b = np.asarray(a) / np.linalg.norm(a), np.asarray(b) / np.linalg.norm(b)
    return float(np.degrees(np.arccos(min(1.0, abs(a @ b)))))


CASES = [
    # spacing (i, j, k), direction, in-plane rotation of the ellipsoid (deg), radii (mm)
    ((0.7, 1.1, 2.5), np.eye(3), 0.0, (18.0, 9.0, 12.0)),
    ((0.7, 1.1, 2.5), np.eye(3), 35.0, (20.0, 8.0, 10.0)),
    ((1.3, 0.6, 3.0), np.eye(3), -62.0, (15.0, 11.0, 9.0)),
    ((0.9, 0.8, 2.0), rotation(12, -7, 31), 20.0, (19.0, 10.0, 12.0)),
    ((0.6, 1.0, 1.5), rotation(-15, 8, 140), 75.0, (16.0, 6.0, 8.0)),
]


@pytest.mark.parametrize("spacing, direction, angle, radii", CASES)
def test_ellipsoid_diameters_match_analytic_sections(spacing, direction, angle, radii):
    theta = np.radians(angle)
    # the ellipsoid's own axes: rotated by `angle` inside the k-slice plane, third along k
    in_plane = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    axes = np.column_stack([direction[:, :2] @ in_plane[:, 0], direction[:, :2] @ in_plane[:, 1],
                            direction[:, 2]])
    # tilt it a little out of the slice plane too, so sections are not just (a, b)
    axes = rotation(9, -6, 0) @ axes if angle else axes
    shape = (int(2.6 * radii[2] / spacing[2]) + 3, int(2.6 * max(radii) / spacing[1]) + 3,
             int(2.6 * max(radii) / spacing[0]) + 3)
    centre = (shape[2] / 2 + 0.3, shape[1] / 2 - 0.2, shape[0] // 2)
    image, mask, quadric = _ellipsoid_on_grid(shape, spacing, direction, centre, axes, radii)

    m = measure_lesion(mask, image)
    dk = m.slice_index - centre[2]
    assert abs(dk) <= 1
    a, b, major = _section_axes(quadric, image.direction, spacing, dk)
    pixel = float(np.hypot(spacing[0], spacing[1]))
    assert abs(m.longest_diameter_mm - 2 * a) <= pixel
    assert abs(m.short_axis_mm - 2 * b) <= pixel
    # endpoints: in the measured slice, as long as the diameters, LD along the major axis
    start, end = np.array(m.long_axis_ras[0]), np.array(m.long_axis_ras[1])
    assert np.linalg.norm(end - start) == pytest.approx(m.longest_diameter_mm, abs=1e-6)
    s0, s1 = np.array(m.short_axis_ras[0]), np.array(m.short_axis_ras[1])
    assert np.linalg.norm(s1 - s0) == pytest.approx(m.short_axis_mm, abs=1e-6)
    for point in (start, end, s0, s1):
        ijk = image.ras_to_ijk() @ np.array([*point, 1.0])
        assert ijk[2] == pytest.approx(m.slice_index, abs=1e-6)
    # a chord at angle phi from the major axis spans 2a(1 - e^2 phi^2 / 2); with LD within one
    # pixel diagonal of 2a at each end, phi^2 <= 2 * pixel / (a e^2)
    eccentricity2 = 1.0 - (b / a) ** 2
    assert _angle_deg(end - start, major) <= np.degrees(np.sqrt(2 * pixel / (a * eccentricity2)))
    assert abs((end - start) @ (s1 - s0)) <= 1e-6 * m.longest_diameter_mm * m.short_axis_mm
    # volume and centroid
    assert m.volume_mm3 == pytest.approx(mask.sum() * np.prod(spacing), rel=1e-9)
    assert m.volume_mm3 == pytest.approx(4 / 3 * np.pi * np.prod(radii), rel=0.06)
    centre_ras = image.ijk_to_ras() @ np.array([*centre, 1.0])
    assert np.linalg.norm(np.array(m.centroid_ras) - centre_ras[:3]) <= pixel
    assert m.plane == "axial" and m.components_on_slice == 1


def _brute_force_ld(plane, si, sj):
    j, i = np.nonzero(plane)
    corners = np.concatenate([np.stack([i + di, j + dj], 1) for di in (-0.5, 0.5) for dj in (-0.5, 0.5)])
    corners = np.unique(corners, axis=0) * [si, sj]
    best = 0.0
    for start in range(0, len(corners), 2000):
        block = corners[start:start + 2000]
        best = max(best, float(np.sqrt(((block[:, None] - corners[None]) ** 2).sum(-1)).max()))
    return best


def _sampled_sa(plane, si, sj, p, q, step=0.05):
    """First-to-last inside extent of sampled lines perpendicular to p->q (a lower bound)."""
    u = (np.asarray(q) - p) / np.linalg.norm(np.asarray(q) - p)
    v = np.array([-u[1], u[0]])
    reach = np.hypot(plane.shape[0] * sj, plane.shape[1] * si)
    ts = np.arange(np.asarray(p) @ u, np.asarray(q) @ u, step)
    ss = np.arange(-reach, reach, step)
    x = ts[:, None] * u[0] + ss[None] * v[0]
    y = ts[:, None] * u[1] + ss[None] * v[1]
    i, j = np.floor(x / si + 0.5).astype(int), np.floor(y / sj + 0.5).astype(int)
    ok = (i >= 0) & (j >= 0) & (i < plane.shape[1]) & (j < plane.shape[0])
    inside = np.zeros_like(ok)
    inside[ok] = plane[j[ok], i[ok]]
    best = 0.0
    for row in inside:
        hits = np.flatnonzero(row)
        if hits.size:
            best = max(best, (hits[-1] - hits[0]) * step)
    return best


@pytest.mark.parametrize("name", ["brain1", "brain2"])
def test_expert_labels_against_brute_force(shared_data, name):
    label = read_image(shared_data / "imaging" / f"{name}_label.nrrd")
    mask = label.array > 0
    si, sj, _ = label.spacing
    per_slice = {k: _brute_force_ld(mask[k], si, sj) for k in np.flatnonzero(mask.any(axis=(1, 2)))}
    k_best = max(per_slice, key=per_slice.get)

    m = measure_lesion(label.array, label)
    assert m.longest_diameter_mm == pytest.approx(per_slice[k_best], abs=1e-9)
    assert per_slice[m.slice_index] == pytest.approx(per_slice[k_best], abs=1e-9)
    assert m.volume_mm3 == pytest.approx(np.count_nonzero(mask) * np.prod(label.spacing), rel=1e-12)
    ijk = np.array([*np.nonzero(mask)[::-1]], float).mean(axis=1)
    assert np.allclose(m.centroid_ras, (label.ijk_to_ras() @ np.array([*ijk, 1.0]))[:3])
    # SA: exact maximum >= any sampled chord, and close to the best sampled one
    ras_to_slice = label.ras_to_ijk()
    p, q = [(ras_to_slice @ np.array([*e, 1.0]))[:2] * [si, sj] for e in m.long_axis_ras]
    sampled = _sampled_sa(mask[m.slice_index], si, sj, p, q)
    assert sampled - 0.1 <= m.short_axis_mm <= sampled + 0.3
    assert m.short_axis_mm < m.longest_diameter_mm
    assert m.plane == "axial" and m.plane_tilt_deg == pytest.approx(0.0, abs=1e-6)


def test_single_pixel_and_rectangle_use_outer_boundary():
    one = slice_diameters(np.ones((1, 1), bool), 1.0, 2.0)
    assert one.longest_mm == pytest.approx(np.sqrt(5.0))
    # the chord perpendicular to a 1x2 rectangle's diagonal through its centre
    assert one.short_mm == pytest.approx(1.0 / (2.0 / np.sqrt(5.0)))
    bar = slice_diameters(np.ones((1, 10), bool), 0.5, 3.0)  # 5 mm x 3 mm
    assert bar.longest_mm == pytest.approx(np.hypot(5.0, 3.0))


def test_two_pieces_on_a_slice_are_spanned_and_reported():
    array = np.zeros((3, 20, 30), np.uint8)
    array[1, 5:9, 2:6] = 1
    array[1, 10:14, 20:28] = 1
    image = ImageVolume(array, spacing=(1.0, 1.0, 5.0))
    m = measure_lesion(array, image)
    assert m.components_on_slice == 2 and any("2 separate pieces" in n for n in m.notes)
    assert m.longest_diameter_mm == pytest.approx(np.hypot(28 - 2, 14 - 5))


def test_non_axial_volume_reports_its_plane():
    array = np.zeros((5, 12, 12), np.uint8)
    array[2, 3:9, 4:7] = 1
    coronal = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])  # k runs along A
    m = measure_lesion(array, ImageVolume(array, spacing=(1.0, 2.0, 3.0), direction=coronal))
    assert m.plane == "coronal" and m.plane_tilt_deg == pytest.approx(0.0, abs=1e-6)
    assert any("coronal" in note for note in m.notes)
    assert m.longest_diameter_mm == pytest.approx(np.hypot(3 * 1.0, 6 * 2.0))


def test_empty_and_mismatched_masks_raise():
    image = ImageVolume(np.zeros((3, 4, 5), np.int16))
    with pytest.raises(InputError, match="empty"):
        measure_lesion(np.zeros((3, 4, 5), np.uint8), image)
    with pytest.raises(GeometryError, match="shape"):
        measure_lesion(np.ones((3, 4, 6), np.uint8), image)
