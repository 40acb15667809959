"""DICOM series: synthetic CT stacks written with pydicom, checked against hand geometry."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from DTTLib.errors import GeometryError, InputError
from DTTLib.imaging import find_dicom_series, read_dicom_series, read_image

ROWS, COLUMNS = 6, 8
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
PIXEL_SPACING = (0.5, 0.7)  # DICOM order: between rows (along a column), between columns


def oblique_orientation() -> tuple[float, ...]:
    """Two perpendicular unit vectors, rotated about z by 30° and tilted about x by 20°."""
    a, b = np.radians(30), np.radians(20)
    row = np.array([np.cos(a), np.sin(a), 0.0])
    column = np.array([-np.sin(a) * np.cos(b), np.cos(a) * np.cos(b), np.sin(b)])
    return tuple(row) + tuple(column)


def stored_slice(s: int) -> np.ndarray:
    return (np.arange(ROWS * COLUMNS).reshape(ROWS, COLUMNS) * 3 + s * 100 + 1000).astype(np.uint16)


def make_series(folder: Path, n: int = 5, orientation=AXIAL, first=(-10.0, -20.0, 30.0),
                gap: float = 2.5, slope: float = 1.0, intercept: float = -1024.0,
                description: str = "CT test", prefix: str = "img", offsets=None,
                reverse_names: bool = False, bits_stored: int = 12) -> dict:
    """Write an n-slice CT series; return what was written (positions, stored values, tags)."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid, study_uid = generate_uid(), generate_uid()
    row, column = np.array(orientation[:3]), np.array(orientation[3:])
    normal = np.cross(row, column)
    offsets = [s * gap for s in range(n)] if offsets is None else offsets
    positions, stored = [], []
    for s, offset in enumerate(offsets):
        position = np.array(first) + offset * normal
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.PatientID, ds.PatientName, ds.PatientBirthDate = "P001", "Doe^Jane", "19700101"
        ds.StudyInstanceUID, ds.StudyDate, ds.StudyDescription = study_uid, "20240102", "Chest"
        ds.SeriesInstanceUID, ds.SeriesDescription = series_uid, description
        ds.Modality, ds.SliceThickness, ds.InstanceNumber = "CT", gap, s + 1
        ds.ImagePositionPatient = [float(x) for x in position]
        ds.ImageOrientationPatient = [float(x) for x in orientation]
        ds.PixelSpacing = list(PIXEL_SPACING)
        ds.Rows, ds.Columns, ds.SamplesPerPixel = ROWS, COLUMNS, 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = (
            16, bits_stored, bits_stored - 1, 0)
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        values = stored_slice(s)
        ds.PixelData = values.tobytes()
        number = n - 1 - s if reverse_names else s
        ds.save_as(folder / f"{prefix}{number:03d}.dcm", enforce_file_format=True)
        positions.append(position)
        stored.append(values)
    return {"uid": series_uid, "study_uid": study_uid, "positions": np.array(positions),
            "stored": stored, "row": row, "column": column, "slope": slope,
            "intercept": intercept}


def check_against_hand_geometry(volume, written) -> None:
    """Every voxel's RAS position is the DICOM LPS position with x, y negated, and holds
    the rescaled stored value of the slice written at that position."""
    matrix = volume.ijk_to_ras()
    n_i, n_j, n_k = volume.shape_ijk
    assert (n_i, n_j) == (COLUMNS, ROWS)
    assert n_k == len(written["positions"])
    used = set()
    jj, ii = np.meshgrid(np.arange(ROWS), np.arange(COLUMNS), indexing="ij")
    for k in range(n_k):
        first_ras = (matrix @ [0, 0, k, 1])[:3]
        first_lps = first_ras * [-1, -1, 1]
        matches = [s for s, p in enumerate(written["positions"])
                   if np.linalg.norm(p - first_lps) < 1e-4]
        assert len(matches) == 1, f"voxel (0,0,{k}) lies on no written slice"
        s = matches[0]
        used.add(s)
        # DICOM: column index i moves along the row vector by PixelSpacing[1]; row index j
        # moves along the column vector by PixelSpacing[0].
        lps = (written["positions"][s][None, None, :]
               + ii[..., None] * PIXEL_SPACING[1] * written["row"]
               + jj[..., None] * PIXEL_SPACING[0] * written["column"])
        expected_ras = lps * np.array([-1, -1, 1])
        ijk1 = np.stack([ii, jj, np.full_like(ii, k), np.ones_like(ii)], axis=-1)
        got = ijk1 @ matrix.T
        np.testing.assert_allclose(got[..., :3], expected_ras, atol=1e-4)
        expected_values = (written["stored"][s].astype(float) * written["slope"]
                           + written["intercept"])
        np.testing.assert_allclose(volume.array[k], expected_values, atol=1e-6)
    assert used == set(range(n_k))


def test_axial_ct_series(tmp_path):
    written = make_series(tmp_path / "ct", reverse_names=True)
    volume = read_dicom_series(tmp_path / "ct")
    assert volume.array.dtype == np.int16  # integer HU fit int16, as Slicer stores CT
    np.testing.assert_allclose(volume.spacing, [PIXEL_SPACING[1], PIXEL_SPACING[0], 2.5],
                               atol=1e-6)
    check_against_hand_geometry(volume, written)
    assert volume.array.min() == 1000 - 1024  # intercept applied


