"""One box → a 3-D lesion mask, slice by slice, with a box-prompt model.

The box is in voxel indices of the image as read (i column, j row, k slice, inclusive);
slices are the k planes.

* ``K0 == K1`` (a box drawn on one slice): that slice is the seed; propagation runs up and
  down automatically, never further than the *ROI slab* — ``slab_extent`` × the box's
  largest in-plane side (in mm) on either side of the seed (a lesion is about as deep as
  it is wide; the default 1.0 is twice what a sphere needs).
* ``K0 < K1`` (a 3-D ROI): the middle slice of the slab is the seed (as upstream LiteMedSAM
  does) and propagation never leaves ``[K0, K1]``.

In-plane, nothing is ever segmented outside the *ROI rectangle*: the box expanded by
``roi_margin`` × its side (at least ``roi_margin_min_px`` pixels) on each side. Each next
slice is prompted with the previous slice's mask box ± ``prompt_margin_256`` pixels at the
model's 256-px scale (upstream uses ± 3), clipped to the ROI rectangle, then re-prompted up to
``refine`` times with the new mask's own tight box ± that margin (:func:`_fit_box`; sides the
mask reaches are moved out only when ``grow_fraction`` > 0 — off by default: measured on the
brain pair, growing boxes let masks wander off the lesion). The seed slice is *shrunk to fit*
the same way (``refine_seed``): a loose user box (e.g. one carried from an earlier scan onto a
shrinking lesion) is re-prompted with its first mask's tight box. Every slice's
:class:`SliceDecision` records the final ``prompt`` and the ``refits`` taken.

**Stopping rule.** The model returns a confident mask on every slice, lesion or not (its
predicted IoU stays 0.7–0.9 on slices without lesion), so a slice is accepted only when the
image and the model agree that it continues the seed lesion:

1. *3-D connectivity*: only parts of the mask that touch the previous slice's mask (dilated by
   one pixel) are kept; if nothing touches, stop.
2. *shape continuity*: most of the new mask lies on the previous one
   (``|M ∩ prev| / |M| ≥ min_overlap``) and it does not balloon
   (``|M| ≤ max_growth × |prev|``);
3. *intensity similarity to the seed*: the median intensity inside the mask lies within
   the seed lesion's own spread (``|median − seed median| ≤ intensity_tolerance × seed IQR``,
   with the IQR floored at 5 % of the seed's contrast) and the lesion still stands out from
   its surroundings the way the seed did (contrast to a ring around the mask, same sign, at
   least ``min_contrast`` × the seed's);
4. *model confidence*: predicted IoU ≥ ``min_score`` (weak on its own, but it rejects
   degenerate masks);
5. a minimum area (``min_area_px``).

The first rejected slice ends propagation in that direction.

**Narrowing lesions** (``widen_to_seed``). The model stops about a margin inside any box it is
given, so where a lesion narrows and widens again the narrow slice's box cuts the next slices
(brain1: k = 13 Dice 0.71 from that box, 0.92 from a wider one). An accepted slice that does
not shrink (its mask at least the previous one's area) and reaches its box (within a margin and
a pixel of a side) is therefore decoded once more with a box over the previous *and* the seed
masks; that mask is
kept when it is larger, passes the same checks (growth and overlap judged against the seed as
well) and is as lesion-like as the first — median intensity no more than
``widen_max_intensity_shift`` seed IQRs further off, encoder similarity no more than
``widen_max_similarity_drop`` lower. The two tolerances were read off brain1's slices 13 (keep)
and 14 (a leak to refuse); see docs/PERFORMANCE.md for what they do elsewhere.

**Edges at full resolution** (``refine_edges``; on for CT, off for MR by the rules in
``window_presets.json``): the model decodes at 256 px, so its outline is quantised to 1–2
pixels of a 512-px slice, and on a lesion's end slices its mask often covers the previous
slice's larger section. When the seed lesion stands out from a ring around it by
``edge_min_contrast`` noise SDs, every propagated mask is cut to the seed's lesion side of the
midpoint threshold (grown by at most ~1.5 model pixels) *before* it is judged, and afterwards
each slice is fitted once more to its own midpoint (:func:`refine_edges`). Recorded as
"edges" in ``refits``. With an edge known, a slice with (almost) no lesion-side pixels near the
previous mask ends propagation before it is encoded — whatever the model drew there would be
cut away — which spares the encoder the slices just past each end. Afterwards: the 3-D connected
component containing the seed is kept, holes are filled per slice and a light closing /
opening (3×3 cross, opening skipped on slices it would empty) smooths the outline; the
result is clipped to the ROI rectangle and slab.

``progress(done, total)`` and ``should_cancel()`` callbacks let a GUI run this in a worker
thread: cancellation is checked between slices and returns what was accepted so far with
``cancelled=True``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from DTTLib.errors import InputError
from DTTLib.imaging.volume import ImageVolume
from DTTLib.segmentation.backend import BoxPromptSegmenter, SliceEmbedding
from DTTLib.segmentation.box import VoxelBox, checked_box
from DTTLib.segmentation.prepare import (LITEMEDSAM_SIZE, denoise_sigma_px, denoised, slice_for_model,
                                         window_slice)


@dataclass(frozen=True)
class PropagationSettings:
    prompt_margin_256: float = 3.0
    roi_margin: float = 0.25
    roi_margin_min_px: int = 3
    slab_extent: float = 1.0
    min_overlap: float = 0.6
    max_growth: float = 1.5
    intensity_tolerance: float = 1.5
    min_contrast: float = 0.1
    min_score: float = 0.5
    min_similarity: float = 0.5
    min_area_px: int = 4
    #: "slice": percentiles of the whole slice (MR); "roi": of the ROI rectangle; or a CT
    #: window preset name from window_presets.json (e.g. "soft_tissue"), applied in HU.
    window: str = "slice"
    refine_seed: int = 2      # shrink-to-fit re-prompts on the seed slice (loose boxes)
    refine: int = 2           # re-prompts per slice with the fitted box (decoder only)
    grow_fraction: float = 0.0  # a side the mask reaches moves out by this × the box side
    batch: int | None = None  # slices encoded together; None: 1 on CPU, 4 on GPU
    #: Move the outline to the lesion's own intensity edge at full resolution (see
    #: :func:`refine_edges`); on for CT by ``window_presets.json``, off for MR.
    refine_edges: bool = False
    edge_min_contrast: float = 2.0  # lesion–surroundings difference in pooled noise SDs
    edge_max_change: float = 0.5    # a refit changing a slice's area more than this is dropped
    #: In-plane Gaussian sigma (mm) of the slices the model sees (not of what is measured); by
    #: ``window_presets.json``: 0.7 mm for CT, 0 for MR.
    denoise_mm: float = 0.0
    #: Re-decode each accepted slice with a box over the previous *and* the seed masks and keep
    #: the larger mask if it is as lesion-like (see :func:`propagate_box`): a lesion that narrows
    #: and widens again is otherwise cut by the narrow slice's box.
    widen_to_seed: bool = True
    widen_max_intensity_shift: float = 0.25  # seed IQRs the wider mask's median may move
    widen_max_similarity_drop: float = 0.05  # encoder-feature cosine the wider mask may lose


def settings_for_scan(modality: str, organ: str = "", refine_edges: bool | None = None,
                      **overrides: object) -> PropagationSettings:
    """The propagation settings the data file gives a scan of this modality (and lesion organ):
    slice window, edge refinement (``refine_edges`` True/False overrides it) and denoising."""
    from DTTLib.imaging.preprocess import (  # noqa: PLC0415
        segmentation_denoise_mm, segmentation_edge_refinement, segmentation_window)

    edges = segmentation_edge_refinement(modality) if refine_edges is None else bool(refine_edges)
    return PropagationSettings(**{"window": segmentation_window(modality, organ), "refine_edges": edges,
                                  "denoise_mm": segmentation_denoise_mm(modality), **overrides})


@dataclass
class SliceDecision:
    k: int
    accepted: bool
    reason: str
    score: float = float("nan")
    area: int = 0
    growth: float = float("nan")
    overlap: float = float("nan")
    intensity_z: float = float("nan")
    contrast: float = float("nan")
    similarity: float = float("nan")
    prompt: tuple[int, int, int, int] | None = None  # the box the kept mask was decoded from
    refits: str = ""          # box changes before it: "shrink", "grow", "grow+shrink", …


@dataclass
class PropagationResult:
    mask: np.ndarray                      # uint8 (k, j, i), image geometry
    seed_slice: int
    roi: VoxelBox                         # the 3-D region nothing leaks out of
    decisions: list[SliceDecision] = field(default_factory=list)
    encode_s: list[float] = field(default_factory=list)   # per encoded slice
    decode_s: list[float] = field(default_factory=list)   # per decoded box
    cancelled: bool = False

    @property
    def slices(self) -> tuple[int, int] | None:
        ks = np.nonzero(self.mask.reshape(self.mask.shape[0], -1).any(axis=1))[0]
        return (int(ks[0]), int(ks[-1])) if ks.size else None

    @property
    def outline(self) -> str:
        """How the outline was made, for the record: "model", or "model; edges refined on N of
        M slices" when the intensity-edge rule changed it, plus "; box widened to the seed on K
        slices" when :attr:`PropagationSettings.widen_to_seed` took a wider mask."""
        kept = [d for d in self.decisions if d.accepted]
        refined = sum("edges" in d.refits for d in kept)
        widened = sum("widened to the seed" in d.refits for d in kept)
        text = f"model; edges refined on {refined} of {len(kept)} slices" if refined else "model"
        return text + (f"; box widened to the seed on {widened} slice{'s' * (widened != 1)}" if widened else "")


