"""RECIST diameters against analytic ellipsoids, brute force on the expert labels, and edge cases;
lesions in several 3-D pieces (RECIST fragments: LDs added) and specks."""

from __future__ import annotations

import numpy as np
import pytest
from mrml_helpers import rotation
from scipy import ndimage

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


def _pieces_26(mask):
    """26-connected pieces of a mask, largest first."""
    parts, count = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(parts.ravel())[1:]
    return [parts == n + 1 for n in sorted(range(count), key=lambda n: (-sizes[n], n))]


@pytest.mark.parametrize("name, count", [("brain1", 2), ("brain2", 1)])
def test_expert_labels_against_brute_force(shared_data, name, count):
    label = read_image(shared_data / "imaging" / f"{name}_label.nrrd")
    mask = label.array > 0
    si, sj, _ = label.spacing
    pieces = _pieces_26(mask)
    assert len(pieces) == count
    brute = []  # per piece: LD on each of its slices
    for piece in pieces:
        brute.append({k: _brute_force_ld(piece[k], si, sj) for k in np.flatnonzero(piece.any(axis=(1, 2)))})
    best = [max(per_slice.values()) for per_slice in brute]

    m = measure_lesion(label.array, label)
    assert m.longest_diameter_mm == pytest.approx(sum(best), abs=1e-9)
    assert [p.longest_diameter_mm for p in m.pieces] == pytest.approx(best, abs=1e-9)
    assert [p.voxels for p in m.pieces] == [int(p.sum()) for p in pieces]
    assert brute[0][m.slice_index] == pytest.approx(best[0], abs=1e-9)
    assert m.volume_mm3 == pytest.approx(np.count_nonzero(mask) * np.prod(label.spacing), rel=1e-12)
    ijk = np.array([*np.nonzero(mask)[::-1]], float).mean(axis=1)
    assert np.allclose(m.centroid_ras, (label.ijk_to_ras() @ np.array([*ijk, 1.0]))[:3])
    # SA (of the largest piece): exact maximum >= any sampled chord, and close to the best sampled one
    ras_to_slice = label.ras_to_ijk()
    p, q = [(ras_to_slice @ np.array([*e, 1.0]))[:2] * [si, sj] for e in m.long_axis_ras]
    assert np.hypot(*(q - p)) == pytest.approx(best[0], abs=1e-6)
    sampled = _sampled_sa(pieces[0][m.slice_index], si, sj, p, q)
    assert sampled - 0.1 <= m.short_axis_mm <= sampled + 0.3
    assert m.short_axis_mm < m.longest_diameter_mm
    assert m.plane == "axial" and m.plane_tilt_deg == pytest.approx(0.0, abs=1e-6)


def test_brain1_expert_label_is_two_fragments_whose_lds_add(shared_data):
    label = read_image(shared_data / "imaging" / "brain1_label.nrrd")
    mask = label.array > 0
    big, small = _pieces_26(mask)
    assert (int(big.sum()), int(small.sum())) == (3524, 613)
    # not touching, not even by a corner: the big piece grown by one voxel in all 26 directions misses the small one
    assert not (ndimage.binary_dilation(big, structure=np.ones((3, 3, 3))) & small).any()

    m = measure_lesion(label.array, label)
    alone = [measure_lesion(piece.astype(np.uint8), label) for piece in (big, small)]
    assert len(m.pieces) == 2
    assert m.longest_diameter_mm == pytest.approx(alone[0].longest_diameter_mm + alone[1].longest_diameter_mm,
                                                  abs=1e-9)
    for piece, single in zip(m.pieces, alone):
        assert piece.longest_diameter_mm == single.longest_diameter_mm
        assert piece.short_axis_mm == single.short_axis_mm
        assert piece.slice_index == single.slice_index and piece.long_axis_ras == single.long_axis_ras
        assert piece.volume_mm3 == pytest.approx(single.volume_mm3, rel=1e-12)
    # the line, slice and SA are the largest piece's; volume and centroid the whole mask's
    assert (m.long_axis_ras, m.short_axis_ras) == (alone[0].long_axis_ras, alone[0].short_axis_ras)
    assert m.slice_index == alone[0].slice_index and m.short_axis_mm == alone[0].short_axis_mm
    assert m.volume_mm3 == pytest.approx(np.count_nonzero(mask) * np.prod(label.spacing), rel=1e-12)
    assert m.volume_mm3 == pytest.approx(alone[0].volume_mm3 + alone[1].volume_mm3, rel=1e-12)
    assert m.voxels == 3524 + 613
    # no longer a caliper across the gap on one slice
    si, sj, _ = label.spacing
    across = max(_brute_force_ld(mask[k], si, sj) for k in np.flatnonzero(mask.any(axis=(1, 2))))
    assert abs(m.longest_diameter_mm - across) > 1.0
    lds = [p.longest_diameter_mm for p in m.pieces]
    assert any(f"2 separate pieces (RECIST fragments): LD = {lds[0]:.1f} + {lds[1]:.1f}" in n for n in m.notes)


