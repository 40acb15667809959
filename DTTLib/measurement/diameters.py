"""RECIST measurements of a 3-D lesion mask: longest diameter, short axis, volume, centroid.

Plane. RECIST measures on axial slices. Here "axial" is the slice plane of the image's k
axis (the plane spanned by the i and j axes), measured with the true spacing and direction.
For an oblique volume that plane is tilted; the record says which anatomical plane it is
closest to and by how many degrees, and adds a note when it is not close to axial (then the
numbers are in-plane diameters of that plane, not axial ones — reformat to axial first if
RECIST requires it).

Boundary. Each voxel is drawn as the closed rectangle it covers in its slice (centre ± half a
spacing), and diameters are measured between the outer edges of those rectangles, not
between voxel centres: a caliper on the screen spans the visible extent of the lesion, so a
one-voxel lesion is one voxel wide, not zero. Against a smooth shape sampled at voxel
centres this is unbiased to within about one pixel diagonal; centre-to-centre would
under-measure by about one pixel on average.

Definitions, on one slice (all in mm, in the slice plane):

* Longest diameter (LD): the maximum Feret diameter of the lesion's pixel rectangles — the
  largest distance between two of their corners (found on the convex hull). The LD slice is
  the slice with the largest LD ("largest extent"); ties go to the larger area, then to the
  lower k.
* Short axis (SA): RECIST's longest diameter perpendicular to the LD. Every line
  perpendicular to the LD crosses the lesion; its chord is the segment from the first to the
  last point of the line inside the lesion. SA is the longest such chord. This is exact (the
  maximum is reached at a line through a rectangle corner, and all of those are tried).
  For a convex lesion it is the longest perpendicular chord; for a notched one the chord
  spans the notch, as a caliper drawn edge to edge would.

Pieces (RECIST 1.1 §4.3.2, "lesions that split or coalesce on treatment"; Eisenhauer et al.
2009). A mask holds one lesion, but the lesion may be in several pieces. The mask is split
into 3-D pieces with 26-connectivity (voxels touching by a face, an edge or a corner are
joined):

* One piece — including a lesion that looks split on one slice but is joined on another, and
  pieces that have coalesced (touch) — is measured as above: LD and SA span all of its
  pixels on its LD slice, like calipers across a coalesced lesion. ``components_on_slice``
  says how many 8-connected parts that slice shows, with a note when there are several.
* Several pieces are fragments: RECIST adds the longest diameters of the fragmented portions.
  Each piece is measured on its own as above (its own LD slice, LD, SA and endpoints) and
  listed largest first in ``pieces`` (``LesionPiece``); ``longest_diameter_mm`` is the SUM of
  their LDs — the number that goes into the sum of diameters — and a note gives the addends.
  ``long_axis_ras``, ``short_axis_ras``, ``slice_index`` and ``components_on_slice`` are the
  largest piece's (most voxels), so one line on one slice still shows a real diameter;
  ``volume_mm3``, ``centroid_ras``, ``voxels`` and ``slices`` are the whole mask's.
* Short axis of fragments: RECIST defines a sum only for LDs; for the SA of a split lesion
  (what a lymph node is measured by) it gives no rule. ``short_axis_mm`` is the largest
  piece's SA: it is perpendicular to the LD line that is drawn, on the same slice, so the SA
  line is a real caliper pair with the LD line; adding SAs of pieces would describe no
  caliper and could turn two normal node pieces into a pathological node (SA ≥ 10 mm)
  by arithmetic. Every piece's SA is in ``pieces`` and in the note, so a reader who judges
  another piece to be the node takes its SA from there.
* Specks: a piece (other than the largest) of at most ``SPECK_MAX_VOXELS`` = 3 voxels —
  fewer than a disc two pixels across holds (π ≈ 3.14 pixels) — is not a fragment and is left
  out of the LD sum (it stays in the volume and centroid). Such a piece has no shape at the
  image's resolution: its "diameter" is the pixel grid itself, and it is what a stray paint
  click or an eraser's leftover corner leaves. The limit is absolute on purpose: a relative
  one (say 1 % of the lesion's voxels) grows with the lesion — 1 % of the volume is a piece
  about a fifth of the lesion's width (0.01^(1/3) ≈ 0.22), so it would drop an 11 mm fragment
  of a 50 mm lesion, a fragment RECIST itself calls measurable. Every ignored speck is named
  (voxels and i, j, k) in a note, never dropped silently; anything larger is added, and its
  LD is shown in the note so an implausible small addend is visible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull

from DTTLib.errors import InputError
from DTTLib.imaging.volume import ImageVolume
from DTTLib.measurement.basic import _checked_mask, centroid_ras, mask_volume_mm3

Point3 = tuple[float, float, float]

#: a k axis within this many degrees of the S axis counts as axial
AXIAL_TOLERANCE_DEG = 10.0
#: a piece (other than the largest) with at most this many voxels is a speck, not a fragment:
#: fewer voxels than a disc two pixels across (π ≈ 3.14) — see the module docstring
SPECK_MAX_VOXELS = 3
#: this many pieces or more get a note: more likely islands of a noisy segmentation than fragments
MANY_PIECES = 5
#: 26-connectivity: voxels touching by a face, an edge or a corner belong to one piece
_CONNECT_3D = np.ones((3, 3, 3), bool)
_PLANES = ("sagittal", "coronal", "axial")  # slice plane whose normal is R, A, S


@dataclass(frozen=True)
class SliceDiameters:
    """LD and SA on one slice, in slice-plane millimetres (x along i, y along j)."""

    longest_mm: float
    short_mm: float
    long_xy: tuple[tuple[float, float], tuple[float, float]]
    short_xy: tuple[tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class LesionPiece:
    """One 3-D piece (26-connected) of a lesion mask, measured on its own LD slice."""

    voxels: int
    volume_mm3: float
    longest_diameter_mm: float
    short_axis_mm: float
    slice_index: int                 # k of this piece's LD slice
    long_axis_ras: tuple[Point3, Point3]
    short_axis_ras: tuple[Point3, Point3]
    centroid_ras: Point3


@dataclass(frozen=True)
class LesionMeasurement:
    """One lesion's RECIST measurements; endpoints in RAS mm, ready for a line markup."""

    longest_diameter_mm: float
    short_axis_mm: float
    volume_mm3: float
    centroid_ras: Point3
    long_axis_ras: tuple[Point3, Point3]
    short_axis_ras: tuple[Point3, Point3]
    slice_index: int                 # k of the slice the diameters were measured on
    slices: tuple[int, int]          # first and last k holding lesion voxels
    voxels: int
    plane: str                       # anatomical plane closest to the k-slice plane
    plane_tilt_deg: float            # angle between the k axis and that plane's normal
    components_on_slice: int
    notes: tuple[str, ...] = field(default=())
    #: the 3-D pieces whose LDs make ``longest_diameter_mm``, largest first (one for an
    #: unsplit lesion; specks are not pieces, they are named in ``notes``)
    pieces: tuple[LesionPiece, ...] = field(default=())


