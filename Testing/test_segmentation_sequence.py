"""One ROI → the lesion on every frame of a volume sequence (real LiteMedSAM, real brain MR).

Frames: brain1's tumour region (the piece its box is drawn on), the same region with the lesion moved 3 voxels, and a frame
whose position the ROI misses. Each found frame must be exactly what segmenting that frame on
its own gives; the miss must be reported, not filled from a neighbour; the results must play
back through Slicer's sequence browser, one outline per frame, and re-running must replace them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from DTTLib.imaging.io import read_image
from DTTLib.imaging.volume import ImageVolume
from DTTLib.segmentation.box import voxel_box_from_ras
from DTTLib.segmentation.scene import compute_lesion
from DTTLib.segmentation.sequence import segment_frames

SHIFT = 3  # voxels the lesion moves along i between frames 0 and 1


CROP = (slice(8, 21), slice(50, 178), slice(120, 248))  # (k, j, i) around brain1's tumour


@pytest.fixture(scope="module")
def frames(shared_data) -> list[ImageVolume]:
    image = read_image(shared_data / "imaging" / "brain1_image.nrrd")
    sub = np.ascontiguousarray(image.array[CROP])
    corner = np.array([CROP[2].start, CROP[1].start, CROP[0].start])
    origin = image.origin + image.direction @ (np.array(image.spacing) * corner)
    still = ImageVolume(sub, image.spacing, tuple(origin), image.direction, name="f0")
    moved = ImageVolume(np.ascontiguousarray(np.roll(sub, SHIFT, axis=2)), image.spacing, tuple(origin),
                        image.direction, name="f1")
    far = ImageVolume(sub.copy(), image.spacing, tuple(np.asarray(origin) + 500.0), image.direction, name="f2")
    return [still, moved, far]


@pytest.fixture(scope="module")
def roi(shared_data, frames) -> tuple[np.ndarray, np.ndarray]:
    """RAS box around the tumour's widest slice on frame 0, wide enough for the moved tumour."""
    label = read_image(shared_data / "imaging" / "brain1_label.nrrd").array[CROP] > 0
    k = int(label.sum(axis=(1, 2)).argmax())
    jj, ii = np.nonzero(label[k])
    corners = np.array([[ii.min() - 1, jj.min() - 1, k, 1.0], [ii.max() + SHIFT + 1, jj.max() + 1, k, 1.0]])
    ras = (frames[0].ijk_to_ras() @ corners.T)[:3].T
    return ras.min(axis=0), ras.max(axis=0)


@pytest.fixture(scope="module")
def segmenter():
    from DTTLib.segmentation.litemedsam import LiteMedSAMSegmenter

    return LiteMedSAMSegmenter(device="cpu", threads=2)


@pytest.fixture(scope="module")
def series(frames, roi, segmenter):
    calls: list[tuple[int, int]] = []
    labels = ["time 0 s", "time 10 s", "time 20 s"]
    result = segment_frames(list(zip(labels, frames)), *roi, segmenter, progress=lambda d, t: calls.append((d, t)))
    return result, calls


def test_each_frame_is_what_segmenting_it_alone_gives(series, frames, roi, segmenter):
    result, calls = series
    assert [frame.found for frame in result.frames] == [True, True, False] and not result.cancelled
    for n in (0, 1):
        alone = compute_lesion(frames[n], voxel_box_from_ras(frames[n], *roi), segmenter, "3d")
        assert np.array_equal(result.frames[n].computed.mask, alone.mask)
    assert calls and calls[-1][0] <= calls[-1][1] and all(t == calls[0][1] for _, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)  # progress never runs backwards


def test_the_lesion_moves_with_the_frame_and_keeps_its_size(series):
    result, _ = series
    first, second = (result.frames[n] for n in (0, 1))
    shifted = np.roll(first.computed.mask, SHIFT, axis=2) > 0
    moved = second.computed.mask > 0
    assert 2 * (shifted & moved).sum() / (shifted.sum() + moved.sum()) >= 0.8
    assert second.measurement.volume_mm3 == pytest.approx(first.measurement.volume_mm3, rel=0.25)


def test_a_frame_the_roi_misses_is_reported_not_filled(series):
    missed = series[0].frames[2]
    assert missed.computed is None and missed.measurement is None and "outside the image" in missed.problem


def test_results_play_back_through_the_sequence_browser(series, frames):
    from DTTLib.mrml.runtime import get_scene, import_slicer
    from DTTLib.mrml.segmentations import get_segment_mask
    from DTTLib.mrml.sequences import frame_rows, store_frame_masks, store_frame_table, volume_sequence
    from DTTLib.mrml.tables import rows_from_table_node
    from DTTLib.mrml.volumes import add_volume_node

    slicer = import_slicer()
    scene = get_scene()
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "follow-up")
    sequence.SetIndexName("time")
    sequence.SetIndexUnit("s")
    for n, frame in enumerate(frames):
        node = add_volume_node(frame, f"frame {n}", scene=scene)
        sequence.SetDataNodeAtValue(node, str(10 * n))
        scene.RemoveNode(node)
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "follow-up browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    logic = slicer.modules.sequences.logic()
    logic.UpdateProxyNodesFromSequences(browser)
    proxy_volume = browser.GetProxyNode(sequence)
    found = volume_sequence(proxy_volume)
    assert found is not None and found.frame_count == 3 and found.frame_label(1) == "time 10 s"
    assert volume_sequence(add_volume_node(frames[0], "plain volume", scene=scene)) is None

    result, _ = series
    masks = [frame.computed.mask if frame.found else None for frame in result.frames]
    for _ in range(2):  # re-running replaces the lesion's result sequence instead of adding one
        proxy_segmentation = store_frame_masks(found, masks, "L1", organ="brain")
    import vtk

    synchronized = vtk.vtkCollection()
    browser.GetSynchronizedSequenceNodes(synchronized, False)
    assert synchronized.GetNumberOfItems() == 1
    for n in range(3):
        browser.SetSelectedItemNumber(n)
        logic.UpdateProxyNodesFromSequences(browser)
        shown = get_segment_mask(proxy_segmentation, f"L1 @ {found.frame_label(n)}", proxy_volume)
        expected = masks[n] if masks[n] is not None else np.zeros_like(shown)
        assert np.array_equal(shown > 0, expected > 0), f"frame {n}"

    rows = frame_rows(found, result.frames, "L1")
    assert [row["status"] for row in rows[:2]] == ["measured", "measured"] and "outside" in rows[2]["status"]
    table = store_frame_table(found, result.frames, "L1")
    assert store_frame_table(found, result.frames, "L1") is table
    stored = rows_from_table_node(table)
    assert len(stored) == 3 and stored[1]["volume_mm3"] == pytest.approx(result.frames[1].measurement.volume_mm3)
    assert math.isnan(stored[2]["volume_mm3"])


def test_cancelling_returns_the_frames_already_done(frames, roi, segmenter):
    done: list[int] = []

    def progress(d: int, t: int) -> None:
        done.append(d)

    result = segment_frames([("a", frames[0]), ("b", frames[1])], *roi, segmenter, progress=progress,
                            should_cancel=lambda: bool(done) and done[-1] >= 1 and len(done) > 2)
    assert result.cancelled and len(result.frames) <= 1