@dataclass(frozen=True)
class _SeedStats:
    median: float
    iqr: float
    contrast: float
    feature: np.ndarray | None = None


def roi_for_box(image: ImageVolume, box: VoxelBox, settings: PropagationSettings) -> VoxelBox:
    """The 3-D region a propagation from ``box`` may fill (see the module docstring)."""
    box = checked_box(box, image)
    ni, nj, nk = image.shape_ijk
    width, height, _ = box.size
    mi = max(settings.roi_margin_min_px, math.ceil(settings.roi_margin * width))
    mj = max(settings.roi_margin_min_px, math.ceil(settings.roi_margin * height))
    if box.k0 < box.k1:
        k0, k1 = box.k0, box.k1
    else:
        extent_mm = max(width * image.spacing[0], height * image.spacing[1])
        reach = math.ceil(settings.slab_extent * extent_mm / image.spacing[2])
        k0, k1 = max(0, box.k0 - reach), min(nk - 1, box.k0 + reach)
    return VoxelBox(max(0, box.i0 - mi), max(0, box.j0 - mj), k0,
                    min(ni - 1, box.i1 + mi), min(nj - 1, box.j1 + mj), k1)


def model_input_slice(values: np.ndarray, settings: PropagationSettings, sigma_px: tuple[float, float],
                      inplane: np.ndarray | None = None) -> np.ndarray:
    """The uint8 RGB slice the model is given for one k plane: denoised by ``sigma_px`` (see
    :func:`denoise_sigma_px`) and windowed by ``settings.window`` — for "roi", from the pixels
    under ``inplane`` (the ROI rectangle), so only a run that knows its box can prepare it."""
    if settings.window == "roi":  # window from the ROI rectangle, applied to the whole slice
        if inplane is None:
            raise ValueError("the 'roi' window needs the ROI rectangle")
        smoothed = denoised(values, sigma_px)
        return window_slice(smoothed, reference=smoothed[inplane])
    return slice_for_model(values, settings.window, sigma_px)


