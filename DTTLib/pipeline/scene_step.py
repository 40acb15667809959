"""The run's Slicer scene: scans, lesion segments, RECIST lines, twin tables/charts, narrative.

Built headless on the real MRML classes and saved as one ``.mrb`` that opens in 3D Slicer.
Slice pictures for the report are rendered from this same scene, so what the report shows is
what Slicer shows.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from DTTLib.imaging.volume import ImageVolume
from DTTLib.measurement.diameters import LesionMeasurement
from DTTLib.twin.records import TwinState

#: Okabe–Ito colours (RGB 0–1) for lesions, in order of first appearance.
LESION_COLOURS = ((0.90, 0.62, 0.0), (0.34, 0.71, 0.91), (0.0, 0.62, 0.45), (0.94, 0.89, 0.26),
                  (0.0, 0.45, 0.70), (0.84, 0.37, 0.0), (0.80, 0.47, 0.65))


@dataclass
class TimepointNodes:
    volume: Any
    segmentation: Any
    study_item: int
    lines: dict[str, list[Any]] = field(default_factory=dict)


@dataclass
class RunScene:
    timepoints: dict[str, TimepointNodes]
    twin_nodes: dict[str, Any]
    narrative_node: Any


def build_scene(patient: str, timepoint_labels: list[str], days: list[float], images: dict[str, ImageVolume],
                masks: dict[tuple[str, str], np.ndarray], measurements: dict[tuple[str, str], LesionMeasurement],
                lesion_ids: list[str], state: TwinState, narrative_text: str, narrative_backend: str,
                proposals: tuple[dict[str, Any], list[Any]] = ({}, []),
                anatomy: dict[str, tuple[str, bool]] | None = None) -> RunScene:
    from DTTLib.mrml import get_runtime  # noqa: PLC0415
    from DTTLib.mrml.hierarchy import add_patient, add_timepoint, place_node  # noqa: PLC0415
    from DTTLib.mrml.lesions import write_lesion_anatomy  # noqa: PLC0415
    from DTTLib.mrml.measurements import store_measurement  # noqa: PLC0415
    from DTTLib.mrml.segmentations import add_segmentation_node, set_segment_mask  # noqa: PLC0415
    from DTTLib.mrml.texts import add_text_node  # noqa: PLC0415
    from DTTLib.mrml.twin_nodes import publish_twin  # noqa: PLC0415
    from DTTLib.mrml.volumes import add_volume_node  # noqa: PLC0415

    runtime = get_runtime()
    runtime.clear()
    patient_item = add_patient(patient, {"DTT.Source": "dtt run"})
    colours = {lesion: LESION_COLOURS[i % len(LESION_COLOURS)] for i, lesion in enumerate(lesion_ids)}
    nodes: dict[str, TimepointNodes] = {}
    for index, (label, day) in enumerate(zip(timepoint_labels, days)):
        study = add_timepoint(patient_item, index, day=day, name=f"{label} (day {day:g})")
        volume = add_volume_node(images[label], name=f"{label} scan (day {day:g})")
        _display_window(volume, images[label])
        segmentation = add_segmentation_node(volume, name=f"{label} lesions")
        entry = TimepointNodes(volume, segmentation, study)
        for lesion in lesion_ids:
            mask = masks.get((lesion, label))
            if mask is None:
                continue
            segment_id = set_segment_mask(segmentation, mask, f"{lesion} @ {label}", volume, color=colours[lesion],
                                          allow_empty=True)
            if anatomy and lesion in anatomy:  # what the main module reads for RECIST target selection
                write_lesion_anatomy(segmentation.GetSegmentation().GetSegment(segment_id), *anatomy[lesion])
            if (lesion, label) in measurements:
                stored = store_measurement(measurements[(lesion, label)], lesion, label, source="AI-suggested")
                # a fragmented lesion has one LD line per piece (each labelled with its piece's LD)
                entry.lines[lesion] = [n for n in (*stored.long_axis_nodes, stored.short_axis_node) if n is not None]
                if stored.short_axis_node is not None:  # one length label per lesion keeps pictures readable
                    stored.short_axis_node.GetDisplayNode().SetPropertiesLabelVisibility(False)
                for line in entry.lines[lesion]:
                    place_node(line, study)
        _add_open_proposals(segmentation, volume, label, *proposals)
        for node in (volume, segmentation):
            place_node(node, study)
        nodes[label] = entry
    twin_nodes = publish_twin(state)
    for node in twin_nodes.values():
        place_node(node, patient_item)
    narrative = add_text_node(narrative_text, f"{patient} narrative",
                              attributes={"DTT.NarrativeBackend": narrative_backend})
    place_node(narrative, patient_item)
    return RunScene(nodes, twin_nodes, narrative)


def _add_open_proposals(segmentation: Any, volume: Any, label: str, found: dict[str, Any], reviews: list[Any]) -> None:
    """Unconfirmed and reader-confirmed nnU-Net proposals as proposal segments (tagged, yellow),
    so the reader can review them in Slicer and accept them with DTT Segmentation. Proposals
    that prompted or overlap a lesion are already that lesion's segment."""
    open_ids = {r.proposal_id for r in reviews if r.timepoint == label and r.status in ("unconfirmed", "confirmed new")}
    if label not in found or not open_ids:
        return
    from DTTLib.segmentation.nnunet_scene import store_proposals  # noqa: PLC0415

    subset = copy.copy(found[label])
    subset.proposals = [p for p in found[label].proposals if p.proposal_id in open_ids]
    store_proposals(subset, volume, segmentation, label)


