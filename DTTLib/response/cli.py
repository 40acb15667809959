"""``dtt recist CASE.json [--json]``: the response engine on the command line.

The lead's top-level parser registers the sub-command with :func:`add_recist_parser`;
:func:`recist_case_from_json` is the same evaluation as a plain dict for other callers
(Slicer module, tests). Bad input exits with code 2 and one line, never a stack trace.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any, TextIO

from DTTLib.errors import InputError
from DTTLib.response.display import further_increase_text, warning_lines
from DTTLib.response.engine import CaseResult, TimepointResult, evaluate_case
from DTTLib.response.parse import case_from_json
from DTTLib.response.rules import IRECIST_REFERENCE, RECIST_REFERENCE, RECIST_UPDATE_REFERENCE
from DTTLib.response.targets import LesionDecision
from DTTLib.response.volumetric import VOLUME_PD_PCT, VOLUME_PR_PCT

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _day(day: float | None) -> float | int | None:
    return int(day) if day is not None and float(day).is_integer() else day


def _lesion_dict(d: LesionDecision) -> dict[str, Any]:
    return {"id": d.id, "organ": d.organ, "nodal": d.nodal, "role": d.role,
            "measure": d.measure, "baseline_mm": d.size_mm, "reason": d.reason}


def _timepoint_dict(t: TimepointResult) -> dict[str, Any]:
    vol = None
    if t.volumetric is not None:
        vol = asdict(t.volumetric)
        for key in ("total_volume_mm3", "change_from_baseline_pct", "change_from_nadir_pct"):
            vol[key] = _r(vol[key], 3)
    return {
        "day": _day(t.day), "is_baseline": t.is_baseline,
        "sod_mm": _r(t.sod_mm), "sod_evaluable_mm": _r(t.sod_evaluable_mm),
        "nadir_mm": _r(t.nadir_mm),
        "change_from_baseline_pct": _r(t.change_from_baseline_pct),
        "change_from_nadir_pct": _r(t.change_from_nadir_pct),
        "target_response": t.target_response, "target_reason": t.target_reason,
        "non_target": t.non_target, "non_target_further_increase": t.non_target_further_increase,
        "new_lesions": t.new_lesions, "recist_overall": t.recist_overall, "overall": t.overall,
        "overall_reason": t.overall_reason,
        "new_lesion_target_sum_mm": _r(t.new_lesion_target_sum_mm),
        "volumetric": vol,
    }


def result_to_dict(result: CaseResult) -> dict[str, Any]:
    """The JSON-ready form of a :class:`CaseResult` (schema in the module docs of the report)."""
    case = result.case
    return {
        "criteria": result.criteria,
        "settings": {"immunotherapy": case.immunotherapy,
                     "confirmation_required": case.confirmation_required,
                     "min_sd_days": case.min_sd_days,
                     "slice_thickness_mm": case.slice_thickness_mm},
        "baseline_sod_mm": _r(result.baseline_sod_mm),
        "best_overall_response": result.best.category,
        "best_overall_response_detail": {"day": _day(result.best.day),
                                         "confirmed": result.best.confirmed,
                                         "reason": result.best.reason},
        "targets": [_lesion_dict(d) for d in result.selection.targets],
        "lesions": [_lesion_dict(d) for d in result.selection.decisions],
        "new_lesion_targets": [_lesion_dict(d) for d in result.new_lesion_targets],
        "timepoints": [_timepoint_dict(t) for t in result.timepoints],
        "volumetric_thresholds": {"pd_volume_change_pct": round(VOLUME_PD_PCT, 3),
                                  "pr_volume_change_pct": round(VOLUME_PR_PCT, 3),
                                  "label": "supplementary, not RECIST"},
        "warnings": list(result.warnings),
        "references": [RECIST_REFERENCE, RECIST_UPDATE_REFERENCE]
                      + ([IRECIST_REFERENCE] if case.immunotherapy else []),
    }


def recist_case_from_json(obj: Any) -> dict[str, Any]:
    """Evaluate a decoded case JSON object; raises :class:`InputError` on bad input."""
    return result_to_dict(evaluate_case(case_from_json(obj)))


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def format_table(out: dict[str, Any]) -> str:
    """Human-readable summary: one row per timepoint, then BOR with the engine's warnings right
    under it (they bear on the response), then the targets. Under iRECIST a "Further incr."
    column shows the reader's non-target further-increase call (yes / no / not assessed)."""
    lines = [f"{out['criteria']} response assessment", ""]
    irecist = bool(out["settings"]["immunotherapy"])
    header = ("Day", "SOD mm", "vs base %", "vs nadir %", "Target", "Non-target",
              *(("Further incr.",) if irecist else ()), "New", "Overall")
    rows = [header]
    for t in out["timepoints"]:
        further = (further_increase_text(t) or "-",) if irecist else ()
        rows.append((
            _fmt(t["day"], "g"), _fmt(t["sod_mm"]), _fmt(t["change_from_baseline_pct"], "+.1f"),
            _fmt(t["change_from_nadir_pct"], "+.1f"), t["target_response"] or "-",
            t["non_target"], *further, "yes" if t["new_lesions"] else "no",
            "baseline" if t["is_baseline"] else t["overall"]))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    best = out["best_overall_response_detail"]
    lines += ["", f"Best overall response: {out['best_overall_response']} ({best['reason']})"]
    if out["warnings"]:
        lines += ["", *warning_lines(out["warnings"], out["criteria"])]
    lines += ["", "Target lesions:"]
    for d in out["targets"]:
        lines.append(f"  {d['id']} ({d['organ']}, {d['measure']} {_fmt(d['baseline_mm'], 'g')} mm): "
                     f"{d['reason']}")
    if not out["targets"]:
        lines.append("  none (non-target disease only)")
    return "\n".join(lines)


def add_recist_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``recist`` on an argparse sub-parser collection; handler in ``handler``."""
    parser = subparsers.add_parser(
        "recist", help="RECIST 1.1 / iRECIST response of a case",
        description="Evaluate RECIST 1.1 (or iRECIST when the case says immunotherapy) "
                    "for the timepoints in CASE.json.")
    parser.add_argument("case", metavar="CASE.json", help="case file (see issue 4 format)")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.set_defaults(handler=run_recist)
    return parser


def run_recist(args: argparse.Namespace, stdout: TextIO | None = None,
               stderr: TextIO | None = None) -> int:
    """Handler for ``dtt recist``: 0 on success, 2 with one line on bad input."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    path = args.case
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
        out = recist_case_from_json(obj)
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror or exc}", file=stderr)
        return EXIT_BAD_INPUT
    except json.JSONDecodeError as exc:
        print(f"error: {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
              f"{exc.msg}) — fix the JSON syntax", file=stderr)
        return EXIT_BAD_INPUT
    except InputError as exc:
        print(f"error: {exc.message}", file=stderr)
        return EXIT_BAD_INPUT
    if getattr(args, "json", False):
        print(json.dumps(out, indent=2, ensure_ascii=False), file=stdout)
    else:
        print(format_table(out), file=stdout)
    return EXIT_OK