def propagate_box(image: ImageVolume, box: VoxelBox, segmenter: BoxPromptSegmenter,
                  settings: PropagationSettings | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  should_cancel: Callable[[], bool] | None = None,
                  seed_mask: np.ndarray | None = None, guide: np.ndarray | None = None) -> PropagationResult:
    """Segment the lesion in ``box`` in 3-D (see the module docstring for the rules).

    ``seed_mask`` (bool rows × columns): an outline the user drew or corrected on the box's
    middle slice. It replaces the model's seed outline and is kept exactly; the other slices
    are propagated from it as from a model seed (see :func:`box_around_outline`). ``guide``
    (bool, the volume's shape): the lesion's earlier outline; where it has pixels on a slice,
    that slice's prompt covers them, shrink-to-fit never cuts inside them, and growth and
    overlap are judged against them too."""
    from scipy import ndimage  # noqa: PLC0415

    settings = settings or PropagationSettings()
    if settings.window not in ("slice", "roi"):  # a CT preset name; unknown names say which exist
        from DTTLib.imaging.preprocess import resolve_window  # noqa: PLC0415

        resolve_window(settings.window)
    box = checked_box(box, image)
    array = np.asarray(image.array)
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array[box.slices()]).all():
        raise InputError("the box contains NaN or infinite voxels", "fix or mask the image first")
    nk, nj, ni = array.shape
    if min(nj, ni) < 2:
        raise InputError(f"slices of {ni}×{nj} pixels are too small to segment", "use a 3-D scan")
    roi = roi_for_box(image, box, settings)
    seed = (box.k0 + box.k1) // 2
    seed_region = array[seed, box.j0:box.j1 + 1, box.i0:box.i1 + 1]
    if float(seed_region.max()) == float(seed_region.min()):
        raise InputError(f"the box on slice k={seed} holds a uniform region (value {float(seed_region.min()):g})",
                         "draw the box around the lesion")
    inplane = np.zeros((nj, ni), dtype=bool)
    inplane[roi.j0:roi.j1 + 1, roi.i0:roi.i1 + 1] = True
    result = PropagationResult(np.zeros(array.shape, dtype=np.uint8), seed, roi)
    batch = settings.batch or (4 if str(getattr(segmenter, "device", "cpu")).startswith("cuda") else 1)
    embeddings: dict[int, SliceEmbedding] = {}
    total = roi.k1 - roi.k0 + 1
    done = 0

    def report() -> None:
        if progress is not None:
            progress(min(done, total), total)

    sigma_px = denoise_sigma_px(image.spacing, settings.denoise_mm)

    def prepared(k: int) -> np.ndarray:
        return model_input_slice(array[k], settings, sigma_px, inplane)

    def embedding_for(k: int, step: int) -> SliceEmbedding:
        if k not in embeddings:
            ks = [kk for kk in range(k, k + step * batch, step) if roi.k0 <= kk <= roi.k1 and kk not in embeddings]
            started = time.perf_counter()
            encoded = segmenter.encode_batch([prepared(kk) for kk in ks])
            elapsed = (time.perf_counter() - started) / len(ks)
            for kk, embedding in zip(ks, encoded):
                embeddings[kk] = embedding
                result.encode_s.append(elapsed)
        return embeddings[k]

    def decode(k: int, prompt: tuple[int, int, int, int], step: int) -> tuple[np.ndarray, float]:
        embedding = embedding_for(k, step)
        started = time.perf_counter()
        prediction = segmenter.decode(embedding, prompt)
        result.decode_s.append(time.perf_counter() - started)
        return np.asarray(prediction.mask, dtype=bool) & inplane, float(prediction.score)

    report()
    seed_prompt = (box.i0, box.j0, box.i1, box.j1)
    given = _given_outline(seed_mask, (nj, ni), seed, settings.min_area_px)
    if given is not None:  # the user's outline: encoded (its features judge the others), not decoded
        embedding_for(seed, 1)
        seed_mask, seed_score = given, float("nan")
    else:
        seed_mask, seed_score = decode(seed, seed_prompt, 1)
        seed_mask = _largest_component(_smooth(seed_mask), ndimage)
    seed_fits: list[str] = []
    margin = settings.prompt_margin_256 * max(nj, ni) / LITEMEDSAM_SIZE
    for _ in range(0 if given is not None else settings.refine_seed):  # shrink-to-fit: a loose box re-prompted with the mask's own
        if seed_mask.sum() < settings.min_area_px:
            break
        refined, change = _fit_box(seed_mask, seed_prompt, margin, roi, settings)
        if refined == seed_prompt or "grow" in change:
            break
        seed_fits.append(change)
        seed_prompt = refined
        candidate, candidate_score = decode(seed, seed_prompt, 1)
        seed_mask = _largest_component(_smooth(candidate), ndimage)
        seed_score = candidate_score
    done += 1
    report()
    if seed_mask.sum() < settings.min_area_px:
        raise InputError(f"the model found no lesion in the box on slice k={seed}",
                         "draw the box tightly around the lesion on the slice where it is largest")
    stats = _seed_stats(array[seed].astype(np.float64), seed_mask, ndimage)
    stats = _SeedStats(stats.median, stats.iqr, stats.contrast, region_feature(embeddings[seed], seed_mask))
    band = max(2, round(1.5 * max(nj, ni) / LITEMEDSAM_SIZE))  # ≈ 1.5 model pixels at full resolution
    edge = edge_threshold(array[seed], seed_mask, settings.edge_min_contrast, band) if settings.refine_edges else None
    result.mask[seed] = seed_mask
    result.decisions.append(SliceDecision(seed, True, "seed" if given is None else "seed (outline given)",
                                          seed_score, int(seed_mask.sum()), prompt=seed_prompt,
                                          refits=",".join(seed_fits)))

    for step in (+1, -1):
        previous = seed_mask
        k = seed + step
        while roi.k0 <= k <= roi.k1:
            if should_cancel is not None and should_cancel():
                result.cancelled = True
                break
            if edge is not None and not _lesion_side_under(previous, array[k], edge, band, settings.min_area_px):
                # nothing on this slice lies on the lesion's side of the seed's edge near the
                # previous mask, so any mask the model drew would be cut away: stop unencoded
                result.decisions.append(SliceDecision(k, False, "no lesion-like intensity under the previous "
                                                      "slice's mask (not encoded)"))
                done += 1
                report()
                break
            guided = guide is not None and bool(np.asarray(guide[k]).any())
            prompt = _prompt_box(previous | (np.asarray(guide[k], dtype=bool) if guided else False), margin, roi)
            mask, score = decode(k, prompt, step)
            fits: list[str] = []
            for _ in range(settings.refine):
                touching = decision_mask(mask, previous, ndimage)
                if touching.sum() < settings.min_area_px:
                    break
                if guided:  # never shrink inside the outline the user kept on this slice
                    touching = touching | np.asarray(guide[k], dtype=bool)
                refined, change = _fit_box(touching, prompt, margin, roi, settings)
                if refined == prompt:
                    break
                fits.append(change)
                prompt = refined
                mask, score = decode(k, prompt, step)
            if edge is not None:  # the seed's own edge threshold, before the slice is judged
                fitted = fit_to_edge(mask, array[k], edge, band) & inplane
                if not np.array_equal(fitted, mask):
                    fits.append("edges")
                    mask = fitted
            done += 1
            report()
            decision = _judge(k, mask, score, previous, array[k].astype(np.float64), stats, settings,
                              ndimage, embeddings[k], seed_area=int(seed_mask.sum()),
                              guide=np.asarray(guide[k], dtype=bool) if guided else None)
            if (settings.widen_to_seed and decision.accepted and not guided and decision.growth >= 1.0
                    and _reaches_box(mask, prompt, int(round(margin)) + 1)):
                wide_prompt = _prompt_box(previous | seed_mask, margin, roi)
                if wide_prompt != prompt:
                    wide, wide_score = decode(k, wide_prompt, step)
                    if edge is not None:
                        wide = fit_to_edge(wide, array[k], edge, band) & inplane
                    wide_decision = _judge(k, wide, wide_score, previous, array[k].astype(np.float64), stats,
                                           settings, ndimage, embeddings[k], seed_area=int(seed_mask.sum()),
                                           guide=seed_mask)
                    if (wide_decision.accepted and wide_decision.area > decision.area
                            and wide_decision.intensity_z <= decision.intensity_z + settings.widen_max_intensity_shift
                            and wide_decision.similarity >= decision.similarity - settings.widen_max_similarity_drop):
                        mask, score, prompt, decision = wide, wide_score, wide_prompt, wide_decision
                        fits.append("widened to the seed")
            decision.prompt = prompt
            decision.refits = ",".join(fits)
            result.decisions.append(decision)
            if not decision.accepted:
                break
            kept = _smooth(decision_mask(mask, previous, ndimage))
            result.mask[k] = kept
            previous = kept
            k += step
        if result.cancelled:
            break

    result.mask = _postprocess(result.mask, seed, seed_mask, roi, ndimage)
    if settings.refine_edges:
        for k in refine_edges(result.mask, array, band, settings.edge_min_contrast, settings.edge_max_change):
            decision = next((d for d in result.decisions if d.k == k), None)
            if decision is not None and "edges" not in decision.refits:
                decision.refits = ",".join(filter(None, (decision.refits, "edges")))
        outside = np.ones(result.mask.shape, dtype=bool)
        outside[roi.slices()] = False
        result.mask[outside] = 0  # the band may reach past the ROI rectangle
    if given is not None:
        result.mask[seed] = given  # post-processing and edges never change what the user drew
    result.decisions.sort(key=lambda d: d.k)
    done = total
    report()
    return result