def _ellipsoid(shape, spacing, centre_ijk, radii_mm):
    """Axis-aligned ellipsoid: voxels whose centres are inside (radii along i, j, k in mm)."""
    k, j, i = np.indices(shape)
    d = [(c - c0) * s / r for c, c0, s, r in zip((i, j, k), centre_ijk, spacing, radii_mm)]
    return (d[0] ** 2 + d[1] ** 2 + d[2] ** 2 <= 1.0).astype(np.uint8)


def test_two_separate_ellipsoids_add_their_lds():
    spacing, direction = (0.7, 1.1, 2.5), rotation(12, -7, 31)
    shape = (26, 80, 140)
    axes_a = np.column_stack([direction[:, :2] @ [np.cos(0.4), np.sin(0.4)],
                              direction[:, :2] @ [-np.sin(0.4), np.cos(0.4)], direction[:, 2]])
    image, mask_a, quadric_a = _ellipsoid_on_grid(shape, spacing, direction, (35.2, 40.3, 12), axes_a,
                                                  (18.0, 9.0, 12.0))
    _, mask_b, quadric_b = _ellipsoid_on_grid(shape, spacing, direction, (104.6, 45.1, 15), direction,
                                              (8.0, 5.0, 6.0))
    assert not (ndimage.binary_dilation(mask_a, structure=np.ones((3, 3, 3))) & mask_b).any()
    both = mask_a | mask_b

    m = measure_lesion(both, image)
    a, b = measure_lesion(mask_a, image), measure_lesion(mask_b, image)
    assert len(m.pieces) == 2 and [p.voxels for p in m.pieces] == [int(mask_a.sum()), int(mask_b.sum())]
    assert m.longest_diameter_mm == pytest.approx(a.longest_diameter_mm + b.longest_diameter_mm, abs=1e-9)
    # each piece against its own analytic section, on its own slice
    pixel = float(np.hypot(spacing[0], spacing[1]))
    for piece, quadric, centre_k in zip(m.pieces, (quadric_a, quadric_b), (12, 15)):
        semi_major, semi_minor, _ = _section_axes(quadric, image.direction, spacing, piece.slice_index - centre_k)
        assert abs(piece.longest_diameter_mm - 2 * semi_major) <= pixel
        assert abs(piece.short_axis_mm - 2 * semi_minor) <= pixel
        start, end = (np.array(p) for p in piece.long_axis_ras)
        assert np.linalg.norm(end - start) == pytest.approx(piece.longest_diameter_mm, abs=1e-6)
    assert m.pieces[0].slice_index != m.pieces[1].slice_index  # each measured on its own slice
    assert (m.long_axis_ras, m.short_axis_ras, m.slice_index) == (a.long_axis_ras, a.short_axis_ras, a.slice_index)
    assert m.short_axis_mm == a.short_axis_mm
    assert m.volume_mm3 == pytest.approx(both.sum() * np.prod(spacing), rel=1e-9)
    ijk = np.array([*np.nonzero(both)[::-1]], float).mean(axis=1)
    assert np.allclose(m.centroid_ras, (image.ijk_to_ras() @ np.array([*ijk, 1.0]))[:3])
    assert m.slices == (int(np.flatnonzero(both.any(axis=(1, 2)))[0]), int(np.flatnonzero(both.any(axis=(1, 2)))[-1]))