def test_sixteen_bit_ct_is_narrowed_to_int16_without_change(tmp_path):
    # GDCM widens uint16 + intercept to int32 (the full range would not fit int16); the
    # values here do fit, so the volume is stored as int16 with identical numbers.
    written = make_series(tmp_path / "ct16", bits_stored=16)
    volume = read_dicom_series(tmp_path / "ct16")
    assert volume.array.dtype == np.int16
    check_against_hand_geometry(volume, written)


def test_values_beyond_int16_stay_wide(tmp_path):
    written = make_series(tmp_path / "wide", bits_stored=16, intercept=-40000.0)
    volume = read_dicom_series(tmp_path / "wide")
    assert volume.array.dtype == np.int32
    check_against_hand_geometry(volume, written)


def test_oblique_series_with_fractional_slope(tmp_path):
    written = make_series(tmp_path / "obl", orientation=oblique_orientation(), gap=3.0,
                          slope=0.5, intercept=-100.0, first=(12.5, -7.25, 40.0))
    volume = read_image(tmp_path / "obl")  # read_image delegates folders to DICOM
    assert np.issubdtype(volume.array.dtype, np.floating)
    np.testing.assert_allclose(volume.spacing, [0.7, 0.5, 3.0], atol=1e-6)
    check_against_hand_geometry(volume, written)
    # The direction's columns are the DICOM row, column and normal vectors in RAS.
    flip = np.diag([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(volume.direction[:, 0], flip @ written["row"], atol=1e-6)
    np.testing.assert_allclose(volume.direction[:, 1], flip @ written["column"], atol=1e-6)


def test_tags_in_metadata(tmp_path):
    written = make_series(tmp_path / "ct")
    tags = read_dicom_series(tmp_path / "ct").metadata["dicom"]
    assert tags["PatientID"] == "P001"
    assert tags["PatientName"] == "Doe^Jane"
    assert tags["PatientBirthDate"] == "19700101"
    assert tags["StudyInstanceUID"] == written["study_uid"]
    assert tags["StudyDate"] == "20240102"
    assert tags["StudyDescription"] == "Chest"
    assert tags["SeriesInstanceUID"] == written["uid"]
    assert tags["SeriesDescription"] == "CT test"
    assert tags["Modality"] == "CT"
    assert tags["SliceThickness"] == pytest.approx(2.5)
    assert tags["number_of_files"] == 5


def test_two_series_need_a_choice(tmp_path):
    first = make_series(tmp_path / "mix", description="arterial", prefix="a")
    second = make_series(tmp_path / "mix", description="venous", prefix="v", n=4)
    with pytest.raises(InputError) as info:
        read_dicom_series(tmp_path / "mix")
    message = str(info.value)
    assert "2 DICOM series" in message
    for uid, description, count in ((first["uid"], "arterial", 5), (second["uid"], "venous", 4)):
        assert uid in message and description in message
        assert re.search(rf"{re.escape(uid)}.*?{count} files", message)
    assert "series_uid" in info.value.fix
    found = {info.SeriesInstanceUID: info for info in find_dicom_series(tmp_path / "mix")}
    assert set(found) == {first["uid"], second["uid"]}
    assert found[second["uid"]].number_of_files == 4
    chosen = read_dicom_series(tmp_path / "mix", series_uid=second["uid"])
    assert chosen.metadata["dicom"]["SeriesDescription"] == "venous"
    check_against_hand_geometry(chosen, second)
    with pytest.raises(InputError, match="not in folder"):
        read_dicom_series(tmp_path / "mix", series_uid="1.2.3.4")


def test_missing_slice(tmp_path):
    make_series(tmp_path / "gap", offsets=[0, 2.5, 5, 10, 12.5])
    with pytest.raises(GeometryError, match="1 missing slice"):
        read_dicom_series(tmp_path / "gap")


def test_non_uniform_spacing(tmp_path):
    make_series(tmp_path / "uneven", offsets=[0, 2.5, 5, 8, 10.5])
    with pytest.raises(GeometryError, match="non-uniform slice spacing"):
        read_dicom_series(tmp_path / "uneven")


def test_repeated_positions(tmp_path):
    make_series(tmp_path / "dup", offsets=[0, 0, 2.5, 2.5, 5])
    with pytest.raises(GeometryError, match="several volumes"):
        read_dicom_series(tmp_path / "dup")


def test_corrupt_file_is_named(tmp_path):
    make_series(tmp_path / "bad")
    victim = tmp_path / "bad" / "img002.dcm"
    victim.write_bytes(victim.read_bytes()[:300])
    with pytest.raises(GeometryError) as info:
        read_dicom_series(tmp_path / "bad")
    assert "missing slice" in info.value.problem
    assert "img002.dcm" in info.value.problem


def test_folder_with_only_garbage(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.dcm").write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(InputError, match="no DICOM series found"):
        read_dicom_series(tmp_path / "junk")


def test_empty_folder(tmp_path, capfd):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no DICOM series found"):
        read_image(tmp_path / "empty")
    assert "WARNING" not in capfd.readouterr().err  # ITK's own warning stays silent


def test_series_in_subfolder_is_hinted(tmp_path):
    make_series(tmp_path / "patient" / "series1")
    with pytest.raises(InputError) as info:
        read_dicom_series(tmp_path / "patient")
    assert "series1" in info.value.fix


def test_single_slice_is_refused(tmp_path):
    make_series(tmp_path / "one", n=1)
    with pytest.raises(GeometryError, match="single 2-D slice"):
        read_dicom_series(tmp_path / "one")

