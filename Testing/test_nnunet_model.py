"""nnU-Net path without running a network: model folders, axes, proposals, scene, CLI arguments."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from DTTLib.errors import InputError, MissingDependencyError
from DTTLib.imaging.volume import ImageVolume
from DTTLib.segmentation.nnunet_model import _lesion_labels, inspect_model_folder, resolve_model
from DTTLib.segmentation.nnunet_proposals import make_proposals, observations

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "Testing" / "data" / "tiny_nnunet"


def _copy_model(tmp_path: Path, drop: str | None = None) -> Path:
    target = tmp_path / "model"
    shutil.copytree(TINY, target)
    if drop:
        path = target / drop
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return target


def test_committed_tiny_model_is_small_and_complete():
    files = {p.relative_to(TINY).as_posix(): p.stat().st_size for p in TINY.rglob("*") if p.is_file()}
    assert {"dataset.json", "plans.json", "fold_0/checkpoint_final.pth", "training.json"} <= set(files)
    assert sum(files.values()) < 3 * 1024**2
    folder = inspect_model_folder(TINY)
    assert folder.folds == ("0",) and folder.modality == "CT"
    assert folder.labels == {"background": 0, "organ": 1, "lesion": 2} and folder.lesion_labels == (2,)
    assert folder.configurations == ("3d_fullres",)


@pytest.mark.parametrize(("drop", "words"), [
    ("plans.json", "plans.json is missing"),
    ("dataset.json", "dataset.json is missing"),
    ("fold_0", "no fold_N/checkpoint_final.pth"),
])
def test_incomplete_model_folder_names_what_is_missing(tmp_path, drop, words):
    with pytest.raises(InputError, match=words):
        inspect_model_folder(_copy_model(tmp_path, drop))


def test_unfinished_training_is_explained(tmp_path):
    folder = _copy_model(tmp_path)
    (folder / "fold_0" / "checkpoint_final.pth").rename(folder / "fold_0" / "checkpoint_latest.pth")
    with pytest.raises(InputError, match="training did not finish"):
        inspect_model_folder(folder)
    assert inspect_model_folder(folder, checkpoint_name="checkpoint_latest.pth").folds == ("0",)


def test_missing_folder_unknown_name_and_folder_catalog_entries(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        resolve_model(f"nnunet:{tmp_path / 'nowhere'}")
    with pytest.raises(InputError, match="unknown nnU-Net model 'nosuchmodel'.*nnunet-msd-liver"):
        resolve_model("nnunet:nosuchmodel")
    from DTTLib.models.cache import ModelStore

    store = ModelStore(root=tmp_path / "cache")
    with pytest.raises(MissingDependencyError, match="no download"):
        resolve_model("nnunet:nnunet-msd-lung", store=store)
    shutil.copytree(TINY, store.cache_path("nnunet-msd-lung"))  # a folder the user copied in
    found = resolve_model("nnunet:nnunet-msd-lung", store=store)
    assert found.model_id == "nnunet-msd-lung" and found.lesion_labels == (1,)  # the catalog's labels win


def test_parent_folder_with_one_model_is_accepted(tmp_path):
    shutil.copytree(TINY, tmp_path / "nnUNetTrainer__nnUNetPlans__3d_fullres")
    assert inspect_model_folder(tmp_path).path.name == "nnUNetTrainer__nnUNetPlans__3d_fullres"


def test_lesion_labels_follow_label_names():
    assert _lesion_labels({"background": 0, "liver": 1, "cancer": 2}) == (2,)       # MSD Task03
    assert _lesion_labels({"background": 0, "cancer": 1}) == (1,)                    # MSD Task06
    assert _lesion_labels({"background": 0, "kidney": 1, "tumor": 2, "cyst": 3}) == (2,)
    assert _lesion_labels({"background": 0, "lesion": 1}) == (1,)
    assert _lesion_labels({"background": 0, "spleen": 1}) == (1,)  # no lesion name: all foreground


def test_catalog_entries_are_folder_sources_with_licence_and_input():
    from DTTLib.models.catalog import load_catalog

    catalog = load_catalog()
    for model_id, label in (("nnunet-msd-liver", 2), ("nnunet-msd-lung", 1)):
        entry = catalog[model_id]
        assert entry.kind == "folder" and entry.phase == "segmentation"
        assert "CC-BY-SA 4.0" in entry.licence
        assert entry.input["modality"].startswith("CT") and entry.input["lesion_labels"] == [label]
        assert entry.input["segments"] and entry.input["spacing_mm"]


def test_reoriented_axes_round_trip_and_spacing_follows_the_axes():
    pytest.importorskip("nibabel")
    from DTTLib.segmentation.nnunet import from_nnunet, to_nnunet

    rng = np.random.default_rng(3)
    array = rng.normal(size=(5, 6, 7)).astype(np.float32)  # (k, j, i)
    direction = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])  # columns: i→S, j→-R, k→-A
    image = ImageVolume(array, (0.5, 0.7, 2.0), direction=direction)
    data, spacing = to_nnunet(image, "NibabelIOWithReorient")
    # RAS axes: x (R) is -j, y (A) is -k, z (S) is i → (z, y, x) = (i, -k, -j)
    assert data.shape == (1, 7, 5, 6) and spacing == [0.5, 2.0, 0.7]
    assert data[0, 2, 0, 0] == array[-1, -1, 2]
    assert np.array_equal(from_nnunet(data[0], image, "NibabelIOWithReorient"), array)
    plain, plain_spacing = to_nnunet(image, "SimpleITKIO")
    assert plain.shape == (1, 5, 6, 7) and plain_spacing == [2.0, 0.7, 0.5]


def _two_blobs() -> tuple[np.ndarray, np.ndarray, ImageVolume]:
    labels = np.zeros((10, 20, 30), np.uint8)
    labels[2:5, 2:6, 2:8] = 2            # 3*4*6 = 72 voxels
    labels[6:9, 10:18, 15:25] = 2        # 3*8*10 = 240 voxels
    labels[5, 6, 8] = 2                  # touches the first blob diagonally (26-connected)
    labels[0, 19, 29] = 2                # a one-voxel speck: dropped below min volume
    labels[7, 2:4, 2:4] = 1              # another label (e.g. liver): never a proposal
    probabilities = np.where(labels == 2, 0.9, 0.05).astype(np.float32)
    probabilities[6:9, 10:18, 15:20] = 0.7
    image = ImageVolume(np.zeros(labels.shape, np.int16), (0.8, 0.8, 2.5))
    return labels, probabilities, image


def test_one_proposal_per_connected_lesion_with_measurements():
    labels, probabilities, image = _two_blobs()
    result = make_proposals(labels, probabilities, image, (2,), {2: "cancer"}, min_volume_mm3=5.0)
    voxel = 0.8 * 0.8 * 2.5
    assert [p.proposal_id for p in result.proposals] == ["P1", "P2"] and result.dropped_small == 1
    big, small = result.proposals
    assert big.voxels == 240 and big.volume_mm3 == pytest.approx(240 * voxel)
    assert small.voxels == 73 and small.label_name == "cancer"
    assert big.confidence == pytest.approx((120 * 0.7 + 120 * 0.9) / 240, abs=1e-6)
    assert big.longest_diameter_mm == pytest.approx(np.hypot(10 * 0.8, 8 * 0.8), abs=1e-6)  # corner to corner
    assert big.short_axis_mm is not None and 0 < big.short_axis_mm < big.longest_diameter_mm
    assert (big.box.i0, big.box.j0, big.box.k0, big.box.i1, big.box.j1, big.box.k1) == (15, 10, 6, 24, 17, 8)
    assert big.slices == (6, 8) and big.diameter_slice in (6, 7, 8)
    expected = np.zeros(labels.shape, bool)
    expected[6:9, 10:18, 15:25] = True
    assert np.array_equal(result.mask("P1"), expected)
    label_map = result.label_map()
    assert set(np.unique(label_map)) == {0, 1, 2} and int((label_map == 1).sum()) == 240
    everything = make_proposals(labels, probabilities, image, (2,), min_volume_mm3=0.0)
    six = make_proposals(labels, probabilities, image, (2,), min_volume_mm3=0.0, connectivity=6)
    assert (len(everything.proposals), len(six.proposals)) == (3, 4)  # 6-connected: the diagonal voxel is apart
    json.dumps(result.to_dict())  # JSON-ready


def test_accepted_proposals_become_tracker_observations():
    labels, probabilities, image = _two_blobs()
    result = make_proposals(labels, probabilities, image, (2,), min_volume_mm3=5.0)
    found = observations(result, image, timepoint=1, accepted=["P2"])
    assert [(o.lesion_id, o.timepoint) for o in found] == [("P2", 1)]
    assert found[0].volume_mm3 == pytest.approx(result.proposals[1].volume_mm3)


def test_proposals_are_stored_unconfirmed_then_accepted_or_rejected(mrml):
    from DTTLib.mrml.segmentations import add_segmentation_node, get_segment_mask, list_segments, set_segment_mask
    from DTTLib.mrml.volumes import add_volume_node
    from DTTLib.segmentation.nnunet_scene import (
        accept_proposal,
        pending_proposals,
        reject_proposals,
        store_proposals,
    )

    labels, probabilities, image = _two_blobs()
    result = make_proposals(labels, probabilities, image, (2,), min_volume_mm3=5.0)
    volume = add_volume_node(image, "scan")
    segmentation = add_segmentation_node(volume, "Lesions")
    other = np.zeros(labels.shape, np.uint8)
    other[7, 10:12, 15:17] = 1  # an existing lesion overlapping P1 keeps its 4 voxels
    set_segment_mask(segmentation, other, "L1 @ t1", volume)
    stored = store_proposals(result, volume, segmentation, "t1")
    assert [s.segment_name for s in stored] == ["P1 @ t1 (proposal)", "P2 @ t1 (proposal)"]
    assert stored[0].voxels == 240 - 4 and len(pending_proposals(segmentation)) == 2
    name = accept_proposal(segmentation, "P2 @ t1 (proposal)", "L2", "t1")
    assert name == "L2 @ t1" and int(get_segment_mask(segmentation, "L2 @ t1", volume).sum()) == 73
    with pytest.raises(InputError, match="not an nnU-Net proposal"):
        accept_proposal(segmentation, "L1 @ t1", "L9", "t1")
    assert reject_proposals(segmentation) == 1
    assert sorted(info.name for info in list_segments(segmentation)) == ["L1 @ t1", "L2 @ t1"]


def _dtt(*args: str, cache: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DTT_NUM_THREADS": "2", **({"DTT_CACHE_DIR": str(cache)} if cache else {})}
    return subprocess.run([sys.executable, "-m", "DTTLib.cli.main", "segment", *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=300)


@pytest.fixture(scope="module")
def small_image(tmp_path_factory) -> Path:
    from DTTLib.imaging.io import write_image

    path = tmp_path_factory.mktemp("nnunet_cli") / "scan.nrrd"
    write_image(ImageVolume(np.zeros((4, 5, 6), np.int16)), path)
    return path


@pytest.mark.parametrize(("args", "words"), [
    (["--model", "nnunet:/no/such/folder"], "does not exist"),
    (["--model", "nnunet:nnunet-msd-liver"], "is not on this computer"),
    (["--model", f"nnunet:{TINY}", "--box", "0,0,0,1,1,1"], "takes no box"),
    (["--model", "litemedsam"], "needs a box"),
    (["--model", "unet9000", "--box", "0,0,0,1,1,1"], "unknown model"),
])
def test_cli_model_errors_are_one_line(small_image, tmp_path, args, words):
    out = _dtt(str(small_image), *args, "--out", str(tmp_path / "m.nii.gz"), cache=tmp_path / "cache")
    assert out.returncode != 0 and words in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_device_follows_profile_free_memory_and_other_phases(monkeypatch):
    from types import SimpleNamespace

    import DTTLib.hardware as hardware
    import DTTLib.models.memory as memory
    from DTTLib.segmentation.nnunet import choose_device

    gpu = SimpleNamespace(gpu_available=True)
    monkeypatch.setattr(hardware, "detect_hardware", lambda: gpu)
    monkeypatch.setattr(hardware, "choose_profile", lambda info, name=None: SimpleNamespace(
        settings={"segmentation": {"device": "cuda"}}))
    monkeypatch.setattr(memory, "free_vram_bytes", lambda: (20 * 1024**3, 80 * 1024**3))
    assert choose_device().device == "cuda"
    narrative = SimpleNamespace(resident={"narrative": SimpleNamespace(plan=SimpleNamespace(device="cuda"))})
    held = choose_device(manager=narrative)
    assert held.device == "cpu" and "narrative" in held.note and "slower" in held.note
    monkeypatch.setattr(memory, "free_vram_bytes", lambda: (1 * 1024**3, 16 * 1024**3))
    tight = choose_device()
    assert tight.device == "cpu" and "1.0 GB of GPU memory free" in tight.note
    monkeypatch.setattr(hardware, "choose_profile", lambda info, name=None: SimpleNamespace(
        settings={"segmentation": {"device": "cpu"}}))
    assert "profile" in choose_device().note
