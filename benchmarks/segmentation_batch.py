"""`dtt segment --batch` against a shell loop of `dtt segment`, same lesions, same masks.

Lesions: each 3-D piece of the shared brain pair's expert labels (brain1's two, brain2's one),
boxed on its widest slice, listed ``--copies`` times under different names (a researcher's list of
many lesions). The loop starts one process per lesion — Python, the model and its compiled encoder
load every time; the batch loads them once. Prints wall times, the ratio, and checks that every
mask is identical between the two.

    python benchmarks/segmentation_batch.py [--copies 1] [--threads 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from DTTLib.imaging.io import read_image  # noqa: E402


def lesion_rows(data: Path, copies: int) -> list[tuple[str, str, str]]:
    rows = []
    for case in ("brain1", "brain2"):
        label = read_image(data / f"{case}_label.nrrd").array > 0
        pieces, count = ndimage.label(label, np.ones((3, 3, 3)))
        for piece in range(1, count + 1):
            mask = pieces == piece
            k = int(mask.sum(axis=(1, 2)).argmax())
            jj, ii = np.nonzero(mask[k])
            box = f"{ii.min()},{jj.min()},{k},{ii.max()},{jj.max()},{k}"
            rows += [(str(data / f"{case}_image.nrrd"), box, f"{case}p{piece}c{copy}") for copy in range(copies)]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "imaging"))
    parser.add_argument("--copies", type=int, default=1,
                        help="list each lesion this many times (copies reuse cached slices: not independent work)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    env = {**os.environ, "DTT_NUM_THREADS": str(args.threads)}
    dtt = [sys.executable, "-m", "DTTLib.cli.main", "segment"]
    rows = lesion_rows(Path(args.data), args.copies)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        listed = work / "list.csv"
        with listed.open("w", newline="") as handle:
            csv.writer(handle).writerows([("image", "box", "lesion"), *rows])
        started = time.perf_counter()
        subprocess.run([*dtt, "--batch", str(listed), "--out-dir", str(work / "batch")], check=True, env=env,
                       cwd=ROOT, capture_output=True)
        batch_s = time.perf_counter() - started
        started = time.perf_counter()
        for image, box, lesion in rows:
            subprocess.run([*dtt, image, "--box", box, "--out", str(work / f"{lesion}.nii.gz")], check=True,
                           env=env, cwd=ROOT, capture_output=True)
        loop_s = time.perf_counter() - started
        identical = all(np.array_equal(read_image(work / f"{lesion}.nii.gz").array,
                                       read_image(work / "batch" / f"{Path(image).name[:-5]}_{lesion}.nii.gz").array)
                        for image, _, lesion in rows)
    print(json.dumps({"lesions": len(rows), "loop_s": round(loop_s, 1), "batch_s": round(batch_s, 1),
                      "batch_vs_loop": round(batch_s / loop_s, 2), "masks_identical": identical,
                      "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                                  "threads": args.threads}}))


if __name__ == "__main__":
    main()
