"""Image file I/O: exact round trips, the RAS convention, and clear errors for bad files."""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import numpy as np
from data_paths import shared_data_dir
import pytest
import SimpleITK as sitk

from DTTLib.errors import DTTError, GeometryError, InputError
from DTTLib.imaging import ImageVolume, read_image, write_image

BRAIN1 = shared_data_dir() / "imaging" / "brain1_image.nrrd"


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """Rotation matrix from angles in degrees (x, then y, then z), written out by hand."""
    a, b, c = np.radians([ax, ay, az])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def make_volume(dtype: type, origin=(-101.25, 33.375, -57.875)) -> ImageVolume:
    rng = np.random.default_rng(7)
    if np.issubdtype(dtype, np.integer):
        array = rng.integers(-1024, 3071, size=(4, 5, 6)).astype(dtype)
    else:
        array = rng.normal(100.0, 50.0, size=(4, 5, 6)).astype(dtype)
    return ImageVolume(array=array, spacing=(0.8, 1.3, 2.7), origin=origin,
                       direction=rotation(20, -35, 50), name="synthetic")


def parse_nrrd_header(path: Path) -> dict[str, str]:
    """Minimal independent NRRD header parser (fields up to the blank line)."""
    raw = path.read_bytes()
    header = raw[: raw.index(b"\n\n")].decode("ascii")
    fields = {}
    for line in header.splitlines()[1:]:
        if line.startswith("#") or ":" not in line:
            continue
        key, value = line.split(":", 1)
        fields[key.strip()] = value.strip().lstrip("=").strip()
    return fields


def vectors(text: str) -> list[np.ndarray]:
    return [np.array([float(x) for x in group.split(",")])
            for group in re.findall(r"\(([^)]*)\)", text)]


