"""One-box 3-D LiteMedSAM segmentation vs the expert labels of the shared brain MR pair.

Box = the expert label's bounding box on its largest slice (K0 == K1, so propagation is
automatic), optionally jittered by ±2 px per side. Reports 3-D Dice, volume error, longest
diameter error, slices, and median per-slice encoder/decoder time — against the whole expert
label, and (``*_component``) against the label's 3-D connected component the box is drawn on:
brain1's label has a second focus, not connected to the first even diagonally, which a
one-box method that keeps the component containing the seed cannot reach by design.

    python benchmarks/segmentation_brain.py [--jitter 3] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from DTTLib.imaging.io import read_image  # noqa: E402
from DTTLib.segmentation.box import VoxelBox  # noqa: E402
from DTTLib.segmentation.litemedsam import LiteMedSAMSegmenter  # noqa: E402
from DTTLib.segmentation.propagate import propagate_box  # noqa: E402


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def seed_component(label: np.ndarray, k: int, box: np.ndarray) -> np.ndarray:
    """The label's 26-connected 3-D component with the most voxels inside the box on slice k."""
    components, _ = ndimage.label(label, ndimage.generate_binary_structure(3, 3))
    inside = components[k, box[1]:box[3] + 1, box[0]:box[2] + 1]
    counts = np.bincount(inside[inside > 0])
    return components == int(counts.argmax())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "imaging"))
    parser.add_argument("--jitter", type=int, default=0, help="extra runs with boxes jittered ±2 px")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    segmenter = LiteMedSAMSegmenter(device="cpu", threads=args.threads)
    rng = np.random.default_rng(0)
    rows = []
    for case in ("brain1", "brain2"):
        image = read_image(Path(args.data) / f"{case}_image.nrrd")
        label = read_image(Path(args.data) / f"{case}_label.nrrd").array > 0
        k = int(label.sum(axis=(1, 2)).argmax())
        jj, ii = np.nonzero(label[k])
        base = np.array([ii.min(), jj.min(), ii.max(), jj.max()])
        for run in range(1 + args.jitter):
            b = base + (rng.integers(-2, 3, 4) if run else 0)
            started = time.perf_counter()
            result = propagate_box(image, VoxelBox(int(b[0]), int(b[1]), k, int(b[2]), int(b[3]), k), segmenter)
            wall = time.perf_counter() - started
            mask = result.mask > 0
            row = {"case": case, "jitter": bool(run), "box": b.tolist(), "seed_slice": k,
                   "dice": dice(mask, label),
                   "volume_error": float(mask.sum() / label.sum() - 1),
                   "slices_pred": result.slices,
                   "slices_true": [int(s) for s in np.nonzero(label.any(axis=(1, 2)))[0][[0, -1]]],
                   "encoder_median_s": float(np.median(result.encode_s)),
                   "decoder_median_s": float(np.median(result.decode_s)),
                   "wall_s": wall}
            component = seed_component(label, k, base)
            row.update({"label_components": int(ndimage.label(label, np.ones((3, 3, 3)))[1]),
                        "dice_component": dice(mask, component),
                        "volume_error_component": float(mask.sum() / component.sum() - 1)})
            try:
                from DTTLib.measurement.diameters import measure_lesion

                predicted_ld = measure_lesion(mask.astype(np.uint8), image).longest_diameter_mm
                row["ld_error_mm"] = float(predicted_ld
                                           - measure_lesion(label.astype(np.uint8), image).longest_diameter_mm)
                row["ld_error_component_mm"] = float(
                    predicted_ld - measure_lesion(component.astype(np.uint8), image).longest_diameter_mm)
            except ImportError:
                pass
            rows.append(row)
            print(json.dumps(row))
    machine = {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
               "encoder": segmenter.encoder_backend,
               "python": platform.python_version()}
    print(json.dumps({"machine": machine}))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
