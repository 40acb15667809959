"""``dtt env``: the detected hardware, the chosen profile and precision, and why."""

from __future__ import annotations

import argparse

from DTTLib.cli.output import print_json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("env", help="show hardware, profile and precision (and why)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--profile", help="ask for a named profile (also $DTT_PROFILE)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from DTTLib.hardware import choose_profile, detect_hardware, env_report  # noqa: PLC0415
    from DTTLib.hardware.report import env_report_lines  # noqa: PLC0415

    info = detect_hardware()
    report = env_report(info, choose_profile(info, args.profile))
    if args.json:
        print_json(report)
    else:
        print("\n".join(env_report_lines(report)))
    return 0