def measure_lesion(mask: np.ndarray, image: ImageVolume, *,
                   speck_max_voxels: int = SPECK_MAX_VOXELS) -> LesionMeasurement:
    """RECIST LD, SA, volume and centroid of ``mask`` (indexed (k, j, i) on ``image``'s grid).

    A mask in several 3-D pieces is a fragmented lesion: its LD is the sum of the pieces' LDs
    (pieces of at most ``speck_max_voxels`` voxels besides the largest are specks, named in a
    note and not added); see the module docstring."""
    inside = _checked_mask(mask, image)
    if not inside.any():
        raise InputError("cannot measure an empty lesion mask",
                         "segment the lesion first (the mask has no voxels)")
    labels, count = ndimage.label(inside, structure=_CONNECT_3D)
    if count == 1:
        kept, specks = [inside], []
    else:  # each piece is cut from its bounding box: a mask with many islands stays fast
        sizes = np.bincount(labels.ravel())[1:]
        boxes = ndimage.find_objects(labels)
        order = sorted(range(count), key=lambda n: (-sizes[n], n))  # largest first, then label order
        kept = [_piece_mask(labels, boxes[n], n + 1) for n in order[:1]]
        kept += [_piece_mask(labels, boxes[n], n + 1) for n in order[1:] if sizes[n] > speck_max_voxels]
        specks = [(int(sizes[n]), _first_voxel(labels, boxes[n], n + 1))
                  for n in order[1:] if sizes[n] <= speck_max_voxels]
    measured = [_measure_piece(piece, image) for piece in kept]
    main, components = measured[0]
    k = main.slice_index
    per_slice = np.flatnonzero(inside.any(axis=(1, 2)))
    plane_name, tilt = slice_plane(image)
    notes = []
    if plane_name != "axial" or tilt > AXIAL_TOLERANCE_DEG:
        notes.append(f"the k-slice plane is {plane_name} (tilted {tilt:.1f}° from it), not axial: "
                     "diameters were measured in that plane; reformat to axial for strict RECIST")
    if components > 1:
        notes.append(("the largest piece has " if len(kept) > 1 else "")
                     + f"{components} separate pieces on slice k={k}, joined in 3-D on other slices: "
                     "LD and SA span all of them")
    pieces = tuple(piece for piece, _ in measured)
    longest = main.longest_diameter_mm
    if len(pieces) > 1:
        longest = float(sum(p.longest_diameter_mm for p in pieces))
        notes.append(f"{len(pieces)} separate pieces (RECIST fragments): LD = "
                     + " + ".join(f"{p.longest_diameter_mm:.1f}" for p in pieces)
                     + f" = {longest:.1f} mm, each piece's LD on its own slice ("
                     + ", ".join(f"k={p.slice_index}" for p in pieces)
                     + f"); SA {main.short_axis_mm:.1f} mm is the largest piece's (RECIST adds no SAs; "
                     "each piece's SA: " + ", ".join(f"{p.short_axis_mm:.1f}" for p in pieces) + " mm)")
    if len(pieces) >= MANY_PIECES:
        notes.append(f"{len(pieces)} pieces is more than a lesion usually breaks into: islands of a noisy "
                     "segmentation (e.g. a threshold) add to the LD sum as if they were fragments — remove small "
                     "islands (Segment Editor → Islands) before trusting the sum")
    if specks:
        notes.append(_speck_note(specks, speck_max_voxels))
    return LesionMeasurement(
        longest_diameter_mm=longest,
        short_axis_mm=main.short_axis_mm,
        volume_mm3=mask_volume_mm3(inside, image),
        centroid_ras=centroid_ras(inside, image),
        long_axis_ras=main.long_axis_ras,
        short_axis_ras=main.short_axis_ras,
        slice_index=k,
        slices=(int(per_slice[0]), int(per_slice[-1])),
        voxels=int(np.count_nonzero(inside)),
        plane=plane_name,
        plane_tilt_deg=tilt,
        components_on_slice=components,
        notes=tuple(notes),
        pieces=pieces,
    )


