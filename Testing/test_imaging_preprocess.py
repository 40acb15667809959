"""Reorientation, isotropic resampling, CT windows and MR percentile normalisation."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from DTTLib.errors import GeometryError, InputError
from DTTLib.imaging import (
    ImageVolume,
    WindowPreset,
    apply_window,
    load_window_presets,
    normalize_mr_percentiles,
    reorient_to_ras,
    resample_isotropic,
)
from DTTLib.imaging.preprocess import WINDOW_PRESETS_FILE


def small_rotation(seed: int, max_degrees: float = 25.0) -> np.ndarray:
    """A random rotation of at most ``max_degrees`` (Rodrigues' formula)."""
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.radians(rng.uniform(-max_degrees, max_degrees))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def signed_permutations():
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            matrix = np.zeros((3, 3))
            for column, row in enumerate(perm):
                matrix[row, column] = signs[column]
            yield matrix


def voxel_positions(volume: ImageVolume) -> dict[float, np.ndarray]:
    """Voxel value → RAS position (values are unique in these tests)."""
    k, j, i = np.indices(volume.array.shape)
    ijk1 = np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)], axis=1)
    ras = ijk1 @ volume.ijk_to_ras().T
    return {float(v): p[:3] for v, p in zip(volume.array.ravel(), ras)}


# -- reorientation -------------------------------------------------------------------
@pytest.mark.parametrize("case", range(48))
def test_reorient_keeps_every_voxel_in_place(case):
    base = list(signed_permutations())[case]
    rotation = small_rotation(case) if case % 2 else np.eye(3)  # half of them oblique
    rng = np.random.default_rng(case)
    shape = tuple(int(s) for s in rng.integers(2, 6, size=3))
    volume = ImageVolume(array=np.arange(np.prod(shape), dtype=np.float32).reshape(shape),
                         spacing=tuple(rng.uniform(0.5, 3.0, size=3)),
                         origin=tuple(rng.uniform(-100, 100, size=3)),
                         direction=rotation @ base)
    original = volume.array.copy()
    result = reorient_to_ras(volume)
    assert np.array_equal(volume.array, original)  # input untouched
    before, after = voxel_positions(volume), voxel_positions(result)
    assert before.keys() == after.keys()
    for value, position in before.items():
        np.testing.assert_allclose(after[value], position, atol=1e-9)
    # Nearest to identity: each axis points mostly along +R, +A, +S respectively.
    diagonal = np.diag(result.direction)
    assert np.all(diagonal > 0)
    for n in range(3):
        assert abs(result.direction[n, n]) >= np.max(np.abs(result.direction[n])) - 1e-12
    np.testing.assert_allclose(result.direction, rotation, atol=1e-9)


def test_reorient_identity_is_a_no_op():
    volume = ImageVolume(array=np.arange(24, dtype=np.int16).reshape(2, 3, 4),
                         spacing=(1, 2, 3), origin=(5, 6, 7))
    result = reorient_to_ras(volume)
    assert np.array_equal(result.array, volume.array)
    assert result.array.dtype == np.int16
    np.testing.assert_allclose(result.ijk_to_ras(), volume.ijk_to_ras())


def test_reorient_lps_axial_flips_i_and_j():
    # A typical DICOM/ITK axial image: i runs to the patient's left, j posterior.
    array = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    volume = ImageVolume(array=array, spacing=(0.5, 0.75, 2.0), origin=(10.0, 20.0, -5.0),
                         direction=np.diag([-1.0, -1.0, 1.0]))
    result = reorient_to_ras(volume)
    assert np.array_equal(result.array, array[:, ::-1, ::-1])
    np.testing.assert_allclose(result.origin, [10.0 - 0.5 * 3, 20.0 - 0.75 * 2, -5.0])
    np.testing.assert_allclose(result.direction, np.eye(3))


