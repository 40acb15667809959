"""``dtt segment --batch``: the CSV list is checked line by line, one loaded model segments every
lesion exactly as ``dtt segment`` would, a bad row costs only its lesion, and ``--resume`` keeps
finished work."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from DTTLib.errors import InputError
from DTTLib.imaging.io import read_image, write_image
from DTTLib.imaging.volume import ImageVolume
from DTTLib.measurement import mask_volume_mm3
from DTTLib.segmentation.batch_list import read_batch_list

ROOT = Path(__file__).resolve().parents[1]


def dtt_segment(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "DTTLib.cli.main", "segment", *args], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "DTT_NUM_THREADS": "2"}, timeout=600)


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def table(out_dir: Path) -> list[dict[str, str]]:
    with (out_dir / "measurements.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


# --- the list --------------------------------------------------------------------------------------------

def test_rows_of_one_lesion_merge_and_paths_are_relative_to_the_list(tmp_path):
    listed = write_csv(tmp_path / "boxes.csv", [
        ["Image", "box", "lesion", "organ"],
        ["scans/a.nrrd", "1,2,3,4,5,3", "L1", "liver"],
        ["scans/a.nrrd", "10;11;3;14;15;3", "L1", ""],   # second piece of L1, semicolons
        ["scans/a.nrrd", "20 21 3 24 25 3", "", ""],     # unnamed: its own lesion
        ["/abs/b.nii.gz", "", "", ""],
    ])
    lesions = read_batch_list(listed, needs_box=False)
    assert [(lesion.image, lesion.lesion, len(lesion.boxes)) for lesion in lesions] == [
        (tmp_path / "scans" / "a.nrrd", "L1", 2), (tmp_path / "scans" / "a.nrrd", "row4", 1),
        (Path("/abs/b.nii.gz"), "proposals", 0)]
    assert lesions[0].boxes[1] == (10, 11, 3, 14, 15, 3) and lesions[0].organ == "liver"
    assert lesions[0].lines == (2, 3) and lesions[0].space == "ijk" and lesions[2].space == ""
    assert lesions[0].default_out() == "a_L1.nii.gz"


@pytest.mark.parametrize("rows, words", [
    ([["image", "box"], ["a.nrrd", "1,2,3"]], "line 2: box '1,2,3' is not six numbers"),
    ([["image", "box"], ["a.nrrd", "1,2,3,4,5,6"], ["a.nrrd", ""]], "line 3: no box"),
    ([["image", "box", "box_ras"], ["a.nrrd", "1,2,3,4,5,6", "1,2,3,4,5,6"]], "both box and box_ras"),
    ([["image", "box"], ["a.nrrd", "1.5,2,3,4,5,6"]], "non-integer voxel indices"),
    ([["image", "boxes"], ["a.nrrd", "1,2,3,4,5,6"]], "unknown column(s) boxes"),
    ([["scan", "box"], ["a.nrrd", "1,2,3,4,5,6"]], "no 'image' column"),
    ([["image", "box"]], "no rows"),
    ([["image", "box", "lesion", "out"], ["a.nrrd", "1,2,3,4,5,6", "L1", "m.nii.gz"],
      ["b.nrrd", "1,2,3,4,5,6", "L2", "M.nii.gz"]], "is also written by line 2"),
    ([["image", "box", "box_ras", "lesion"], ["a.nrrd", "1,2,3,4,5,6", "", "L1"],
      ["a.nrrd", "", "1,2,3,4,5,6", "L1"]], "mixes box kinds"),
])
def test_bad_lists_name_the_line_and_the_fix(tmp_path, rows, words):
    with pytest.raises(InputError) as error:
        read_batch_list(write_csv(tmp_path / "list.csv", rows))
    assert words in error.value.message and error.value.fix


# --- the batch, end to end ---------------------------------------------------------------------------------

def two_lesion_scan(path: Path) -> tuple[ImageVolume, list[np.ndarray]]:
    """Two bright ellipsoids (1.2 × 0.9 × 2.5 mm voxels) on a noisy background, and their masks."""
    k, j, i = np.mgrid[0:12, 0:48, 0:56]
    masks = [((i - 16) / 7.0) ** 2 + ((j - 20) / 5.0) ** 2 + ((k - 5) / 3.0) ** 2 <= 1,
             ((i - 40) / 5.0) ** 2 + ((j - 30) / 8.0) ** 2 + ((k - 6) / 2.5) ** 2 <= 1]
    array = np.random.default_rng(3).normal(100, 5, k.shape) + 200 * (masks[0] | masks[1])
    image = ImageVolume(array.astype(np.float32), (1.2, 0.9, 2.5), (-30.0, 12.0, 7.5), np.eye(3), name="scan")
    write_image(image, path)
    return image, masks


def box_text(mask: np.ndarray) -> str:
    kk, jj, ii = np.nonzero(mask)
    return f"{ii.min() - 1},{jj.min() - 1},{kk.min()},{ii.max() + 1},{jj.max() + 1},{kk.max()}"


def test_threshold_batch_measures_each_lesion_and_one_bad_row_costs_only_its_lesion(tmp_path):
    image, masks = two_lesion_scan(tmp_path / "scan.nrrd")
    listed = write_csv(tmp_path / "list.csv", [
        ["image", "box", "lesion"],
        ["scan.nrrd", box_text(masks[0]), "left"],
        ["scan.nrrd", "0,0,0,500,10,0", "outside"],
        ["missing.nrrd", "1,1,1,5,5,1", "lost"],
        ["scan.nrrd", box_text(masks[1]), "right"],
    ])
    out_dir = tmp_path / "out"
    run = dtt_segment("--batch", str(listed), "--out-dir", str(out_dir), "--model", "threshold", "--json")
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("dtt segment: error: 2 of 4 lesions failed")
    report = json.loads(run.stdout)
    assert report["lesions"] == 4 and report["failed"] == 2
    rows = {row["lesion"]: row for row in table(out_dir)}
    assert rows["outside"]["status"] == "failed" and "outside the image" in rows["outside"]["error"]
    assert rows["lost"]["status"] == "failed" and "does not exist" in rows["lost"]["error"]
    for name, truth in (("left", masks[0]), ("right", masks[1])):
        row = rows[name]
        assert row["status"] == "ok" and row["model"] == "threshold"
        written = read_image(out_dir / row["out"])
        assert written.same_grid(image)
        assert np.array_equal(written.array > 0, truth)  # 200 above 5-SD noise: the cut is exact
        assert float(row["volume_mm3"]) == pytest.approx(mask_volume_mm3(truth, image), abs=0.05)
        assert int(row["voxels"]) == int(truth.sum())
        assert (int(row["first_slice"]), int(row["last_slice"])) == tuple(np.nonzero(truth.any(axis=(1, 2)))[0][[0, -1]])


def test_resume_keeps_finished_lesions_and_redoes_the_failed_ones(tmp_path):
    _, masks = two_lesion_scan(tmp_path / "scan.nrrd")
    rows = [["image", "box", "lesion", "out"], ["scan.nrrd", box_text(masks[0]), "left", "masks/scan_left.nii.gz"],
            ["scan.nrrd", "0,0,0,500,10,0", "right", ""]]
    out_dir = tmp_path / "out"
    assert dtt_segment("--batch", str(write_csv(tmp_path / "list.csv", rows)), "--out-dir", str(out_dir),
                       "--model", "threshold").returncode == 2
    left = out_dir / "masks" / "scan_left.nii.gz"  # a sub-folder of --out-dir named by the list
    first_write = left.stat().st_mtime_ns
    rows[2][1] = box_text(masks[1])  # the user fixes the bad row
    run = dtt_segment("--batch", str(write_csv(tmp_path / "list.csv", rows)), "--out-dir", str(out_dir),
                      "--model", "threshold", "--resume")
    assert run.returncode == 0, run.stderr
    assert "left: done earlier, kept" in run.stderr
    assert left.stat().st_mtime_ns == first_write
    assert [(row["lesion"], row["status"]) for row in table(out_dir)] == [("left", "ok"), ("right", "ok")]


def test_a_batch_gives_the_masks_single_runs_give(shared_data, tmp_path):
    """LiteMedSAM, real weights: brain2's lesion from a batch (model loaded once, two lesions) is
    voxel for voxel the mask `dtt segment IMAGE --box` writes, and brain1's two pieces are one lesion."""
    from scipy import ndimage

    rows = [["image", "box", "lesion"]]
    single_box = ""
    for case in ("brain1", "brain2"):
        label = read_image(shared_data / "imaging" / f"{case}_label.nrrd").array > 0
        components, count = ndimage.label(label, np.ones((3, 3, 3)))
        for c in range(1, count + 1):
            piece = components == c
            k = int(piece.sum(axis=(1, 2)).argmax())
            jj, ii = np.nonzero(piece[k])
            rows.append([str(shared_data / "imaging" / f"{case}_image.nrrd"),
                         f"{ii.min()},{jj.min()},{k},{ii.max()},{jj.max()},{k}", "L1"])
        single_box = rows[-1][1]
    out_dir = tmp_path / "out"
    run = dtt_segment("--batch", str(write_csv(tmp_path / "list.csv", rows)), "--out-dir", str(out_dir))
    assert run.returncode == 0, run.stderr
    listed = {row["image"].split("/")[-1]: row for row in table(out_dir)}
    assert listed["brain1_image.nrrd"]["boxes"] == "2" and listed["brain2_image.nrrd"]["boxes"] == "1"
    assert listed["brain1_image.nrrd"]["pieces"] == "2"  # the two foci do not touch: RECIST fragments
    single = tmp_path / "single.nii.gz"
    alone = dtt_segment(str(shared_data / "imaging" / "brain2_image.nrrd"), "--box", single_box, "--out", str(single),
                        "--json")
    assert alone.returncode == 0, alone.stderr
    batch_mask = read_image(out_dir / listed["brain2_image.nrrd"]["out"]).array
    assert batch_mask.any() and np.array_equal(batch_mask, read_image(single).array)
    assert float(listed["brain2_image.nrrd"]["volume_mm3"]) == pytest.approx(json.loads(alone.stdout)["volume_mm3"],
                                                                            abs=0.05)