def test_ellipsoids_touching_diagonally_are_one_lesion_spanned_by_calipers():
    spacing = (0.8, 1.2, 3.0)
    shape = (16, 60, 90)
    a = _ellipsoid(shape, spacing, (25, 25, 6), (15.0, 10.0, 9.0))
    small = _ellipsoid((9, 21, 31), spacing, (15, 10, 4), (8.0, 8.0, 7.0))
    # put b's corner with the smallest i+j+k diagonally next to a's corner with the largest:
    # every other pair of voxels differs by more than a corner step, so they touch only diagonally
    ka, ja, ia = max(zip(*np.nonzero(a)), key=lambda v: (sum(v), v))
    kb, jb, ib = min(zip(*np.nonzero(small)), key=lambda v: (sum(v), v))
    b = np.zeros(shape, np.uint8)
    dk, dj, di = ka + 1 - kb, ja + 1 - jb, ia + 1 - ib
    b[dk:dk + small.shape[0], dj:dj + small.shape[1], di:di + small.shape[2]] = small
    assert int(b.sum()) == int(small.sum()) and not (a & b).any()
    both = a | b
    faces_and_edges = ndimage.generate_binary_structure(3, 2)
    assert ndimage.label(both, structure=faces_and_edges)[1] == 2
    assert ndimage.label(both, structure=np.ones((3, 3, 3)))[1] == 1

    image = ImageVolume(both, spacing=spacing)
    m = measure_lesion(both, image)
    assert len(m.pieces) == 1 and m.pieces[0].voxels == int(both.sum())
    # one lesion: calipers across all of it on the slice with the largest extent (the unsplit rule)
    per_slice = {k: _brute_force_ld(both[k], *spacing[:2]) for k in np.flatnonzero(both.any(axis=(1, 2)))}
    assert m.longest_diameter_mm == pytest.approx(max(per_slice.values()), abs=1e-9)
    assert m.longest_diameter_mm == m.pieces[0].longest_diameter_mm
    alone = measure_lesion(a, image).longest_diameter_mm + measure_lesion(b, image).longest_diameter_mm
    assert abs(m.longest_diameter_mm - alone) > 1.0
    assert not any("fragments" in n for n in m.notes)


def test_a_speck_is_named_but_not_added_and_a_small_piece_is_added():
    spacing = (0.9, 0.7, 2.0)
    shape = (9, 50, 60)
    big = _ellipsoid(shape, spacing, (25, 25, 4), (14.0, 9.0, 6.0))
    image = ImageVolume(big, spacing=spacing)
    alone = measure_lesion(big, image)
    k = alone.slice_index
    # the speck lies on the LD slice, beyond the lesion along i: calipers across it would grow
    i_far = int(np.flatnonzero(big[k].any(axis=0))[-1]) + 4
    speck = big.copy()
    speck[k, 25, i_far] = 1
    m = measure_lesion(speck, image)
    assert m.longest_diameter_mm == alone.longest_diameter_mm and len(m.pieces) == 1
    assert (m.long_axis_ras, m.short_axis_mm) == (alone.long_axis_ras, alone.short_axis_mm)
    assert m.voxels == alone.voxels + 1
    assert m.volume_mm3 == pytest.approx((alone.voxels + 1) * np.prod(spacing))
    assert any("ignored 1 speck" in n and f"(i, j, k) = ({i_far}, 25, {k})" in n for n in m.notes)
    # three voxels are still a speck; four are a fragment whose own LD is added
    speck[k, 26, i_far] = speck[k, 26, i_far + 1] = 1
    assert measure_lesion(speck, image).longest_diameter_mm == alone.longest_diameter_mm
    speck[k, 25, i_far + 1] = 1                               # a 2 x 2 pixel square
    m = measure_lesion(speck, image)
    square = np.hypot(2 * spacing[0], 2 * spacing[1])
    assert len(m.pieces) == 2 and m.pieces[1].voxels == 4
    assert m.longest_diameter_mm == pytest.approx(alone.longest_diameter_mm + square, abs=1e-9)
    assert not any("speck" in n for n in m.notes)
    # the limit is a parameter: with none, a single voxel is a fragment too
    one = big.copy()
    one[k, 25, i_far] = 1
    m = measure_lesion(one, image, speck_max_voxels=0)
    assert m.longest_diameter_mm == pytest.approx(alone.longest_diameter_mm + np.hypot(*spacing[:2]), abs=1e-9)