def _measure_piece(inside: np.ndarray, image: ImageVolume) -> tuple[LesionPiece, int]:
    """One piece on its LD slice (largest LD; ties: larger area, then lower k), and how many
    8-connected parts that slice shows."""
    si, sj, _ = image.spacing
    per_slice = np.flatnonzero(inside.any(axis=(1, 2)))
    best_ld, best_area, k = -1.0, -1, -1
    tolerance = 1e-6 * max(si, sj)
    for index in per_slice:
        longest = _feret(inside[index], si, sj)[0]
        area = int(np.count_nonzero(inside[index]))
        if longest > best_ld + tolerance or (abs(longest - best_ld) <= tolerance and area > best_area):
            best_ld, best_area, k = longest, area, int(index)
    diameters = slice_diameters(inside[k], si, sj)
    components = int(ndimage.label(inside[k], structure=np.ones((3, 3)))[1])
    piece = LesionPiece(
        voxels=int(np.count_nonzero(inside)),
        volume_mm3=mask_volume_mm3(inside, image),
        longest_diameter_mm=diameters.longest_mm,
        short_axis_mm=diameters.short_mm,
        slice_index=k,
        long_axis_ras=tuple(_slice_xy_to_ras(image, k, xy) for xy in diameters.long_xy),  # type: ignore[arg-type]
        short_axis_ras=tuple(_slice_xy_to_ras(image, k, xy) for xy in diameters.short_xy),  # type: ignore[arg-type]
        centroid_ras=centroid_ras(inside, image),
    )
    return piece, components