def _reaches_box(mask: np.ndarray, prompt: tuple[int, int, int, int], reach: int) -> bool:
    """Whether the mask comes within ``reach`` pixels of a side of its prompt box. The model stops
    about a margin inside the box it is given, so a lesion that continues past the box looks like
    this; one that shrinks on every side does not, and needs no wider box."""
    if not mask.any():
        return False
    rows, columns = np.nonzero(mask)
    i0, j0, i1, j1 = prompt
    return bool(columns.min() - i0 <= reach or i1 - columns.max() <= reach
                or rows.min() - j0 <= reach or j1 - rows.max() <= reach)


def box_around_outline(outline: np.ndarray, k: int) -> VoxelBox:
    """The 2-D box (on slice ``k``) that re-seeds propagation from an outline on that slice."""
    rows, columns = np.nonzero(np.asarray(outline, dtype=bool))
    if rows.size == 0:
        raise InputError(f"the outline on slice k={k} is empty", "draw or keep the lesion on that slice first")
    return VoxelBox(int(columns.min()), int(rows.min()), k, int(columns.max()), int(rows.max()), k)


def _given_outline(seed_mask: np.ndarray | None, shape: tuple[int, int], k: int, min_area: int) -> np.ndarray | None:
    if seed_mask is None:
        return None
    outline = np.asarray(seed_mask)
    if outline.shape != shape:
        raise InputError(f"the outline is {outline.shape[1]}×{outline.shape[0]} pixels, the slice "
                         f"{shape[1]}×{shape[0]}", "give the outline on the image's own slice grid")
    outline = outline.astype(bool)
    if outline.sum() < min_area:
        raise InputError(f"the outline on slice k={k} has {int(outline.sum())} pixels",
                         f"draw at least {min_area} pixels of the lesion on that slice")
    return outline