@pytest.mark.parametrize("extra, words", [
    (["--box", "1,1,1,2,2,1"], "takes its scans and boxes from the list"),
    ([], "needs --out-dir"),
])
def test_batch_argument_mistakes_give_one_line(tmp_path, extra, words):
    listed = write_csv(tmp_path / "list.csv", [["image", "box"], ["a.nrrd", "1,1,1,2,2,1"]])
    args = ["--batch", str(listed)] + extra + (["--out-dir", str(tmp_path / "o")] if words != "needs --out-dir" else [])
    run = dtt_segment(*args)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1 and words in run.stderr


def test_a_folder_gives_no_boxes_for_a_box_model(tmp_path):
    run = dtt_segment("--batch", str(tmp_path), "--out-dir", str(tmp_path / "o"))
    assert run.returncode == 2 and "gives no boxes" in run.stderr


def test_nnunet_batch_over_a_folder_writes_proposals_per_scan(tmp_path):
    pytest.importorskip("nnunetv2")
    from DTTLib.segmentation.nnunet_synthetic import make_case

    scans = tmp_path / "scans"
    scans.mkdir()
    for seed in (7003, 7004):
        write_image(make_case(seed, lesions=2).image, scans / f"case{seed}.nii.gz")
    out_dir = tmp_path / "out"
    tiny = ROOT / "Testing" / "data" / "tiny_nnunet"
    run = dtt_segment("--batch", str(scans), "--out-dir", str(out_dir), "--model", f"nnunet:{tiny}",
                      "--device", "cpu")
    assert run.returncode == 0, run.stderr
    rows = table(out_dir)
    for seed in (7003, 7004):
        mine = [row for row in rows if row["image"].endswith(f"case{seed}.nii.gz")]
        assert len(mine) >= 2 and all(row["status"] == "proposal" for row in mine)
        labels = read_image(out_dir / mine[0]["out"]).array
        for n, row in enumerate(mine, start=1):  # row n is proposal Pn, value n in the label map
            assert row["lesion"] == f"P{n}" and int((labels == n).sum()) == int(row["voxels"])
    again = dtt_segment("--batch", str(scans), "--out-dir", str(out_dir), "--model", f"nnunet:{tiny}",
                        "--device", "cpu", "--resume")
    assert again.returncode == 0 and again.stderr.count("proposals: done earlier, kept") == 2, again.stderr
    assert table(out_dir) == rows