# -- resampling ----------------------------------------------------------------------
def ramp_volume(direction: np.ndarray) -> tuple[ImageVolume, np.ndarray, float]:
    gradient, offset = np.array([0.7, -1.3, 2.1]), 5.0
    shape_kji = (4, 5, 6)
    spacing = np.array([1.0, 2.0, 3.0])
    origin = np.array([-20.0, 15.0, 7.5])
    k, j, i = np.indices(shape_kji)
    ras = (origin[:, None] + direction @ (spacing[:, None] * np.stack([i.ravel(), j.ravel(),
                                                                        k.ravel()])))
    values = (gradient @ ras + offset).reshape(shape_kji).astype(np.float32)
    volume = ImageVolume(array=values, spacing=tuple(spacing), origin=tuple(origin),
                         direction=direction)
    return volume, gradient, offset


@pytest.mark.parametrize("oblique", [False, True])
def test_linear_ramp_stays_a_ramp(oblique):
    direction = small_rotation(3) if oblique else np.eye(3)
    volume, gradient, offset = ramp_volume(direction)
    result = resample_isotropic(volume)
    assert result.spacing == (1.0, 1.0, 1.0)  # default: the finest input spacing
    assert result.array.dtype == np.float32
    np.testing.assert_allclose(result.direction, direction)
    # Analytic value at each output voxel whose position lies inside the input's
    # voxel-centre hull (outside it the edge value is repeated, not extrapolated).
    k, j, i = np.indices(result.array.shape)
    ijk1 = np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)])
    ras = (result.ijk_to_ras() @ ijk1)[:3]
    input_index = (volume.ras_to_ijk() @ np.vstack([ras, np.ones(ras.shape[1])]))[:3]
    inside = np.all((input_index > -1e-9) & (input_index < np.array(volume.shape_ijk)[:, None]
                                             - 1 + 1e-9), axis=0)
    assert inside.sum() > 0.5 * inside.size
    expected = gradient @ ras + offset
    np.testing.assert_allclose(result.array.ravel()[inside], expected[inside], atol=1e-3)


def field_of_view(volume: ImageVolume) -> tuple[np.ndarray, np.ndarray]:
    """Centre (RAS) and edge-to-edge size along each voxel axis (mm)."""
    size = np.array(volume.shape_ijk, dtype=float)
    centre = (volume.ijk_to_ras() @ np.append((size - 1) / 2, 1.0))[:3]
    return centre, size * np.array(volume.spacing)


def test_physical_extent_is_preserved():
    volume, _, _ = ramp_volume(small_rotation(5))
    result = resample_isotropic(volume, spacing_mm=0.5)
    centre_in, extent_in = field_of_view(volume)
    centre_out, extent_out = field_of_view(result)
    np.testing.assert_allclose(centre_out, centre_in, atol=1e-9)
    np.testing.assert_allclose(extent_out, extent_in, atol=1e-9)  # 6, 10, 12 mm: divisible
    assert result.shape_ijk == (12, 20, 24)


def test_extent_within_one_voxel_when_not_divisible():
    volume = ImageVolume(array=np.zeros((3, 3, 3), dtype=np.float32), spacing=(2.5, 2.5, 1.0))
    result = resample_isotropic(volume, spacing_mm=2.0)
    centre_in, extent_in = field_of_view(volume)
    centre_out, extent_out = field_of_view(result)
    np.testing.assert_allclose(centre_out, centre_in, atol=1e-9)
    assert np.all(np.abs(extent_out - extent_in) <= 2.0 / 2 + 1e-9)


def test_label_resampling_keeps_labels_and_dtype():
    labels = np.zeros((6, 8, 10), dtype=np.int16)
    labels[1:4, 2:6, 2:5] = 3
    labels[3:6, 4:8, 6:10] = 7
    labels[0:2, 0:2, 0:2] = 1200
    volume = ImageVolume(array=labels, spacing=(0.9, 1.1, 2.3), origin=(1, 2, 3),
                         direction=small_rotation(9))
    result = resample_isotropic(volume, spacing_mm=0.6, is_label=True)
    assert result.array.dtype == np.int16
    assert set(np.unique(result.array)) == set(np.unique(labels))
    # Nearest neighbour, checked independently: each output voxel's value is that of the
    # input voxel whose centre is closest (skip near-ties).
    k, j, i = np.indices(result.array.shape)
    ijk1 = np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)])
    continuous = (volume.ras_to_ijk() @ result.ijk_to_ras() @ ijk1)[:3]
    nearest = np.clip(np.round(continuous).astype(int), 0,
                      np.array(volume.shape_ijk)[:, None] - 1)
    clear = np.all(np.abs(np.abs(continuous - np.round(continuous)) - 0.5) > 1e-6, axis=0)
    expected = labels[nearest[2], nearest[1], nearest[0]]
    assert np.array_equal(result.array.ravel()[clear], expected[clear])
    # Volume of each label is preserved approximately (within 15 %).
    for value in (3, 7):
        before = np.count_nonzero(labels == value) * np.prod(volume.spacing)
        after = np.count_nonzero(result.array == value) * 0.6 ** 3
        assert after == pytest.approx(before, rel=0.15)