# -- rules ------------------------------------------------------------------------------
def decision_mask(mask: np.ndarray, previous: np.ndarray, ndimage) -> np.ndarray:  # noqa: ANN001
    """Components of ``mask`` touching the previous slice's mask (dilated by one pixel)."""
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    touching = np.unique(labels[ndimage.binary_dilation(previous) & mask])
    return np.isin(labels, touching[touching > 0])


def _judge(k: int, mask: np.ndarray, score: float, previous: np.ndarray, values: np.ndarray,
           stats: _SeedStats, settings: PropagationSettings, ndimage,  # noqa: ANN001
           embedding: SliceEmbedding | None = None, seed_area: int = 0,
           guide: np.ndarray | None = None) -> SliceDecision:
    connected = decision_mask(mask, previous, ndimage)
    area = int(connected.sum())
    decision = SliceDecision(k, False, "", score, area)
    if area < settings.min_area_px:
        decision.reason = "no mask connected to the previous slice"
        return decision
    # with a guide (the lesion's earlier outline on this slice, which the user kept), growth and
    # overlap are judged against the larger of the two: re-seeding must not forbid what was accepted
    reference = previous if guide is None else (previous | guide)
    decision.growth = area / max(int(previous.sum()), int(0 if guide is None else guide.sum()), 1)
    decision.overlap = float((connected & reference).sum()) / area
    inside = values[connected]
    ring = ndimage.binary_dilation(connected, iterations=3) & ~connected
    median = float(np.median(inside))
    decision.intensity_z = abs(median - stats.median) / stats.iqr
    contrast = median - float(np.median(values[ring])) if ring.any() else 0.0
    decision.contrast = contrast / stats.contrast if stats.contrast else 1.0
    feature = region_feature(embedding, connected) if embedding is not None and stats.feature is not None else None
    if feature is not None:
        decision.similarity = float(feature @ stats.feature)
    if score < settings.min_score:
        decision.reason = f"model confidence {score:.2f} < {settings.min_score}"
    elif decision.overlap < settings.min_overlap:
        decision.reason = f"only {decision.overlap:.0%} of the mask lies on the previous slice's"
    elif decision.growth > settings.max_growth:
        decision.reason = f"mask grew {decision.growth:.1f}× from the previous slice"
    elif decision.intensity_z > settings.intensity_tolerance:
        decision.reason = f"intensity unlike the seed lesion ({decision.intensity_z:.1f} IQR off)"
    elif decision.similarity < settings.min_similarity:
        decision.reason = f"encoder features unlike the seed's (cosine {decision.similarity:.2f})"
    elif decision.contrast < settings.min_contrast:
        decision.reason = f"contrast to surroundings {decision.contrast:.2f}× the seed's"
    else:
        decision.accepted = True
        decision.reason = "continues the seed lesion"
    return decision


