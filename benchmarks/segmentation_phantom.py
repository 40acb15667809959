"""One-box LiteMedSAM on the synthetic CT phantom, with the baseline boxes carried to every scan.

``make_phantom`` draws each lesion's box on the baseline scan (widest axial slice, 3 mm margin).
Here that same box is used on every follow-up scan without registration, as a carried box is:
lesions shrink under therapy (and the body shifts ≤ 3 mm), so on later scans the box is loose —
this measures robustness to a loose box. Dice and volume error vs ``truth/*_labels.nrrd``.

    python benchmarks/segmentation_phantom.py [--case-dir /tmp/ph] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from DTTLib.demo.phantom import make_phantom  # noqa: E402
from DTTLib.imaging.io import read_image  # noqa: E402
from DTTLib.segmentation.box import VoxelBox  # noqa: E402
from DTTLib.segmentation.litemedsam import LiteMedSAMSegmenter  # noqa: E402
from DTTLib.imaging.preprocess import segmentation_edge_refinement  # noqa: E402
from DTTLib.segmentation.propagate import propagate_box, settings_for_scan  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case-dir")
    parser.add_argument("--json")
    parser.add_argument("--refine-edges", choices=("auto", "on", "off"), default="auto",
                        help="auto: the modality rule dtt run uses (on for this CT phantom)")
    args = parser.parse_args()
    case_dir = Path(args.case_dir or tempfile.mkdtemp(prefix="dtt_phantom_"))
    if not (case_dir / "case.json").exists():
        make_phantom(case_dir)
    case = json.loads((case_dir / "case.json").read_text())
    segmenter = LiteMedSAMSegmenter(device="cpu")
    modality = case.get("modality", "")
    edges = segmentation_edge_refinement(modality) if args.refine_edges == "auto" else args.refine_edges == "on"
    rows = []
    for timepoint in case["timepoints"]:
        image = read_image(case_dir / timepoint["path"])
        labels = read_image(case_dir / "truth" / timepoint["path"].replace(".nrrd", "_labels.nrrd")).array
        for number, lesion in enumerate(case["lesions"], start=1):
            truth = labels == number
            settings = settings_for_scan(modality, lesion["organ"], edges)
            result = propagate_box(image, VoxelBox(*lesion["box"]["ijk"]), segmenter, settings)
            mask = result.mask > 0
            row = {"timepoint": timepoint["id"], "lesion": lesion["id"], "truth_voxels": int(truth.sum()),
                   "dice": round(float(2 * (mask & truth).sum() / max(mask.sum() + truth.sum(), 1)), 3),
                   "volume_error": round(float(mask.sum() / max(truth.sum(), 1) - 1), 3),
                   "seed_refits": result.decisions[[d.k for d in result.decisions].index(result.seed_slice)].refits}
            rows.append(row)
            print(json.dumps(row))
    summary = {"encoder": segmenter.encoder_backend, "refine_edges": edges,
               "mean_dice_baseline_scan": round(float(np.mean([r["dice"] for r in rows if r["timepoint"] == "t0"])), 3),
               "mean_dice_all": round(float(np.mean([r["dice"] for r in rows])), 3)}
    print(json.dumps(summary))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
