"""`dtt run` with a lesion in two separate pieces: case.json gives one box per piece on the
baseline; the follow-up carries one box per piece through the real registration, so both pieces
are found again and RECIST adds their longest diameters (real LiteMedSAM, synthetic scans with
known pieces)."""

from __future__ import annotations

import json
import numpy as np
import pytest

from DTTLib.imaging.io import write_image
from DTTLib.imaging.volume import ImageVolume
from DTTLib.measurement.diameters import measure_lesion
from DTTLib.pipeline.cache import StepCache, file_digest
from DTTLib.pipeline.case import load_case
from DTTLib.pipeline.segment_step import segment_case

SPACING = (0.9, 0.9, 2.5)


def scan(shift_mm: float, scale: float, seed: int) -> tuple[ImageVolume, list[np.ndarray]]:
    """A soft-tissue slab with two separate bright pieces (a main mass and a satellite)."""
    k, j, i = np.mgrid[0:14, 0:80, 0:80].astype(float)
    x = i * SPACING[0] - shift_mm
    pieces = [((x - 25) / (9 * scale)) ** 2 + ((j * SPACING[1] - 30) / (7 * scale)) ** 2
              + ((k * SPACING[2] - 16) / (8 * scale)) ** 2 <= 1,
              ((x - 50) / (5 * scale)) ** 2 + ((j * SPACING[1] - 45) / (4.5 * scale)) ** 2
              + ((k * SPACING[2] - 18) / (6 * scale)) ** 2 <= 1]
    rng = np.random.default_rng(seed)
    body = 400 + 80 * np.sin(i / 7.0) * np.cos(j / 9.0)  # texture for the registration to lock on
    array = body + 500 * (pieces[0] | pieces[1]) + rng.normal(0, 15, k.shape)
    return ImageVolume(array.astype(np.float32), SPACING), pieces


def box_of(piece: np.ndarray) -> list[int]:
    k = int(piece.sum(axis=(1, 2)).argmax())
    jj, ii = np.nonzero(piece[k])
    return [int(ii.min()) - 1, int(jj.min()) - 1, k, int(ii.max()) + 1, int(jj.max()) + 1, k]


@pytest.fixture(scope="module")
def two_piece_run(tmp_path_factory):
    from DTTLib.segmentation.litemedsam import LiteMedSAMSegmenter
    from DTTLib.tracking.registration import register

    folder = tmp_path_factory.mktemp("pieces")
    baseline, truth0 = scan(0.0, 1.0, 1)
    followup, truth1 = scan(3.0, 0.85, 2)
    write_image(baseline, folder / "t0.nrrd")
    write_image(followup, folder / "t1.nrrd")
    (folder / "case.json").write_text(json.dumps({
        "patient": "P1", "timepoints": [{"id": "t0", "path": "t0.nrrd", "day": 0},
                                        {"id": "t1", "path": "t1.nrrd", "day": 60}],
        "lesions": [{"id": "L1", "organ": "liver", "box": {"timepoint": "t0", "ijk": box_of(truth0[0])},
                     "boxes": [{"timepoint": "t0", "ijk": box_of(truth0[1])}]}]}))
    case = load_case(folder)
    images = {"t0": baseline, "t1": followup}
    digests = {t: file_digest(folder / f"{t}.nrrd") for t in images}
    segmenter = LiteMedSAMSegmenter(device="cpu", threads=2)
    results, _ = segment_case(case, images, digests, segmenter, StepCache(folder / "cache"), register)
    return results, images, {"t0": truth0, "t1": truth1}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


@pytest.mark.parametrize("timepoint", ["t0", "t1"])
def test_both_pieces_are_segmented_at_both_timepoints(two_piece_run, timepoint):
    results, images, truths = two_piece_run
    segmentation = results[("L1", timepoint)]
    mask = segmentation.mask > 0
    assert len(segmentation.all_boxes) == 2
    for piece in truths[timepoint]:
        assert dice(mask & piece, piece) >= 0.75  # each piece found on its own


def test_the_follow_up_carries_one_box_per_piece(two_piece_run):
    results, _, truths = two_piece_run
    carried = results[("L1", "t1")]
    assert carried.box_source == "carried from t0 (registration)"
    for box, piece in zip(carried.all_boxes, truths["t1"]):  # largest piece first
        assert piece[box.k0, box.j0:box.j1 + 1, box.i0:box.i1 + 1].any()


def test_recist_adds_the_pieces_longest_diameters(two_piece_run):
    results, images, _ = two_piece_run
    for timepoint in ("t0", "t1"):
        measured = measure_lesion(results[("L1", timepoint)].mask, images[timepoint])
        assert len(measured.pieces) == 2
        assert measured.longest_diameter_mm == pytest.approx(sum(p.longest_diameter_mm for p in measured.pieces))
    shrink = (measure_lesion(results[("L1", "t1")].mask, images["t1"]).longest_diameter_mm
              / measure_lesion(results[("L1", "t0")].mask, images["t0"]).longest_diameter_mm)
    assert 0.7 <= shrink <= 0.95  # the pieces shrank to 0.85 of their size