def _seed_stats(values: np.ndarray, seed_mask: np.ndarray, ndimage) -> _SeedStats:  # noqa: ANN001
    inside = values[seed_mask]
    ring = ndimage.binary_dilation(seed_mask, iterations=3) & ~seed_mask
    median = float(np.median(inside))
    q25, q75 = np.percentile(inside, [25, 75])
    contrast = median - float(np.median(values[ring])) if ring.any() else 0.0
    spread = max(float(q75 - q25), 0.05 * abs(contrast), 1e-6 * max(abs(median), 1.0))
    return _SeedStats(median, spread, contrast)


def _prompt_box(previous: np.ndarray, margin: float, roi: VoxelBox) -> tuple[int, int, int, int]:
    rows, columns = np.nonzero(previous)
    m = int(round(margin))
    return (max(roi.i0, int(columns.min()) - m), max(roi.j0, int(rows.min()) - m),
            min(roi.i1, int(columns.max()) + m), min(roi.j1, int(rows.max()) + m))


def _fit_box(mask: np.ndarray, prompt: tuple[int, int, int, int], margin: float, roi: VoxelBox,
             settings: PropagationSettings) -> tuple[tuple[int, int, int, int], str]:
    """The next prompt for a slice: the mask's tight box ± ``margin`` (shrink-to-fit), with every
    side the mask reaches (within one pixel of the prompt's edge) moved out by
    ``grow_fraction`` × the prompt's side instead (the lesion continues past the box).
    Clipped to the ROI rectangle."""
    rows, columns = np.nonzero(mask)
    m = int(round(margin))
    i0, j0, i1, j1 = prompt
    grow_i = max(m, math.ceil(settings.grow_fraction * (i1 - i0 + 1)))
    grow_j = max(m, math.ceil(settings.grow_fraction * (j1 - j0 + 1)))
    lo_i, lo_j, hi_i, hi_j = int(columns.min()), int(rows.min()), int(columns.max()), int(rows.max())
    if settings.grow_fraction <= 0:
        touches = (False, False, False, False)
    else:
        touches = (lo_i <= i0 + 1 and i0 > roi.i0, lo_j <= j0 + 1 and j0 > roi.j0,
                   hi_i >= i1 - 1 and i1 < roi.i1, hi_j >= j1 - 1 and j1 < roi.j1)
    box = (i0 - grow_i if touches[0] else lo_i - m, j0 - grow_j if touches[1] else lo_j - m,
           i1 + grow_i if touches[2] else hi_i + m, j1 + grow_j if touches[3] else hi_j + m)
    box = (max(roi.i0, box[0]), max(roi.j0, box[1]), min(roi.i1, box[2]), min(roi.j1, box[3]))
    grew = box[0] < i0 or box[1] < j0 or box[2] > i1 or box[3] > j1
    shrank = box[0] > i0 or box[1] > j0 or box[2] < i1 or box[3] < j1
    return box, "+".join(name for name, flag in (("grow", grew), ("shrink", shrank)) if flag)


