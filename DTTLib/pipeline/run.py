"""``dtt run``: a case folder in; scene.mrb, twin.json, measurements.csv and report.html out.

Steps: load → segment (given boxes, carried-over boxes) → measure + track → RECIST and growth
(the twin) → what-if → embeddings → narrative → store → scene, report. Segmentations and
registrations are cached by content hash in ``OUT_DIR/.cache``, so a re-run recomputes only
what changed. Everything is written to a staging folder first and swapped in at the end: a
failed run never overwrites a good previous output.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import platform
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from DTTLib import __version__
from DTTLib.errors import InputError
from DTTLib.pipeline.cache import StepCache, file_digest
from DTTLib.pipeline.case import CaseSpec, load_case
from DTTLib.pipeline.open_output import TWIN_SCHEMA
from DTTLib.pipeline.progress import Progress, ProgressEvent, ignore_progress

LOG_NAME = "dtt-run.log"
OUTPUT_FILES = ("scene.mrb", "twin.json", "measurements.csv", "report.html", "png", "masks", LOG_NAME)


@dataclass
class RunOptions:
    force: bool = False
    model: str = "litemedsam"
    device: str | None = None
    db: str | None = None  # store location; default OUT_DIR/store.sqlite
    render: bool = True
    proposals: str | None = None  # "nnunet:<folder or id>": find lesions on every scan (overrides case.json)


@dataclass
class RunResult:
    out_dir: Path
    case: CaseSpec
    twin: Any
    narrative: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    cache_hits: int = 0
    cache_misses: int = 0
    notes: list[str] = field(default_factory=list)
    store: Any = None
    proposals: list[Any] = field(default_factory=list)  # ProposalReview, when case.json asks for nnU-Net
    proposal_run: dict[str, Any] = field(default_factory=dict)

    @property
    def report(self) -> Path:
        return self.out_dir / "report.html"


def run_case(case_dir: str | Path, out_dir: str | Path, options: RunOptions | None = None,
             progress: Progress = ignore_progress) -> RunResult:
    options = options or RunOptions()
    case = load_case(case_dir)
    if options.proposals:
        from dataclasses import replace  # noqa: PLC0415

        from DTTLib.pipeline.case import ProposalSpec  # noqa: PLC0415

        from DTTLib.segmentation.nnunet_model import PREFIX  # noqa: PLC0415

        if not options.proposals.lower().startswith(PREFIX):
            raise InputError(f"--proposals '{options.proposals}' is not an nnU-Net model",
                             "give nnunet:<model folder or catalog id>")
        spec = case.proposals or ProposalSpec(options.proposals)
        case = replace(case, proposals=replace(spec, model=options.proposals))
    if len(case.timepoints) < 2:
        raise InputError(f"the case has {len(case.timepoints)} timepoint; response and growth need at least 2",
                         "add a follow-up scan to case.json (or use `dtt segment` for one scan)")
    out_dir = Path(out_dir).absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / f".staging-{uuid.uuid4().hex[:10]}"
    staging.mkdir()
    handler = _file_logger(staging / LOG_NAME)
    started = time.perf_counter()
    try:
        result = _run(case, out_dir, staging, options, progress)
        # wall clock: "load model" happens inside "segment" when the model is needed
        logging.getLogger("dtt.run").info("done in %.1f s", time.perf_counter() - started)
        handler.close()
        _swap_in(staging, out_dir)
        return result
    except BaseException:
        logging.getLogger("dtt.run").exception("run failed")
        handler.close()
        if (staging / LOG_NAME).exists():
            shutil.copy(staging / LOG_NAME, out_dir / "dtt-run.failed.log")
        raise
    finally:
        logging.getLogger("dtt.run").removeHandler(handler)
        shutil.rmtree(staging, ignore_errors=True)


def _run(case: CaseSpec, out_dir: Path, staging: Path, options: RunOptions, progress: Progress) -> RunResult:
    log = logging.getLogger("dtt.run")
    timings: dict[str, float] = {}
    cache = StepCache(out_dir / ".cache", force=options.force)

    def step(name: str, function: Callable[[], Any]) -> Any:
        progress(ProgressEvent(name))
        log.info("step %s", name)
        started = time.perf_counter()
        value = function()
        timings[name] = round(time.perf_counter() - started, 2)
        return value

    labels = [t.timepoint_id for t in case.timepoints]
    days = [t.day for t in case.timepoints]
    images, digests = step("load", lambda: _load(case))
    segmenter = _LazySegmenter(options, lambda: step("load model", lambda: _segmenter(options)))
    from DTTLib.pipeline.segment_step import segment_case  # noqa: PLC0415
    from DTTLib.tracking.registration import register  # noqa: PLC0415

    found, proposal_run = {}, {}
    if case.proposals is not None:
        from DTTLib.pipeline.proposal_step import find_case_proposals  # noqa: PLC0415

        found, proposal_run = step("find lesions (nnU-Net)", lambda: find_case_proposals(
            case, images, digests, cache, progress))
    segmentations, registrations = step("segment", lambda: segment_case(
        case, images, digests, segmenter, cache, register, progress, found))
    notes = [note for s in segmentations.values() for note in s.notes]
    reviews = _review_proposals(case, found, segmentations, notes)
    notes += [f"registration {moving} → {fixed}: {note}" for (fixed, moving), reg in registrations.items()
              for note in getattr(reg, "notes", [])]
    consecutive = [None] + [registrations.get((a, b)) for a, b in zip(labels, labels[1:])]
    confirmed_new = {r.timepoint for r in reviews if r.status == "confirmed new"}
    twin, measurements, inputs = step("measure, track, RECIST, growth, what-if",
                                      lambda: _twin(case, images, segmentations, consecutive, notes, confirmed_new))
    scene = None
    pictures: dict[tuple[str, str], Path] = {}
    masks = {key: s.mask for key, s in segmentations.items()}
    lesion_ids = [lesion.lesion_id for lesion in case.lesions]
    anatomy = {lesion.lesion_id: (lesion.organ, lesion.nodal) for lesion in case.lesions}
    from DTTLib.pipeline.scene_step import build_scene  # noqa: PLC0415

    png_dir = staging / "png"
    png_dir.mkdir()
    if options.render:
        scene = step("scene", lambda: build_scene(case.patient, labels, days, images, masks, measurements,
                                                  lesion_ids, twin, "", "pending", (found, reviews), anatomy))
        pictures = step("render", lambda: _render(scene, measurements, png_dir, notes))
    narrative, prompt_text = step("narrative", lambda: _narrative(twin, labels, pictures))
    mask_files = step("save masks", lambda: _save_masks(staging / "masks", images, segmentations))
    appearance = step("embeddings", lambda: {key: s.appearance for key, s in segmentations.items()
                                              if s.found and s.appearance is not None})
    if scene is None:
        scene = step("scene", lambda: build_scene(case.patient, labels, days, images, masks, measurements,
                                                  lesion_ids, twin, narrative["text"], narrative["backend"],
                                                  (found, reviews), anatomy))
    else:
        scene.narrative_node.SetText(narrative["text"])
        scene.narrative_node.SetAttribute("DTT.NarrativeBackend", narrative["backend"])
    from DTTLib.mrml.storage import save_scene_mrb  # noqa: PLC0415

    step("save scene", lambda: save_scene_mrb(staging / "scene.mrb"))
    result = RunResult(out_dir, case, twin, narrative, timings, cache.hits, cache.misses, notes,
                       proposals=reviews, proposal_run=proposal_run)
    from DTTLib.pipeline.store_step import store_run  # noqa: PLC0415

    result.store = step("store", lambda: store_run(
        options.db or str(out_dir / "store.sqlite"), out_dir / ".deid-key", twin, labels, days,
        {key: (segmentations[key].mask, images[key[1]].spacing, path, out_dir / "masks" / path.name)
         for key, path in mask_files.items()}, narrative, prompt_text, segmenter.name, appearance))
    step("write twin.json, measurements.csv, report", lambda: _write_outputs(
        staging, result, labels, segmentations, pictures, png_dir, digests, options))
    result.cache_hits, result.cache_misses = cache.hits, cache.misses
    return result


# -- steps ------------------------------------------------------------------------------
def _load(case: CaseSpec) -> tuple[dict[str, Any], dict[str, str]]:
    from DTTLib.imaging import read_image  # noqa: PLC0415

    images, digests = {}, {}
    for timepoint in case.timepoints:
        image = read_image(timepoint.path)
        image.name = timepoint.timepoint_id
        images[timepoint.timepoint_id] = image
        digests[timepoint.timepoint_id] = file_digest(timepoint.path)
    return images, digests


class _LazySegmenter:
    """The model, loaded on first use: a re-run whose segmentations all come from the cache
    needs only its name (part of the cache keys), not seconds of weights and compilation."""

    def __init__(self, options: RunOptions, load: Callable[[], Any]) -> None:
        if options.model != "litemedsam":
            _segmenter(options)  # the same clear error as before, before any work starts
        self.name = options.model
        self._load, self._real = load, None

    def __getattr__(self, attribute: str) -> Any:
        if self._real is None:
            self._real = self._load()
        return getattr(self._real, attribute)


def _segmenter(options: RunOptions) -> Any:
    if options.model == "litemedsam":
        from DTTLib.segmentation.litemedsam import LiteMedSAMSegmenter  # noqa: PLC0415

        return LiteMedSAMSegmenter(device=options.device)
    raise InputError(f"model '{options.model}' is not available for dtt run",
                     "use --model litemedsam (MedSAM ViT-B needs downloaded weights: see dtt segment --help)")


def _keep_reader_identities(case: CaseSpec, graph: Any, notes: list[str]) -> None:
    """Boxes the reader gave with the same lesion id at two timepoints declare one lesion: where
    tracking disagrees (e.g. a lesion that shrank far from its old centroid), the reader wins,
    recorded as a user override with its reason, and the disagreement is reported."""
    from DTTLib.tracking.records import Override  # noqa: PLC0415

    order = [t.timepoint_id for t in case.timepoints]
    for lesion in case.lesions:
        given = sorted({order.index(p.timepoint_id) for p in lesion.boxes})
        for earlier, later in zip(given, given[1:]):
            source, target = (earlier, lesion.lesion_id), (later, lesion.lesion_id)
            tracks = graph.track_of()
            if source not in tracks or target not in tracks or tracks[source] == tracks[target]:
                continue
            graph.apply_override(Override("reassign", [source], [target],
                                          f"the reader boxed {lesion.lesion_id} at {order[earlier]} and "
                                          f"{order[later]} (case.json)", user="case.json"))
            notes.append(f"tracking did not match {lesion.lesion_id} between {order[earlier]} and {order[later]} "
                         "(centroids > 20 mm apart after registration); kept the reader's lesion id — check it")


def _review_proposals(case: CaseSpec, found: dict[str, Any], segmentations: dict, notes: list[str]) -> list[Any]:
    if not found:
        return []
    from DTTLib.pipeline.proposal_step import proposal_notes, review_proposals  # noqa: PLC0415

    reviews = review_proposals(case, found, segmentations)
    notes.extend(proposal_notes(reviews))
    return reviews


def _twin(case: CaseSpec, images: dict[str, Any], segmentations: dict[tuple[str, str], Any],
          registrations: list[Any], notes: list[str], confirmed_new: set[str] = frozenset()
          ) -> tuple[Any, dict, Any]:
    from DTTLib.measurement.diameters import measure_lesion  # noqa: PLC0415
    from DTTLib.twin import build_twin  # noqa: PLC0415
    from DTTLib.twin.from_masks import TimepointMasks, inputs_from_masks  # noqa: PLC0415
    from DTTLib.twin.records import TherapyEntry  # noqa: PLC0415

    organs = {lesion.lesion_id: lesion.organ for lesion in case.lesions}
    nodal = {lesion.lesion_id for lesion in case.lesions if lesion.nodal}
    timepoints = []
    for timepoint in case.timepoints:
        masks = {lesion: s.mask for (lesion, label), s in segmentations.items() if label == timepoint.timepoint_id}
        timepoints.append(TimepointMasks(timepoint.day, images[timepoint.timepoint_id], masks, timepoint.non_target,
                                         organs, nodal, source=f"{timepoint.timepoint_id} ({timepoint.path.name})",
                                         non_target_further_increase=timepoint.non_target_further_increase))
    therapy = [TherapyEntry(t.start_day, None if not np.isfinite(t.end_day) else t.end_day, t.dose_level,
                            t.agent or "therapy") for t in case.therapy]
    inputs, graph = inputs_from_masks(case.patient, timepoints, therapy, registrations=registrations,
                                      immunotherapy=case.immunotherapy)
    _keep_reader_identities(case, graph, notes)
    inputs.identity = graph.to_dict()
    for info, timepoint in zip(inputs.timepoints, case.timepoints):
        # new lesions are the reader's: flagged in case.json, or an nnU-Net proposal they confirmed
        if timepoint.new_lesions or timepoint.timepoint_id in confirmed_new:
            info.new_lesions = True
    state, _engine = build_twin(inputs)
    measurements = {key: measure_lesion(s.mask, images[key[1]]) for key, s in segmentations.items() if s.found}
    return state, measurements, inputs


def _render(scene: Any, measurements: dict, png_dir: Path, notes: list[str]) -> dict[tuple[str, str], Path]:
    from DTTLib.errors import ResourceError  # noqa: PLC0415
    from DTTLib.pipeline.scene_step import render_lesion_views  # noqa: PLC0415

    try:
        return render_lesion_views(scene, measurements, png_dir)
    except ResourceError as error:
        notes.append(f"slice pictures skipped: {error.message}")
        return {}


def _narrative(twin: Any, labels: list[str], pictures: dict) -> tuple[dict[str, Any], str]:
    """The template narrative (the CPU default, DESIGN.md §4); MedGemma runs from DTT Narrative /
    dtt narrate. No per-lesion confidence is invented: a calibrated quality score is future work."""
    from DTTLib.narrative.facts import facts_from_dict  # noqa: PLC0415
    from DTTLib.narrative.service import narrate  # noqa: PLC0415
    from DTTLib.pipeline.summary import twin_summary  # noqa: PLC0415

    images = [str(p) for p in list(pictures.values())[:3]]
    summary = twin_summary(twin, labels, images)
    facts = facts_from_dict(summary)
    result = narrate(facts)
    narrative = {"text": result.text, "sections": result.sections, "backend": result.backend,
                 "label": result.label, "grounding": result.grounding, "flags": list(result.flags),
                 "facts": summary}
    return narrative, json.dumps(summary, sort_keys=True)


def _save_masks(folder: Path, images: dict[str, Any], segmentations: dict) -> dict[tuple[str, str], Path]:
    from DTTLib.imaging.io import write_image  # noqa: PLC0415

    folder.mkdir()
    out = {}
    for (lesion, label), s in segmentations.items():
        path = folder / f"{lesion}_{label}.nrrd"
        write_image(images[label].with_array(s.mask.astype(np.uint8)), path)
        out[(lesion, label)] = path
    return out


def _write_outputs(staging: Path, result: RunResult, labels: list[str], segmentations: dict,
                   pictures: dict, png_dir: Path, digests: dict[str, str], options: RunOptions) -> None:
    from DTTLib.pipeline.report_step import build_report  # noqa: PLC0415

    twin = result.twin
    with open(staging / "measurements.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["lesion", "timepoint", "day", "ld_mm", "sa_mm", "volume_mm3", "role", "box_source", "source"])
        for row in twin.lesion_table:
            label = labels[int(row["timepoint"])]
            seg = segmentations.get((row["lesion"], label))
            writer.writerow([row["lesion"], label, row["day"], row["ld_mm"], row["sa_mm"], row["volume_mm3"],
                             row["role"], seg.box_source if seg else "", row["source"]])
    document = {
        "schema": TWIN_SCHEMA,
        "generated_by": {"dtt": __version__, "python": platform.python_version(), "model": options.model,
                         "narrative_backend": result.narrative["backend"]},
        "case": {"patient": result.case.patient, "timepoints": [
            {"id": t.timepoint_id, "day": t.day, "file": t.path.name, "sha256": digests[t.timepoint_id]}
            for t in result.case.timepoints]},
        "segmentations": [{"lesion": lesion, "timepoint": label, "box_ijk": list(s.box.__dict__.values()),
                           **({"boxes_ijk": [list(b.__dict__.values()) for b in s.boxes]} if s.boxes else {}),
                           "box_source": s.box_source, "found": s.found, "voxels": int(s.mask.sum()),
                           "window": s.window, "denoise_mm": s.denoise_mm, "outline": s.outline,
                           "proposal": s.proposal or None,
                           "notes": s.notes} for (lesion, label), s in segmentations.items()],
        "twin": twin.to_dict(),
        "narrative": {k: v for k, v in result.narrative.items() if k != "facts"},
        "proposals": None if not result.proposal_run else {
            **result.proposal_run, "items": [r.to_dict() for r in result.proposals]},
        "store": None if result.store is None else {"location": result.store.location, "records": result.store.counts},
        "timings_s": result.timings,
        "notes": result.notes,
    }
    (staging / "twin.json").write_text(json.dumps(document, indent=1, allow_nan=False, default=_json_default))
    subtitle = (f"{len(labels)} timepoints, {len(result.case.lesions)} lesion(s) prompted; segmentation "
                f"{options.model}; narrative {result.narrative['backend']}; dtt {__version__}")
    build_report(twin, labels, pictures, result.narrative, result.notes, png_dir, staging / "report.html", subtitle,
                 result.proposals)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


# -- output handling ---------------------------------------------------------------------
def _file_logger(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("dtt.run")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return handler


def _swap_in(staging: Path, out_dir: Path) -> None:
    """Replace the previous outputs by the new ones (each a rename on the same file system)."""
    trash = out_dir / f".previous-{uuid.uuid4().hex[:10]}"
    trash.mkdir()
    try:
        for name in OUTPUT_FILES:
            new, old = staging / name, out_dir / name
            if old.exists():
                os.replace(old, trash / name)
            if new.exists():
                os.replace(new, old)
        failed = out_dir / "dtt-run.failed.log"
        if failed.exists():
            failed.unlink()
    finally:
        shutil.rmtree(trash, ignore_errors=True)