def _piece_mask(labels: np.ndarray, box: tuple[slice, ...], label: int) -> np.ndarray:
    """Piece ``label`` as a full-size mask, filled only inside its bounding box."""
    piece = np.zeros(labels.shape, bool)
    piece[box] = labels[box] == label
    return piece


def _first_voxel(labels: np.ndarray, box: tuple[slice, ...], label: int) -> tuple[int, int, int]:
    """(k, j, i) of the piece's first voxel in array order."""
    k, j, i = (int(c[0]) for c in np.nonzero(labels[box] == label))
    return k + box[0].start, j + box[1].start, i + box[2].start


def _speck_note(specks: list[tuple[int, tuple[int, int, int]]], speck_max_voxels: int, listed: int = 10) -> str:
    """Where the ignored specks are: voxels and (i, j, k) of each one's first voxel."""
    where = []
    for n, (k, j, i) in specks[:listed]:
        where.append(f"{n} voxel{'s' if n > 1 else ''} at (i, j, k) = ({i}, {j}, {k})")
    more = f"; and {len(specks) - listed} more" if len(specks) > listed else ""
    return (f"ignored {len(specks)} speck{'s' if len(specks) > 1 else ''} of ≤ {speck_max_voxels} voxels, "
            "not RECIST fragments (not in the LD sum, kept in the volume): " + "; ".join(where) + more)


def slice_plane(image: ImageVolume) -> tuple[str, float]:
    """The anatomical plane closest to the k-slice plane, and the tilt from it in degrees."""
    normal = np.abs(image.direction[:, 2])
    axis = int(np.argmax(normal))
    tilt = float(np.degrees(np.arccos(np.clip(normal[axis], -1.0, 1.0))))
    return _PLANES[axis], tilt


def slice_diameters(plane: np.ndarray, spacing_i: float, spacing_j: float) -> SliceDiameters:
    """LD and SA of a 2-D mask indexed (j, i) with the given pixel spacings (mm)."""
    longest, p, q = _feret(plane, spacing_i, spacing_j)
    u = (np.asarray(q) - np.asarray(p)) / longest
    short, a, b = _perpendicular_chord(plane, spacing_i, spacing_j, u)
    return SliceDiameters(longest, short, (p, q), (a, b))


# -- geometry -------------------------------------------------------------------------------
def _boundary_pixels(plane: np.ndarray) -> np.ndarray:
    """(n, 2) array of (i, j) of pixels with a 4-neighbour outside: they carry every extreme."""
    plane = np.asarray(plane, dtype=bool)
    interior = ndimage.binary_erosion(plane, structure=ndimage.generate_binary_structure(2, 1),
                                      border_value=0)
    j, i = np.nonzero(plane & ~interior)
    return np.stack([i, j], axis=1)


def _corners_mm(pixels: np.ndarray, si: float, sj: float) -> np.ndarray:
    offsets = np.array([[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5]])
    corners = (pixels[:, None, :] + offsets[None]).reshape(-1, 2)
    return np.unique(corners, axis=0) * np.array([si, sj])


