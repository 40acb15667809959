"""``dtt run CASE_DIR --out OUT_DIR``: the whole twin for one case folder."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="build the twin of a case folder (see docs/CASE_FORMAT.md)")
    parser.add_argument("case_dir", help="folder with case.json and one image file or DICOM folder per timepoint")
    parser.add_argument("--out", required=True, help="output folder (scene.mrb, twin.json, measurements.csv, report.html)")
    parser.add_argument("--force", action="store_true", help="recompute every step (ignore the cache)")
    parser.add_argument("--model", default="litemedsam", choices=("litemedsam",), help="segmentation model")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--db", help="store path or postgresql:// URL (default: OUT/store.sqlite)")
    parser.add_argument("--no-render", action="store_true", help="skip slice pictures (no OpenGL needed)")
    parser.add_argument("--proposals", metavar="nnunet:MODEL",
                        help="find lesions on every scan with a trained nnU-Net model (folder or catalog id): they "
                             "place the boxes of known lesions at follow-ups, the rest are listed for review "
                             "(overrides case.json 'proposals.model')")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from DTTLib.pipeline.run import RunOptions, run_case  # noqa: PLC0415
    from DTTLib.pipeline.summary_screen import print_summary  # noqa: PLC0415

    started = time.perf_counter()
    options = RunOptions(force=args.force, model=args.model, device=args.device, db=args.db,
                         render=not args.no_render, proposals=args.proposals)
    from DTTLib.cli.progress_display import TerminalProgress  # noqa: PLC0415

    display = TerminalProgress()
    try:
        result = run_case(args.case_dir, Path(args.out), options, progress=display)
    finally:
        display.close()
    print_summary(result, time.perf_counter() - started)
    return 0