def test_integer_image_resamples_to_float32_without_rounding():
    array = np.array([[[0, 1]]], dtype=np.int16).repeat(2, axis=0).repeat(2, axis=1)
    volume = ImageVolume(array=array, spacing=(2.0, 1.0, 1.0))
    result = resample_isotropic(volume)
    assert result.array.dtype == np.float32
    # Along i: input centres at 0 and 2 mm, output centres at -0.5, 0.5, 1.5, 2.5 mm.
    np.testing.assert_allclose(result.array[0, 0], [0.0, 0.25, 0.75, 1.0])


@pytest.mark.parametrize("spacing", [0, -1.0, float("nan"), "fine"])
def test_invalid_resampling_spacing(spacing):
    volume = ImageVolume(array=np.zeros((2, 2, 2), dtype=np.float32))
    with pytest.raises(InputError, match="not a positive number"):
        resample_isotropic(volume, spacing_mm=spacing)


# -- CT windows ----------------------------------------------------------------------
def test_presets_file_holds_the_standard_windows():
    expected = {"soft_tissue": (40, 400), "lung": (-600, 1500), "bone": (400, 1800),
                "brain": (40, 80), "liver": (60, 160)}
    presets = load_window_presets()
    assert {name: (p.level, p.width) for name, p in presets.items()} == expected
    assert all(p.description for p in presets.values())
    raw = json.loads(WINDOW_PRESETS_FILE.read_text())
    assert {item["name"] for item in raw["presets"]} == set(expected)


def hand_window(values: np.ndarray, level: float, width: float) -> np.ndarray:
    out = np.empty(values.shape, dtype=float)
    for index, v in np.ndenumerate(values):
        low, high = level - width / 2, level + width / 2
        out[index] = 0.0 if v <= low else 1.0 if v >= high else (v - low) / (high - low)
    return out


@pytest.mark.parametrize("window", ["soft_tissue", "lung", "bone", "brain", "liver",
                                    (50.0, 350.0)])
def test_window_matches_hand_formula(window):
    rng = np.random.default_rng(2)
    hu = rng.integers(-1024, 2500, size=(3, 4, 5)).astype(np.int16)
    volume = ImageVolume(array=hu, spacing=(0.7, 0.7, 2.0))
    before = hu.copy()
    result = apply_window(volume, window)
    level, width = ({"soft_tissue": (40, 400), "lung": (-600, 1500), "bone": (400, 1800),
                     "brain": (40, 80), "liver": (60, 160)}[window]
                    if isinstance(window, str) else window)
    assert result.array.dtype == np.float32
    np.testing.assert_allclose(result.array, hand_window(hu, level, width), atol=1e-6)
    assert result.array.min() >= 0 and result.array.max() <= 1
    assert np.array_equal(volume.array, before) and volume.array.dtype == np.int16
    assert "window" not in volume.metadata
    assert result.metadata["window"]["level"] == level
    assert result.metadata["window"]["width"] == width
    assert result.same_grid(volume)


def test_window_errors():
    volume = ImageVolume(array=np.zeros((2, 2, 2), dtype=np.int16))
    with pytest.raises(InputError, match="unknown CT window preset 'lungs'"):
        apply_window(volume, "lungs")
    with pytest.raises(InputError, match="width"):
        apply_window(volume, (40, 0))
    with pytest.raises(InputError, match="width"):
        apply_window(volume, WindowPreset("bad", 0, -5))


# -- MR percentiles ------------------------------------------------------------------
def hand_percentile(values: np.ndarray, q: float) -> float:
    """Linear-interpolation percentile, written out: rank q/100·(n-1) in the sorted data."""
    ordered = sorted(float(v) for v in values.ravel())
    rank = q / 100 * (len(ordered) - 1)
    below = int(np.floor(rank))
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (rank - below) * (ordered[above] - ordered[below])