def _feret(plane: np.ndarray, si: float, sj: float) -> tuple[float, tuple[float, float], tuple[float, float]]:
    """Max Feret diameter (mm) and its two end corners (slice mm) of the pixel rectangles."""
    corners = _corners_mm(_boundary_pixels(plane), si, sj)
    hull = corners[ConvexHull(corners).vertices]  # corners of rectangles are never collinear
    distances = np.linalg.norm(hull[:, None, :] - hull[None, :, :], axis=-1)
    a, b = np.unravel_index(int(np.argmax(distances)), distances.shape)
    p, q = hull[a], hull[b]
    if (p[0], p[1]) > (q[0], q[1]):  # a stable order: the end with the smaller x first
        p, q = q, p
    return float(distances[a, b]), (float(p[0]), float(p[1])), (float(q[0]), float(q[1]))


def _perpendicular_chord(plane: np.ndarray, si: float, sj: float, u: np.ndarray,
                         chunk: int = 512) -> tuple[float, tuple[float, float], tuple[float, float]]:
    """Longest first-to-last chord of the lesion along lines perpendicular to ``u``.

    A line is {t·u + s·v}; each pixel rectangle cuts it in an s-interval (slab method). The
    chord at offset t runs from the smallest to the largest s over the rectangles it cuts.
    Its length is piecewise linear in t with local maxima only where t passes a rectangle
    corner, so trying every corner's t is exact.
    """
    pixels = _boundary_pixels(plane).astype(float)
    centres = pixels * np.array([si, sj])
    half = np.array([si, sj]) / 2.0
    v = np.array([-u[1], u[0]])
    ts = np.unique(np.round(_corners_mm(pixels.astype(int), si, sj) @ u, 9))
    eps = 1e-9 * max(si, sj)
    best = (-1.0, 0.0, 0.0, 0.0)  # length, t, s_lo, s_hi
    for start in range(0, len(ts), chunk):
        t = ts[start:start + chunk, None]
        lo = np.full((t.shape[0], len(centres)), -np.inf)
        hi = np.full_like(lo, np.inf)
        for axis in (0, 1):
            base = t * u[axis]                              # (T, 1) line position at s = 0
            low_edge = centres[None, :, axis] - half[axis] - base
            high_edge = centres[None, :, axis] + half[axis] - base
            if abs(v[axis]) > 1e-12:
                s1, s2 = low_edge / v[axis], high_edge / v[axis]
                lo = np.maximum(lo, np.minimum(s1, s2))
                hi = np.minimum(hi, np.maximum(s1, s2))
            else:  # the line runs along this axis: it hits the rectangle only within its band
                outside = (low_edge > eps) | (high_edge < -eps)
                lo = np.where(outside, np.inf, lo)
                hi = np.where(outside, -np.inf, hi)
        hit = lo <= hi + eps
        s_lo = np.where(hit, lo, np.inf).min(axis=1)
        s_hi = np.where(hit, hi, -np.inf).max(axis=1)
        length = np.where(np.isfinite(s_lo) & np.isfinite(s_hi), s_hi - s_lo, -1.0)
        index = int(np.argmax(length))
        if length[index] > best[0]:
            best = (float(length[index]), float(t[index, 0]), float(s_lo[index]), float(s_hi[index]))
    length, t, s_lo, s_hi = best
    a, b = t * u + s_lo * v, t * u + s_hi * v
    return max(length, 0.0), (float(a[0]), float(a[1])), (float(b[0]), float(b[1]))


def _slice_xy_to_ras(image: ImageVolume, k: int, xy: tuple[float, float]) -> Point3:
    si, sj, _ = image.spacing
    ijk = np.array([xy[0] / si, xy[1] / sj, float(k), 1.0])
    return tuple(float(c) for c in (image.ijk_to_ras() @ ijk)[:3])  # type: ignore[return-value]
