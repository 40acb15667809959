"""Click-to-lesion time with and without preparing the slices while the box is drawn.

For each lesion (the shared brain MR pair with the expert label's box on its widest slice, and
the synthetic CT phantom's three baseline boxes) and each round:

* cold: empty embedding cache, time ``propagate_box`` (what a click costs without prefetching);
* warm: empty cache, ``prefetch_slices`` (the time the user spends drawing the box), then time
  the same ``propagate_box`` — and check the mask is identical to the cold one.

Prints per-lesion medians: cold and warm click-to-mask seconds, prefetch seconds, slices the run
used, how many of them it still had to encode, and prefetched slices the run never used.

    python benchmarks/segmentation_prefetch.py [--rounds 3] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from DTTLib.demo.phantom import make_phantom  # noqa: E402
from DTTLib.imaging.io import read_image  # noqa: E402
from DTTLib.segmentation.box import VoxelBox  # noqa: E402
from DTTLib.segmentation.litemedsam import LiteMedSAMSegmenter  # noqa: E402
from DTTLib.segmentation.prefetch import prefetch_slices  # noqa: E402
from DTTLib.segmentation.propagate import propagate_box, settings_for_scan  # noqa: E402


def lesions(data: Path, phantom_dir: Path):
    """(name, image, box, settings) for the brain pair and the phantom's baseline lesions."""
    for case in ("brain1", "brain2"):
        image = read_image(data / f"{case}_image.nrrd")
        label = read_image(data / f"{case}_label.nrrd").array > 0
        k = int(label.sum(axis=(1, 2)).argmax())
        jj, ii = np.nonzero(label[k])
        yield case, image, VoxelBox(int(ii.min()), int(jj.min()), k, int(ii.max()), int(jj.max()), k), \
            settings_for_scan(image.modality)
    if not (phantom_dir / "case.json").exists():
        make_phantom(phantom_dir)
    case = json.loads((phantom_dir / "case.json").read_text())
    image = read_image(phantom_dir / case["timepoints"][0]["path"])
    for lesion in case["lesions"]:
        yield f"phantom {lesion['id']}", image, VoxelBox(*lesion["box"]["ijk"]), \
            settings_for_scan(case.get("modality", ""), lesion["organ"])


def timed_run(image, box, segmenter, settings):
    hits = segmenter.cache_hits
    started = time.perf_counter()
    result = propagate_box(image, box, segmenter, settings)
    seconds = time.perf_counter() - started
    used = len(result.encode_s)  # one entry per slice the run asked the encoder for
    return result, seconds, used, used - (segmenter.cache_hits - hits)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "imaging"))
    parser.add_argument("--phantom-dir")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    segmenter = LiteMedSAMSegmenter(device="cpu", threads=args.threads)
    phantom_dir = Path(args.phantom_dir or tempfile.mkdtemp(prefix="dtt_phantom_"))
    rows = []
    for name, image, box, settings in lesions(Path(args.data), phantom_dir):
        cold, warm, pre, misses, wasted, used_n = [], [], [], [], [], 0
        for _ in range(args.rounds):
            segmenter.clear_cache()
            reference, seconds, used_n, _ = timed_run(image, box, segmenter, settings)
            cold.append(seconds)
            segmenter.clear_cache()
            prefetched = prefetch_slices(image, box, segmenter, settings)
            pre.append(prefetched.seconds)
            result, seconds, used, missed = timed_run(image, box, segmenter, settings)
            warm.append(seconds)
            misses.append(missed)
            visited = {d.k for d in result.decisions}
            wasted.append(len(set(prefetched.encoded) - visited))
            if not np.array_equal(result.mask, reference.mask):
                raise SystemExit(f"{name}: the mask after prefetching differs from the cold run's")
        row = {"lesion": name, "slices_used": used_n, "prefetched": len(prefetched.planned),
               "cold_s": round(float(np.median(cold)), 3), "warm_s": round(float(np.median(warm)), 3),
               "prefetch_s": round(float(np.median(pre)), 3), "still_encoded": int(np.median(misses)),
               "prefetched_unused": int(np.median(wasted)),
               "warm_over_cold": round(float(np.median(warm) / np.median(cold)), 3)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    machine = {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
               "encoder": segmenter.encoder_backend, "python": platform.python_version(),
               "rounds": args.rounds}
    print(json.dumps({"machine": machine}))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "lesions": rows}, indent=2))


if __name__ == "__main__":
    main()