def hand_scale(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.minimum(1.0, np.maximum(0.0, (values - low) / (high - low)))


def mr_volume(seed: int = 4) -> ImageVolume:
    rng = np.random.default_rng(seed)
    array = rng.gamma(2.0, 150.0, size=(4, 6, 7)).astype(np.float32)
    return ImageVolume(array=array, spacing=(1, 1, 3))


def test_global_percentiles():
    volume = mr_volume()
    before = volume.array.copy()
    result = normalize_mr_percentiles(volume, low=1.0, high=99.0)
    low = hand_percentile(volume.array, 1.0)
    high = hand_percentile(volume.array, 99.0)
    assert result.array.dtype == np.float32
    np.testing.assert_allclose(result.array, hand_scale(before.astype(float), low, high),
                               atol=1e-6)
    assert result.metadata["normalization"]["low_value"] == pytest.approx(low)
    assert np.array_equal(volume.array, before)


def test_per_slice_percentiles():
    volume = mr_volume()
    volume.array[2] = 42.0  # an empty (constant) slice
    result = normalize_mr_percentiles(volume, per_slice=True)
    for k in range(volume.array.shape[0]):
        plane = volume.array[k].astype(float)
        low, high = hand_percentile(plane, 0.5), hand_percentile(plane, 99.5)
        expected = np.zeros_like(plane) if high == low else hand_scale(plane, low, high)
        np.testing.assert_allclose(result.array[k], expected, atol=1e-6)
    assert result.metadata["normalization"]["constant_slices"] == [2]


def test_per_slice_removes_slice_scale():
    base = mr_volume().array[0]
    stacked = np.stack([base * (k + 1) + 10 * k for k in range(3)]).astype(np.float32)
    result = normalize_mr_percentiles(ImageVolume(array=stacked), per_slice=True)
    np.testing.assert_allclose(result.array[1], result.array[0], atol=1e-5)
    np.testing.assert_allclose(result.array[2], result.array[0], atol=1e-5)


def test_mask_restricts_the_percentiles():
    volume = mr_volume()
    mask = np.zeros(volume.array.shape, dtype=np.uint8)
    mask[1:3, 2:5, 1:6] = 1
    result = normalize_mr_percentiles(volume, low=5, high=95, mask=mask)
    inside = volume.array[mask > 0].astype(float)
    low, high = hand_percentile(inside, 5), hand_percentile(inside, 95)
    np.testing.assert_allclose(result.array, hand_scale(volume.array.astype(float), low, high),
                               atol=1e-6)


def test_per_slice_mask_falls_back_to_whole_volume_window():
    volume = mr_volume()
    mask = np.zeros(volume.array.shape, dtype=bool)
    mask[1, 1:5, 1:6] = True  # only slice 1 has mask voxels
    result = normalize_mr_percentiles(volume, per_slice=True, mask=mask)
    inside = volume.array[mask].astype(float)
    global_low, global_high = hand_percentile(inside, 0.5), hand_percentile(inside, 99.5)
    data = volume.array.astype(float)
    for k in (0, 2, 3):
        np.testing.assert_allclose(result.array[k], hand_scale(data[k], global_low, global_high),
                                   atol=1e-6)
    np.testing.assert_allclose(result.array[1], hand_scale(data[1], global_low, global_high),
                               atol=1e-6)  # slice 1's mask is the whole mask


def test_nan_voxels_are_counted():
    volume = mr_volume()
    volume.array[0, 0, :3] = np.nan
    with pytest.raises(InputError, match="3 NaN voxel"):
        normalize_mr_percentiles(volume)


def test_constant_image_is_refused():
    volume = ImageVolume(array=np.full((3, 4, 5), 7.0, dtype=np.float32))
    with pytest.raises(InputError, match="constant"):
        normalize_mr_percentiles(volume)
    with pytest.raises(InputError, match="constant"):
        normalize_mr_percentiles(volume, per_slice=True)


def test_bad_percentiles_and_masks():
    volume = mr_volume()
    with pytest.raises(InputError, match="percentiles"):
        normalize_mr_percentiles(volume, low=90, high=10)
    with pytest.raises(GeometryError, match="mask shape"):
        normalize_mr_percentiles(volume, mask=np.ones((2, 2, 2)))
    with pytest.raises(InputError, match="mask is empty"):
        normalize_mr_percentiles(volume, mask=np.zeros(volume.array.shape))


def test_segmentation_window_follows_the_data_file(tmp_path):
    from DTTLib.imaging.preprocess import segmentation_window  # noqa: PLC0415

    assert segmentation_window("CT", "liver") == "slice" == segmentation_window("MR", "brain")
    rules = tmp_path / "w.json"
    rules.write_text(json.dumps({"presets": [], "segmentation": {
        "CT": {"default": "soft_tissue", "by_organ": {"lung": "lung"}}, "default": "slice"}}))
    assert segmentation_window("ct", "Lung", rules) == "lung"
    assert segmentation_window("CT", "liver", rules) == "soft_tissue"
    assert segmentation_window("", "liver", rules) == "slice"
    rules = tmp_path / "bad.json"  # the rules are read once per file
    rules.write_text(json.dumps({"presets": [], "segmentation": {"CT": {"default": "no_such_preset"}}}))
    with pytest.raises(InputError, match="unknown CT window preset 'no_such_preset'"):
        segmentation_window("CT", "liver", rules)


def test_edge_refinement_follows_the_data_file(tmp_path):
    from DTTLib.imaging.preprocess import segmentation_edge_refinement  # noqa: PLC0415

    # shipped: on for CT (HU against homogeneous parenchyma), off for MR and unknown modalities
    assert segmentation_edge_refinement("CT") and segmentation_edge_refinement("ct")
    assert not segmentation_edge_refinement("MR") and not segmentation_edge_refinement("")
    rules = tmp_path / "edges.json"
    rules.write_text(json.dumps({"presets": [], "segmentation": {
        "CT": {"default": "slice", "refine_edges": False}, "PT": {"default": "slice"}, "refine_edges": True}}))
    assert not segmentation_edge_refinement("CT", rules)
    assert segmentation_edge_refinement("PT", rules) and segmentation_edge_refinement("MR", rules)


def test_fixed_window_slice_matches_the_hand_formula():
    from DTTLib.segmentation.prepare import window_slice_fixed  # noqa: PLC0415

    hu = np.array([[-1000.0, -160.0, 40.0], [140.0, 240.0, np.nan]])
    gray = window_slice_fixed(hu, -160.0, 240.0)
    assert gray.shape == (2, 3, 3) and gray.dtype == np.uint8
    expected = np.rint(np.clip((np.nan_to_num(hu, nan=-160.0) + 160.0) / 400.0, 0, 1) * 255)
    np.testing.assert_array_equal(gray[..., 0], expected)
    assert (gray[..., 0] == gray[..., 2]).all()


def test_denoising_follows_the_data_file(tmp_path):
    from DTTLib.imaging.preprocess import segmentation_denoise_mm  # noqa: PLC0415
    from DTTLib.segmentation.propagate import settings_for_scan  # noqa: PLC0415

    # shipped: CT slices smoothed by 0.7 mm before the model, MR and unknown modalities untouched
    assert segmentation_denoise_mm("CT") == 0.7 and segmentation_denoise_mm("MR") == 0.0
    assert segmentation_denoise_mm("") == 0.0
    ct = settings_for_scan("CT", "liver")
    assert (ct.window, ct.refine_edges, ct.denoise_mm) == ("slice", True, 0.7)
    assert settings_for_scan("CT", refine_edges=False).refine_edges is False
    rules = tmp_path / "denoise.json"
    rules.write_text(json.dumps({"presets": [], "segmentation": {"CT": {"denoise_mm": 1.5}, "denoise_mm": 0.3}}))
    assert segmentation_denoise_mm("CT", rules) == 1.5 and segmentation_denoise_mm("MR", rules) == 0.3
    rules = tmp_path / "bad_denoise.json"
    rules.write_text(json.dumps({"presets": [], "segmentation": {"CT": {"denoise_mm": "lots"}}}))
    with pytest.raises(InputError, match="denoise_mm"):
        segmentation_denoise_mm("CT", rules)