def _largest_component(mask: np.ndarray, ndimage) -> np.ndarray:  # noqa: ANN001
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask.astype(bool)
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    return labels == int(np.argmax(sizes)) + 1


_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)


def _smooth(mask: np.ndarray) -> np.ndarray:
    """Fill holes, close and open with a 3×3 cross (opening skipped where it would empty)."""
    from scipy import ndimage  # noqa: PLC0415

    if not mask.any():
        return mask.astype(bool)
    closed = ndimage.binary_closing(mask, structure=_CROSS, border_value=0) | mask
    filled = ndimage.binary_fill_holes(closed)
    opened = ndimage.binary_opening(filled, structure=_CROSS)
    return opened if opened.sum() >= 0.5 * filled.sum() else filled


def _postprocess(mask: np.ndarray, seed: int, seed_mask: np.ndarray, roi: VoxelBox, ndimage) -> np.ndarray:  # noqa: ANN001
    clipped = np.zeros_like(mask)
    clipped[roi.slices()] = mask[roi.slices()]
    labels, count = ndimage.label(clipped)
    if count > 1:
        seed_labels = np.unique(labels[seed][seed_mask & (labels[seed] > 0)])
        clipped = np.isin(labels, seed_labels[seed_labels > 0]).astype(np.uint8)
    for k in range(roi.k0, roi.k1 + 1):
        if clipped[k].any():
            clipped[k] = ndimage.binary_fill_holes(clipped[k])
    return clipped.astype(np.uint8)


def refine_edges(mask: np.ndarray, array: np.ndarray, band: int = 2, min_contrast: float = 2.0,
                 max_change: float = 0.5) -> list[int]:
    """Move each slice's outline to the lesion's own intensity edge, in place; returns the slices changed.

    The model decodes at 256 px, so on a 512-px CT slice its outline is quantised to 2 pixels —
    a 7 mm node gains or loses a third of its volume that way. Where the lesion stands out
    from its surroundings (:func:`edge_threshold`), the slice's mask becomes the lesion-side
    pixels of the mask grown by ``band`` (:func:`fit_to_edge`) — the half-maximum rule of
    threshold CT volumetry, which also puts a blurred edge where the step was. The result keeps
    only components touching the mask's interior and is dropped if the area changes by more
    than ``max_change``. Heterogeneous lesions (tumours with necrosis or oedema inside the
    expert outline, as on the brain MR pair) are cut by it, so the modality rules keep it off
    for MR (``window_presets.json``).
    """
    from scipy import ndimage  # noqa: PLC0415

    changed = []
    for k in np.nonzero(mask.reshape(mask.shape[0], -1).any(axis=1))[0]:
        current = mask[k] > 0
        edge = edge_threshold(array[k], current, min_contrast, band)
        if edge is None:
            continue
        fitted = fit_to_edge(current, array[k], edge, band)
        labels, _count = ndimage.label(fitted)
        keep = np.unique(labels[_interior(current) & fitted])
        refined = np.isin(labels, keep[keep > 0])
        if not refined.any() or abs(refined.sum() / current.sum() - 1) > max_change or np.array_equal(refined, current):
            continue
        mask[k] = refined
        changed.append(int(k))
    return changed


def edge_threshold(values: np.ndarray, mask: np.ndarray, min_contrast: float = 2.0,
                   band: int = 2) -> tuple[float, float] | None:
    """(midpoint, sign) between the median inside ``mask`` (its interior) and in a 3-pixel ring
    ``band`` pixels outside it, or None when the two differ by less than ``min_contrast`` pooled robust noise SDs."""
    if not mask.any():
        return None
    window = _around(mask, band + 4)
    mask, values = mask[window], np.asarray(values[window], dtype=np.float64)
    interior = _interior(mask)
    # the ring starts ``band`` pixels out: a mask drawn up to that much too small must not
    # count the lesion's own edge as its surroundings
    outside_by = _distance_outside(mask)
    ring = (outside_by > band) & (outside_by <= band + 3)
    if not interior.any() or not ring.any():
        return None
    inside, outside = values[interior], values[ring]
    median_in, median_out = float(np.median(inside)), float(np.median(outside))
    noise = math.sqrt(0.5 * (_robust_sd(inside) ** 2 + _robust_sd(outside) ** 2))
    if abs(median_in - median_out) < min_contrast * max(noise, 1e-6 * max(abs(median_in), 1.0)):
        return None
    return 0.5 * (median_in + median_out), float(np.sign(median_in - median_out))