def nrrd_geometry_in_ras(fields: dict[str, str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(spacing, direction with axis unit vectors as columns, origin) in RAS."""
    flip = {"left-posterior-superior": np.diag([-1.0, -1.0, 1.0]),
            "right-anterior-superior": np.eye(3)}[fields["space"]]
    columns = np.stack(vectors(fields["space directions"]), axis=1)
    spacing = np.linalg.norm(columns, axis=0)
    direction = flip @ (columns / spacing)
    origin = flip @ vectors(fields["space origin"])[0]
    return spacing, direction, origin


def write_nrrd(path: Path, header_lines: list[str], data: bytes) -> Path:
    path.write_bytes(("\n".join(["NRRD0004", *header_lines]) + "\n\n").encode() + data)
    return path


# -- round trips ---------------------------------------------------------------------
@pytest.mark.parametrize("extension", [".nrrd", ".nii.gz", ".nii", ".mha"])
@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_round_trip_is_exact(tmp_path, extension, dtype):
    volume = make_volume(dtype)
    path = write_image(volume, tmp_path / f"image{extension}")
    back = read_image(path)
    assert back.array.dtype == np.dtype(dtype)
    assert np.array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.spacing, volume.spacing, atol=1e-6)
    np.testing.assert_allclose(back.origin, volume.origin, atol=1e-6)
    np.testing.assert_allclose(back.direction, volume.direction, atol=1e-6)
    np.testing.assert_allclose(back.ijk_to_ras(), volume.ijk_to_ras(), atol=1e-6)


def test_nifti_origin_limited_only_by_float32_storage(tmp_path):
    # NIfTI stores its affine as float32: an origin such as 33.4 mm comes back to ~2e-6 mm.
    volume = make_volume(np.int16, origin=(-101.3, 33.4, -57.9))
    back = read_image(write_image(volume, tmp_path / "image.nii.gz"))
    expected = np.asarray(volume.origin, dtype=np.float32).astype(float)
    np.testing.assert_allclose(back.origin, expected, atol=1e-9 + 1e-6)
    np.testing.assert_allclose(back.origin, volume.origin, atol=1e-5)
    # NRRD keeps full double precision.
    exact = read_image(write_image(volume, tmp_path / "image.nrrd"))
    np.testing.assert_allclose(exact.origin, volume.origin, atol=1e-12)


def test_written_nrrd_header_is_lps_and_compressed(tmp_path):
    volume = make_volume(np.int16)
    path = write_image(volume, tmp_path / "image.nrrd")
    fields = parse_nrrd_header(path)
    assert fields["encoding"] == "gzip"
    assert fields["space"] == "left-posterior-superior"
    assert fields["type"] in ("short", "int16", "signed short")
    assert [int(s) for s in fields["sizes"].split()] == [6, 5, 4]  # i, j, k
    columns = np.stack(vectors(fields["space directions"]), axis=1)
    lps = np.diag([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(columns, lps @ volume.direction @ np.diag(volume.spacing),
                               atol=1e-9)
    np.testing.assert_allclose(vectors(fields["space origin"])[0], lps @ volume.origin,
                               atol=1e-9)


def test_real_nrrd_geometry_matches_hand_parsed_header(shared_data):
    assert BRAIN1.exists(), f"shared data missing: {BRAIN1}"
    fields = parse_nrrd_header(BRAIN1)
    spacing, direction, origin = nrrd_geometry_in_ras(fields)
    volume = read_image(BRAIN1)
    sizes = [int(s) for s in fields["sizes"].split()]
    assert volume.array.shape == tuple(reversed(sizes))
    assert volume.array.dtype == np.int16  # "type: short" stays int16
    np.testing.assert_allclose(volume.spacing, spacing, atol=1e-9)
    np.testing.assert_allclose(volume.direction, direction, atol=1e-9)
    np.testing.assert_allclose(volume.origin, origin, atol=1e-9)
    # The last voxel's RAS position from the header, by hand.
    columns = np.stack(vectors(fields["space directions"]), axis=1)
    last_lps = vectors(fields["space origin"])[0] + columns @ (np.array(sizes) - 1)
    last_ras = last_lps * np.array([-1, -1, 1])
    ras = volume.ijk_to_ras() @ np.append(np.array(sizes) - 1, 1.0)
    np.testing.assert_allclose(ras[:3], last_ras, atol=1e-9)
    # Voxel values: decompress the gzip payload ourselves.
    raw = BRAIN1.read_bytes()
    payload = gzip.decompress(raw[raw.index(b"\n\n") + 2:])
    values = np.frombuffer(payload, dtype="<i2").reshape(tuple(reversed(sizes)))
    assert np.array_equal(values, volume.array)


def test_ras_space_nrrd_is_read_without_flip(tmp_path):
    path = write_nrrd(tmp_path / "ras.nrrd", [
        "type: float", "dimension: 3", "space: right-anterior-superior", "sizes: 2 3 4",
        "space directions: (0,2,0) (-1.5,0,0) (0,0,3)", "kinds: domain domain domain",
        "endian: little", "encoding: raw", "space origin: (10,-20,30)"],
        np.arange(24, dtype="<f4").tobytes())
    volume = read_image(path)
    spacing, direction, origin = nrrd_geometry_in_ras(parse_nrrd_header(path))
    np.testing.assert_allclose(volume.origin, [10, -20, 30], atol=1e-9)
    np.testing.assert_allclose(volume.origin, origin, atol=1e-9)
    np.testing.assert_allclose(volume.direction, direction, atol=1e-9)
    np.testing.assert_allclose(volume.spacing, spacing, atol=1e-9)
    assert volume.array[3, 2, 1] == 3 * 6 + 2 * 2 + 1


def test_single_time_point_4d_is_read_as_3d(tmp_path):
    path = write_nrrd(tmp_path / "t1.nrrd", [
        "type: short", "dimension: 4", "sizes: 2 3 4 1", "endian: little", "encoding: raw"],
        np.arange(24, dtype="<i2").tobytes())
    volume = read_image(path)
    assert volume.array.shape == (4, 3, 2)
    assert volume.array[2, 1, 0] == 2 * 6 + 1 * 2


def test_write_does_not_modify_input(tmp_path):
    volume = make_volume(np.float32)
    before = volume.array.copy(), volume.origin, volume.direction.copy()
    write_image(volume, tmp_path / "image.nii.gz")
    assert np.array_equal(volume.array, before[0])
    assert volume.origin == before[1] and np.array_equal(volume.direction, before[2])


# -- errors --------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist") as info:
        read_image(tmp_path / "nope.nrrd")
    assert info.value.fix


def test_unsupported_extension(tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG....")
    with pytest.raises(InputError, match="unsupported file type '.png'"):
        read_image(path)
    with pytest.raises(InputError, match="unsupported file type"):
        write_image(make_volume(np.int16), tmp_path / "image.tif")


def test_single_dicom_file_points_to_folder(tmp_path):
    path = tmp_path / "slice.dcm"
    path.write_bytes(b"\0" * 200)
    with pytest.raises(InputError, match="single DICOM file") as info:
        read_image(path)
    assert str(tmp_path) in info.value.fix


def test_empty_file(tmp_path):
    path = tmp_path / "empty.nrrd"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_image(path)


def test_garbage_header(tmp_path):
    path = tmp_path / "bad.nrrd"
    path.write_bytes(b"NRRD0004\ntype: blah\ndimens")
    with pytest.raises(InputError, match="cannot read the header") as info:
        read_image(path)
    assert "Traceback" not in str(info.value) and "sitk::ERROR" not in str(info.value)
    assert "corrupt" in info.value.fix


def test_random_bytes_nifti(tmp_path):
    path = tmp_path / "bad.nii.gz"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 300, dtype=np.uint8).tobytes())
    with pytest.raises(InputError, match="cannot read the header"):
        read_image(path)


def test_truncated_data(tmp_path):
    path = write_nrrd(tmp_path / "short.nrrd", [
        "type: short", "dimension: 3", "sizes: 2 3 4", "endian: little", "encoding: raw"],
        np.arange(10, dtype="<i2").tobytes())
    with pytest.raises(InputError, match="cannot read the voxel data") as info:
        read_image(path)
    assert "truncated" in info.value.fix


def test_truncated_compressed_file(tmp_path):
    good = write_image(make_volume(np.float32), tmp_path / "good.nrrd")
    bad = tmp_path / "cut.nrrd"
    bad.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(InputError, match="voxel data"):
        read_image(bad)


def test_four_dimensional_nrrd(tmp_path):
    path = write_nrrd(tmp_path / "4d.nrrd", [
        "type: short", "dimension: 4", "sizes: 2 3 2 2", "endian: little", "encoding: raw"],
        np.arange(24, dtype="<i2").tobytes())
    with pytest.raises(GeometryError, match="4 dimensions") as info:
        read_image(path)
    assert "split" in info.value.fix


def test_two_dimensional_nrrd(tmp_path):
    path = write_nrrd(tmp_path / "2d.nrrd", [
        "type: short", "dimension: 2", "sizes: 4 6", "endian: little", "encoding: raw"],
        np.arange(24, dtype="<i2").tobytes())
    with pytest.raises(GeometryError, match="2 dimensions"):
        read_image(path)


def test_zero_spacing_in_header(tmp_path):
    path = write_nrrd(tmp_path / "zero.nrrd", [
        "type: short", "dimension: 3", "space: left-posterior-superior", "sizes: 2 3 4",
        "space directions: (0,0,0) (0,1,0) (0,0,1)", "kinds: domain domain domain",
        "endian: little", "encoding: raw",
        "space origin: (0,0,0)"], np.arange(24, dtype="<i2").tobytes())
    with pytest.raises(GeometryError, match="spacing") as info:
        read_image(path)
    assert "positive" in info.value.fix


def test_negative_spacing_is_refused_not_silently_flipped(tmp_path):
    # ITK itself would return spacing +1 here; we must not accept the file silently.
    path = write_nrrd(tmp_path / "neg.nrrd", [
        "type: short", "dimension: 3", "spacings: -1 1 1", "sizes: 2 3 4",
        "endian: little", "encoding: raw"], np.arange(24, dtype="<i2").tobytes())
    with pytest.raises(GeometryError, match="negative"):
        read_image(path)


def test_zero_spacings_field(tmp_path):
    path = write_nrrd(tmp_path / "zero2.nrrd", [
        "type: short", "dimension: 3", "spacings: 0 1 1", "sizes: 2 3 4",
        "endian: little", "encoding: raw"], np.arange(24, dtype="<i2").tobytes())
    with pytest.raises(DTTError, match="spacing"):
        read_image(path)


def test_vector_pixels(tmp_path):
    path = write_nrrd(tmp_path / "rgb.nrrd", [
        "type: short", "dimension: 4", "sizes: 3 2 2 2", "kinds: vector domain domain domain",
        "endian: little", "encoding: raw"], np.arange(24, dtype="<i2").tobytes())
    with pytest.raises(InputError, match="3 values per voxel"):
        read_image(path)


def test_metaimage_with_missing_data_file(tmp_path):
    path = tmp_path / "detached.mhd"
    path.write_text("\n".join(["ObjectType = Image", "NDims = 3", "DimSize = 2 3 4",
                               "ElementSpacing = 1 1 1", "ElementType = MET_SHORT",
                               "ElementDataFile = missing.raw"]) + "\n")
    with pytest.raises(InputError, match="cannot read the voxel data") as info:
        read_image(path)
    assert "detached data file" in info.value.fix


def test_write_into_missing_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        write_image(make_volume(np.int16), tmp_path / "no" / "image.nrrd")


def test_int64_volume_cannot_be_written(tmp_path):
    volume = make_volume(np.int16)
    volume.array = volume.array.astype(np.int64)
    with pytest.raises(InputError, match="64-bit"):
        write_image(volume, tmp_path / "x.nrrd")


def test_copy_of_real_file_reads_identically(tmp_path, shared_data):
    assert BRAIN1.exists(), f"shared data missing: {BRAIN1}"
    copy = tmp_path / "brain1.nrrd"
    shutil.copy(BRAIN1, copy)
    original, copied = read_image(BRAIN1), read_image(copy)
    assert np.array_equal(original.array, copied.array)
    # And via plain SimpleITK the LPS geometry is our RAS with x, y negated.
    image = sitk.ReadImage(str(copy))
    np.testing.assert_allclose(np.array(image.GetOrigin()) * [-1, -1, 1], copied.origin)