def test_many_islands_are_flagged_and_many_specks_listed_briefly():
    """A noisy mask (islands around a lesion, as a threshold leaves them): the LD sum still adds
    every island bigger than a speck — RECIST's rule applied literally — but a note says that so many
    pieces are more likely islands and how to clean them; thousands of specks are counted, listed
    ten at a time."""
    spacing = (0.8, 0.8, 2.5)
    shape = (10, 64, 64)
    big = _ellipsoid(shape, spacing, (32, 32, 5), (12.0, 10.0, 7.0))
    image = ImageVolume(big, spacing=spacing)
    alone = measure_lesion(big, image)
    noisy = big.copy()
    for n in range(5):  # five 2 x 2 islands in a corner row, apart from each other and the lesion
        noisy[1, 2:4, 2 + 4 * n:4 + 4 * n] = 1
    m = measure_lesion(noisy, image)
    square = np.hypot(2 * spacing[0], 2 * spacing[1])
    assert len(m.pieces) == 6
    assert m.longest_diameter_mm == pytest.approx(alone.longest_diameter_mm + 5 * square, abs=1e-9)
    assert any("6 pieces is more than a lesion usually breaks into" in n and "Islands" in n for n in m.notes)
    assert not any("more than a lesion" in n for n in measure_lesion(big, image).notes)
    dust = big.copy()
    assert not big[8:].any()
    dust[9, ::3, ::3] = 1  # a grid of single voxels two slices past the lesion: none touches it
    specks = int(dust.sum() - big.sum())
    m = measure_lesion(dust, image)
    assert m.longest_diameter_mm == alone.longest_diameter_mm and len(m.pieces) == 1
    note = next(n for n in m.notes if "speck" in n)
    assert note.startswith(f"ignored {specks} specks") and note.endswith(f"and {specks - 10} more")


def test_single_pixel_and_rectangle_use_outer_boundary():
    one = slice_diameters(np.ones((1, 1), bool), 1.0, 2.0)
    assert one.longest_mm == pytest.approx(np.sqrt(5.0))
    # the chord perpendicular to a 1x2 rectangle's diagonal through its centre
    assert one.short_mm == pytest.approx(1.0 / (2.0 / np.sqrt(5.0)))
    bar = slice_diameters(np.ones((1, 10), bool), 0.5, 3.0)  # 5 mm x 3 mm
    assert bar.longest_mm == pytest.approx(np.hypot(5.0, 3.0))


def test_two_pieces_on_a_slice_joined_on_another_are_spanned_and_reported():
    array = np.zeros((3, 20, 30), np.uint8)
    array[1, 5:9, 2:6] = 1
    array[1, 10:14, 20:28] = 1
    array[2, 8, 5:21] = 1                                     # joined on the next slice
    array[2, 8:11, 20] = 1
    image = ImageVolume(array, spacing=(1.0, 1.0, 5.0))
    m = measure_lesion(array, image)
    assert len(m.pieces) == 1 and m.slice_index == 1
    assert m.components_on_slice == 2 and any("2 separate pieces on slice k=1" in n for n in m.notes)
    assert m.longest_diameter_mm == pytest.approx(np.hypot(28 - 2, 14 - 5))


def test_two_pieces_apart_in_3d_are_fragments_whose_lds_add():
    array = np.zeros((3, 20, 30), np.uint8)
    array[1, 5:9, 2:6] = 1                                    # 4 x 4 pixels
    array[1, 10:14, 20:28] = 1                                # 8 x 4 pixels: the larger piece
    image = ImageVolume(array, spacing=(1.0, 1.0, 5.0))
    m = measure_lesion(array, image)
    assert [p.voxels for p in m.pieces] == [32, 16]
    assert [p.longest_diameter_mm for p in m.pieces] == pytest.approx([np.hypot(8, 4), np.hypot(4, 4)])
    assert m.longest_diameter_mm == pytest.approx(np.hypot(8, 4) + np.hypot(4, 4))
    start, end = (np.array(p) for p in m.long_axis_ras)
    assert np.linalg.norm(end - start) == pytest.approx(np.hypot(8, 4))
    assert start[0] >= 19.5 and end[0] >= 19.5                # on the larger piece (i from 19.5 to 27.5)
    assert m.short_axis_mm == m.pieces[0].short_axis_mm and m.components_on_slice == 1
    assert any("2 separate pieces (RECIST fragments): LD = 8.9 + 5.7 = 14.6 mm" in n for n in m.notes)


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