def _display_window(volume_node: Any, image: ImageVolume) -> None:
    """CT (values down to air) is shown in the soft-tissue window; MR keeps Slicer's auto window."""
    from DTTLib.imaging.preprocess import load_window_presets  # noqa: PLC0415

    if float(np.min(image.array)) <= -500:
        preset = load_window_presets()["soft_tissue"]
        display = volume_node.GetDisplayNode()
        display.AutoWindowLevelOff()
        display.SetWindowLevel(preset.width, preset.level)


def render_lesion_views(scene: RunScene, measurements: dict[tuple[str, str], LesionMeasurement],
                        out_dir: Path, size_px: int = 360) -> dict[tuple[str, str], Path]:
    """One axial picture per (lesion, timepoint): that timepoint's segments and lines only."""
    from DTTLib.mrml.render import SliceRenderer, SliceView  # noqa: PLC0415

    pictures: dict[tuple[str, str], Path] = {}
    with SliceRenderer((size_px, size_px), "Axial") as renderer:  # one view set up for all pictures
        for label, entry in scene.timepoints.items():
            _show_only(scene, label)
            display = entry.segmentation.GetDisplayNode()
            display.SetOpacity2DFill(0.25)
            display.SetOpacity2DOutline(1.0)
            for (lesion, tp), measurement in measurements.items():
                if tp != label:
                    continue
                start, end = (np.asarray(p) for p in measurement.long_axis_ras)
                centre = tuple((start + end) / 2)
                # the picture shows the largest piece's line: a fragmented lesion's LD is a sum over pieces
                main = measurement.pieces[0] if measurement.pieces else measurement
                fov = max(60.0, 3.0 * main.longest_diameter_mm)
                path = out_dir / f"{lesion}_{label}.png"
                renderer.render_png(SliceView(entry.volume, centre, "Axial", (size_px, size_px), fov), path)
                pictures[(lesion, label)] = path
    _show_only(scene, None)
    return pictures


def _show_only(scene: RunScene, label: str | None) -> None:
    for other, entry in scene.timepoints.items():
        visible = label is None or other == label
        entry.segmentation.GetDisplayNode().SetVisibility(visible)
        for lines in entry.lines.values():
            for line in lines:
                line.GetDisplayNode().SetVisibility(visible)
