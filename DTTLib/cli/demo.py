"""``dtt demo``: the main job on real and synthetic data (what ``make demo`` runs).

Two cases are built in ``OUT/cases`` and run with ``dtt run``: the real brain MR pair from
``../shared/data/imaging`` (one box per scan) and a deterministic synthetic CT phantom with
six timepoints whose lesions grow and respond to a therapy log by a known model.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

CASES = ("brain", "phantom")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the twin on the brain MR pair and the synthetic phantom")
    parser.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    parser.add_argument("--data", help="folder with brain{1,2}_{image,label}.nrrd "
                                       "(default: ../shared/data/imaging or $DTT_DEMO_DATA)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {', '.join(CASES)}")
    parser.add_argument("--force", action="store_true", help="recompute every step (ignore the cache)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from DTTLib.cli.progress_display import TerminalProgress  # noqa: PLC0415
    from DTTLib.demo.cases import brain_pair_case, default_data_dir  # noqa: PLC0415
    from DTTLib.demo.phantom import make_phantom  # noqa: PLC0415
    from DTTLib.errors import InputError  # noqa: PLC0415
    from DTTLib.pipeline.run import RunOptions, run_case  # noqa: PLC0415
    from DTTLib.pipeline.summary_screen import summary_lines  # noqa: PLC0415

    wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(wanted) - set(CASES))
    if unknown or not wanted:
        raise InputError(f"unknown demo case(s) {unknown}", f"choose from {', '.join(CASES)}")
    out = Path(args.out)
    started = time.perf_counter()
    reports = []
    for name in wanted:
        case_dir = out / "cases" / name
        if name == "brain":
            brain_pair_case(Path(args.data) if args.data else default_data_dir(), case_dir)
        else:
            make_phantom(case_dir)
        print(f"\n== {name}: {case_dir}", flush=True)
        case_started = time.perf_counter()
        display = TerminalProgress()
        try:
            result = run_case(case_dir, out / name, RunOptions(force=args.force), progress=display)
        finally:
            display.close()
        print("\n".join(summary_lines(result, time.perf_counter() - case_started)))
        reports.append(result.report)
    print(f"\nDemo finished in {time.perf_counter() - started:.0f} s. Reports:")
    for report in reports:
        print(f"  {report.resolve()}")
    return 0
