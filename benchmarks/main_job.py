#!/usr/bin/env python3
"""Main-job benchmark: `dtt run` on the synthetic CT phantom, as a user runs it.

    .venv/bin/python benchmarks/main_job.py [--runs 3] [--case-dir DIR] [--json out.json]

Each run is a fresh `dtt run` process into an empty output folder (interpreter start, model
load, every segmentation and registration computed); then one re-run into the last folder
(everything from the cache). Prints the median wall time and per-step medians, and the ratio
to issue 7's target (a 5-timepoint case in ≤ 60 s on CPU; the phantom has 6 timepoints).
The encoder's compiled graphs are assumed cached (run once before measuring).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from DTTLib.demo.phantom import make_phantom  # noqa: E402

TARGET_S = 60.0


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def one_run(case_dir: Path, out_dir: Path) -> dict:
    dtt = Path(sys.executable).with_name("dtt")
    command = [str(dtt)] if dtt.exists() else [sys.executable, "-m", "DTTLib.cli.main"]
    started = time.perf_counter()
    completed = subprocess.run([*command, "run", str(case_dir), "--out", str(out_dir)],
                               capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"dtt run failed ({completed.returncode}): {completed.stderr.strip()[-500:]}")
    timings = json.loads((out_dir / "twin.json").read_text())["timings_s"]
    return {"wall_s": round(wall, 2), "steps_s": timings}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--case-dir")
    parser.add_argument("--json")
    args = parser.parse_args()
    case_dir = Path(args.case_dir or tempfile.mkdtemp(prefix="dtt_phantom_"))
    if not (case_dir / "case.json").exists():
        make_phantom(case_dir)
    work = Path(tempfile.mkdtemp(prefix="dtt_mainjob_"))
    load_before = os.getloadavg()
    runs = [one_run(case_dir, work / f"run{i}") for i in range(args.runs)]
    cached = one_run(case_dir, work / f"run{args.runs - 1}")
    steps = sorted({name for run in runs for name in run["steps_s"]})
    summary = {
        "machine": f"{cpu_name()}, {os.cpu_count()} logical CPUs",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "runs": len(runs),
        "wall_s": [run["wall_s"] for run in runs],
        "wall_median_s": round(statistics.median(run["wall_s"] for run in runs), 2),
        "steps_median_s": {name: round(statistics.median(run["steps_s"].get(name, 0.0) for run in runs), 2)
                           for name in steps},
        "cached_rerun_wall_s": cached["wall_s"],
    }
    summary["ratio_to_60s_target"] = round(summary["wall_median_s"] / TARGET_S, 3)
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "runs": runs, "cached_rerun": cached}, indent=2))


if __name__ == "__main__":
    main()
