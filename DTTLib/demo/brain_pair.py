"""Two real MR timepoints of one patient → a Slicer scene bundle that reopens intact.

Uses the brain MR pair with expert tumour labels (pyradiomics test data, see
shared/data/README.md). Each timepoint becomes a study under one patient, its scan a
volume, its expert label a segment with tumour terminology, and the label volumes a table.
The bundle is then re-read into a cleared scene and checked, so a written ``.mrb`` is known
to open.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from DTTLib.errors import GeometryError, InputError

CASES = (("brain1", "Timepoint 1"), ("brain2", "Timepoint 2"))
PATIENT_NAME = "MRBrainTumor (pyradiomics test case)"
SEGMENT_COLOR = (0.95, 0.35, 0.25)

Progress = Callable[[str], None]


@dataclass
class TimepointSummary:
    index: int
    study: str
    volume_node: str
    segment: str
    label_voxels: int
    voxel_volume_mm3: float
    label_volume_mm3: float


@dataclass
class DemoResult:
    scene_path: Path
    summary_path: Path
    timepoints: list[TimepointSummary] = field(default_factory=list)
    reloaded_nodes: list[str] = field(default_factory=list)


def default_data_dir() -> Path:
    """$DTT_DEMO_DATA, else ``../shared/data/imaging`` beside the source checkout."""
    if os.environ.get("DTT_DEMO_DATA"):
        return Path(os.environ["DTT_DEMO_DATA"])
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "imaging"


def run_brain_pair_demo(out_dir: Path, data_dir: Path | None = None,
                        progress: Progress = lambda message: None) -> DemoResult:
    from DTTLib.imaging.io import read_image  # noqa: PLC0415
    from DTTLib.mrml import get_runtime  # noqa: PLC0415
    from DTTLib.mrml.hierarchy import add_patient, add_timepoint, describe, place_node  # noqa: PLC0415
    from DTTLib.mrml.segmentations import add_segmentation_node, get_segment_mask, set_segment_mask  # noqa: PLC0415
    from DTTLib.mrml.storage import load_scene_mrb, save_scene_mrb  # noqa: PLC0415
    from DTTLib.mrml.tables import add_table_node  # noqa: PLC0415
    from DTTLib.mrml.volumes import add_volume_node  # noqa: PLC0415

    data_dir = Path(data_dir) if data_dir else default_data_dir()
    missing = [f"{case}_{kind}.nrrd" for case, _ in CASES for kind in ("image", "label")
               if not (data_dir / f"{case}_{kind}.nrrd").exists()]
    if missing:
        raise InputError(f"demo data not found in '{data_dir}' (missing {', '.join(missing)})",
                         "pass --data pointing at shared/data/imaging or set DTT_DEMO_DATA")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    runtime = get_runtime()
    runtime.clear()
    patient = add_patient(PATIENT_NAME, {"DTT.Source": "pyradiomics data/ (BSD-3)"})
    result = DemoResult(scene_path=out_dir / "scene.mrb", summary_path=out_dir / "demo_summary.json")
    rows = []
    for index, (case, study_name) in enumerate(CASES):
        progress(f"loading {case}")
        image = read_image(data_dir / f"{case}_image.nrrd")
        label = read_image(data_dir / f"{case}_label.nrrd")
        if not image.same_grid(label):
            raise GeometryError(f"{case}: label and image grids differ",
                                "resample the label onto the image grid")
        study = add_timepoint(patient, index, name=f"{study_name} ({case})")
        volume_node = add_volume_node(image, name=f"{case} MR")
        segmentation = add_segmentation_node(volume_node, name=f"{case} lesions")
        segment_name = f"Tumor @ {study_name}"
        set_segment_mask(segmentation, label.array > 0, segment_name, volume_node, color=SEGMENT_COLOR)
        for node in (volume_node, segmentation):
            place_node(node, study)
        voxels = int(np.count_nonzero(label.array))
        voxel_mm3 = float(np.prod(image.spacing))
        summary = TimepointSummary(index, study_name, volume_node.GetName(), segment_name,
                                   voxels, voxel_mm3, voxels * voxel_mm3)
        result.timepoints.append(summary)
        rows.append({"timepoint": index, "study": study_name, "segment": segment_name,
                     "source": "expert label", "voxels": voxels,
                     "volume_mm3": round(summary.label_volume_mm3, 1)})
    add_table_node(rows, "Lesion volumes (expert labels)")

    progress("writing scene bundle")
    save_scene_mrb(result.scene_path)

    progress("re-reading the bundle to check it")
    runtime.clear()
    load_scene_mrb(result.scene_path)
    scene = runtime.scene
    for summary in result.timepoints:
        volume_node = scene.GetFirstNodeByName(summary.volume_node)
        segmentation = scene.GetFirstNodeByName(f"{CASES[summary.index][0]} lesions")
        if volume_node is None or segmentation is None:
            raise InputError(f"the written bundle lacks timepoint {summary.index}",
                             "this is a bug; please report it with the output folder")
        mask = get_segment_mask(segmentation, summary.segment, volume_node)
        if int(mask.sum()) != summary.label_voxels:
            raise InputError(f"segment '{summary.segment}' changed on reload "
                             f"({int(mask.sum())} vs {summary.label_voxels} voxels)",
                             "this is a bug; please report it with the output folder")
        result.reloaded_nodes += [volume_node.GetName(), segmentation.GetName()]
    tree = describe()
    studies = [study.name for patient_view in tree for study in patient_view.studies]
    result.summary_path.write_text(json.dumps({
        "scene": result.scene_path.name,
        "patient": PATIENT_NAME,
        "studies": studies,
        "timepoints": [asdict(t) for t in result.timepoints],
        "data": str(data_dir),
    }, indent=2))
    return result