def fit_to_edge(mask: np.ndarray, values: np.ndarray, edge: tuple[float, float], band: int) -> np.ndarray:
    """The pixels of ``mask`` grown by ``band`` on the lesion's side of ``edge`` (lightly
    smoothed, holes filled); ``mask`` itself when fewer than 4 pixels remain."""
    from scipy import ndimage  # noqa: PLC0415

    if not mask.any():
        return mask
    window, near = _lesion_side_near(mask, values, edge, band)
    if near.sum() < 4:
        return mask
    fitted = np.zeros(mask.shape, dtype=bool)
    fitted[window] = ndimage.binary_fill_holes(near)
    return fitted


def _around(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    """The mask's bounding rectangle grown by ``margin`` (clipped to the slice). Edge work
    only looks that far from the mask, and on a 512² slice the distance transform and
    smoothing of the whole slice cost more than the decoder."""
    rows, columns = np.nonzero(mask)
    return (slice(max(int(rows.min()) - margin, 0), int(rows.max()) + margin + 1),
            slice(max(int(columns.min()) - margin, 0), int(columns.max()) + margin + 1))


def _lesion_side_near(mask: np.ndarray, values: np.ndarray, edge: tuple[float, float],
                      band: int) -> tuple[tuple[slice, slice], np.ndarray]:
    """(window, pixels of the window within ``band`` of ``mask`` on the lesion's side of the
    ``edge`` midpoint after light smoothing, σ 0.7 px). The window reaches 4 pixels past the
    band, beyond the filter's reach, so cropping changes no pixel used."""
    from scipy import ndimage  # noqa: PLC0415

    threshold, sign = edge
    window = _around(mask, band + 4)
    smoothed = ndimage.gaussian_filter(np.asarray(values[window], dtype=np.float64), 0.7)
    return window, (_distance_outside(mask[window]) <= band) & ((smoothed - threshold) * sign > 0)


def _distance_outside(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance in pixels from ``mask`` (0 inside): bands that are round, not diamonds."""
    from scipy import ndimage  # noqa: PLC0415

    return ndimage.distance_transform_edt(~mask.astype(bool))


def _lesion_side_under(previous: np.ndarray, values: np.ndarray, edge: tuple[float, float], band: int,
                       min_area: int) -> bool:
    """Whether a slice has lesion-side pixels (by ``edge``) within ``band`` of the previous
    slice's mask — at least ``min_area`` and a tenth of that mask."""
    _window, near = _lesion_side_near(previous, values, edge, band)
    return int(near.sum()) >= max(min_area, 0.1 * int(previous.sum()))


def _interior(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage  # noqa: PLC0415

    interior = ndimage.binary_erosion(mask)
    return interior if interior.sum() >= 4 else mask.astype(bool)


def _robust_sd(values: np.ndarray) -> float:
    return 1.4826 * float(np.median(np.abs(values - np.median(values))))


def region_feature(embedding: SliceEmbedding, mask: np.ndarray) -> np.ndarray | None:
    """Mean encoder feature under ``mask`` (unit length), for backends exposing a feature map.

    LiteMedSAM's embedding is (1, C, 64, 64) for the padded 256² input; the mask is mapped
    onto that grid by the same longest-side scaling. Other backends: ``None`` (rule skipped).
    """
    features = embedding.features
    if isinstance(features, tuple):
        features = features[0]
    shape = getattr(features, "shape", None)
    if shape is None or len(shape) != 4:
        return None
    grid = np.asarray(features.float().cpu().numpy() if hasattr(features, "float") else features)[0]
    channels, gh, gw = grid.shape
    rows, columns = mask.shape
    scale = max(rows, columns)
    jj, ii = np.nonzero(mask)
    if jj.size == 0:
        return None
    gj = np.minimum((jj + 0.5) * gh / scale, gh - 1).astype(int)
    gi = np.minimum((ii + 0.5) * gw / scale, gw - 1).astype(int)
    weights = np.zeros((gh, gw))
    np.add.at(weights, (gj, gi), 1.0)
    vector = np.tensordot(grid, weights, axes=([1, 2], [0, 1])) / weights.sum()
    norm = np.linalg.norm(vector)
    return vector / norm if norm else None
