"""The one-screen summary printed at the end of ``dtt run``."""

from __future__ import annotations

from typing import Any

from DTTLib.response.display import recist_warnings, warning_lines


def summary_lines(result: Any, seconds: float) -> list[str]:
    twin = result.twin
    lines = [f"Patient {twin.patient}: {len(result.case.timepoints)} timepoints, "
             f"{len(result.case.lesions)} lesion(s) — {seconds:.0f} s "
             f"(cache: {result.cache_hits} reused, {result.cache_misses} computed)"]
    if twin.recist:
        lines.append(f"{twin.criteria}: best overall response {twin.recist['best_overall_response']}")
        for tp in twin.recist["timepoints"]:
            sod = "—" if tp["sod_mm"] is None else f"{tp['sod_mm']:.1f} mm"
            change = "" if tp["change_from_baseline_pct"] is None else f" ({tp['change_from_baseline_pct']:+.1f} %)"
            lines.append(f"  day {tp['day']:>5g}: SOD {sod}{change}  {tp['overall'] or 'baseline'}")
        lines += warning_lines(recist_warnings(twin.recist), twin.criteria)
    sod = twin.series("SOD")
    if sod is not None:
        lines.append(f"Growth (SOD): {sod.status}" + (f", selected model {sod.selected}" if sod.selected else ""))
    lines.append(f"Narrative: {result.narrative['backend']} ({len(result.narrative['flags'])} flag(s))")
    for note in result.notes + twin.messages:
        lines.append(f"note: {note}")
    lines.append(f"Report: {result.report}")
    lines.append(f"Scene:  {result.out_dir / 'scene.mrb'} (open in 3D Slicer)")
    return lines


def print_summary(result: Any, seconds: float) -> None:
    print("\n" + "\n".join(summary_lines(result, seconds)))
