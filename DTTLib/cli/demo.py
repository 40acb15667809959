"""``dtt demo``: the main job on bundled real data (what ``make demo`` runs)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the demo on the real brain MR pair")
    parser.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    parser.add_argument("--data", help="folder with brain{1,2}_{image,label}.nrrd "
                                       "(default: ../shared/data/imaging or $DTT_DEMO_DATA)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from DTTLib.demo.brain_pair import run_brain_pair_demo  # noqa: PLC0415

    start = time.perf_counter()
    result = run_brain_pair_demo(Path(args.out), Path(args.data) if args.data else None,
                                 progress=lambda message: print(f"… {message}", flush=True))
    print(f"\nScene bundle: {result.scene_path}  (open it in 3D Slicer: File → Add Data)")
    for t in result.timepoints:
        print(f"  {t.study}: volume '{t.volume_node}', segment '{t.segment}', "
              f"{t.label_voxels} voxels = {t.label_volume_mm3:,.0f} mm³ (expert label)")
    print(f"Reloaded and checked: {', '.join(result.reloaded_nodes)}")
    print(f"Done in {time.perf_counter() - start:.1f} s")
    return 0
