"""report.html for one run: pictures, charts and tables taken from the twin record only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from DTTLib.report.charts import Band, GrowthChart, growth_chart, sod_timeline, waterfall
from DTTLib.report.html import Figure, Report, Section, Table, write_report
from DTTLib.response.display import further_increase_text, recist_warnings, warning_count
from DTTLib.twin.charts import lesion_changes
from DTTLib.twin.records import Curve, TwinState


def _band(curve: Curve, hypothesis: bool) -> Band:
    def array(values: list[float | None]) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in values], float)

    return Band(curve.name if not hypothesis else curve.label.split(":")[0], np.asarray(curve.t, float),
                array(curve.median), array(curve.lo80), array(curve.hi80), array(curve.lo95), array(curve.hi95),
                hypothesis=hypothesis)


def build_report(state: TwinState, timepoint_labels: list[str], pictures: dict[tuple[str, str], Path],
                 narrative: dict[str, Any], notes: list[str], png_dir: Path, page: Path,
                 subtitle: str, proposals: list[Any] = ()) -> Path:
    sections = [_response_section(state, timepoint_labels, png_dir),
                _lesion_section(state, timepoint_labels, pictures, png_dir),
                *([_proposal_section(proposals)] if proposals else []),
                _growth_section(state, png_dir),
                _narrative_section(narrative)]
    if notes or state.messages:
        sections.append(Section("Checks and messages", notes=[*notes, *state.messages]))
    return write_report(Report(f"Digital twin — {state.patient}", subtitle, sections), page)


def _response_section(state: TwinState, labels: list[str], png_dir: Path) -> Section:
    """Best response, then the engine's warnings as highlighted notes right under it (they bear on
    the response), then the table with each timepoint's non-target call and the engine's reason."""
    section = Section(f"Response ({state.criteria})")
    recist = state.recist
    if not recist:
        section.paragraphs.append("No RECIST assessment: see the messages below.")
        return section
    warnings = recist_warnings(recist)
    section.paragraphs.append(f"Best overall response: {recist['best_overall_response']}."
                              + (f" {warning_count(len(warnings), state.criteria)}, highlighted below: read them "
                                 "before relying on this response." if warnings else ""))
    section.notes += warnings
    irecist = state.criteria == "iRECIST"
    rows = [[labels[i], tp["day"], tp["sod_mm"], tp["change_from_baseline_pct"], tp["change_from_nadir_pct"],
             tp["target_response"] or "—", tp["non_target"], *([further_increase_text(tp)] if irecist else []),
             "yes" if tp["new_lesions"] else "no", tp["overall"] or "baseline", tp.get("overall_reason") or ""]
            for i, tp in enumerate(recist["timepoints"])]
    section.tables.append(Table("Sum of target diameters per timepoint",
                                ["timepoint", "day", "SOD mm", "vs baseline %", "vs nadir %", "targets", "non-target",
                                 *(["further increase"] if irecist else []), "new lesions", "overall", "why"], rows))
    targets = [[t["id"], t["organ"], t["measure"], t["baseline_mm"], t["reason"]] for t in recist["targets"]]
    section.tables.append(Table("Target lesions", ["lesion", "organ", "measure", "baseline mm", "why"], targets))
    days = [tp["day"] for tp in recist["timepoints"]]
    section.figures.append(Figure(sod_timeline(days, [tp["sod_mm"] for tp in recist["timepoints"]],
                                               png_dir / "sod_timeline.png"),
                                  "SOD over time with the PR (−30 % of baseline) and PD (+20 % of nadir) lines"))
    changes = {lesion: min(c for _, c in points[1:]) for lesion, points in lesion_changes(state).items()
               if len(points) > 1}
    if changes:
        section.figures.append(Figure(waterfall(list(changes), list(changes.values()), png_dir / "waterfall.png"),
                                      "Best change of each lesion's diameter from baseline"))
    return section


def _lesion_section(state: TwinState, labels: list[str], pictures: dict[tuple[str, str], Path],
                    png_dir: Path) -> Section:
    section = Section("Lesions at every timepoint")
    rows = [[r["lesion"], labels[int(r["timepoint"])], r["day"], r["ld_mm"], r["sa_mm"], r["volume_mm3"],
             r["role"]] for r in state.lesion_table]
    section.tables.append(Table("Measurements (segmented by the model, measured on the mask)",
                                ["lesion", "timepoint", "day", "LD mm", "SA mm", "volume mm³", "role"], rows))
    for (lesion, label), path in sorted(pictures.items(), key=lambda item: (item[0][0], labels.index(item[0][1]))):
        section.figures.append(Figure(path, f"{lesion} at {label}: outline and RECIST lines (axial)"))
    return section


def _proposal_section(proposals: list[Any]) -> Section:
    """Every nnU-Net proposal and what became of it: the reader sees what was not counted."""
    section = Section("Lesion proposals (nnU-Net)", paragraphs=[
        "An nnU-Net model searched every scan. A proposal near a prompted lesion only placed that lesion's "
        "box (MedSAM drew the outline); the others are not counted until the reader confirms them in "
        "case.json (proposals.decisions: \"new\" or \"reject\")."])
    rows = [[r.timepoint, r.proposal_id, r.status, r.lesion or "—",
             "—" if r.longest_diameter_mm is None else round(r.longest_diameter_mm, 1), round(r.volume_mm3),
             round(r.confidence, 2), f"{r.slices[0]}–{r.slices[1]}", r.detail] for r in proposals]
    section.tables.append(Table("Proposals", ["timepoint", "proposal", "status", "lesion", "LD mm", "volume mm³",
                                              "confidence", "slices", "detail"], rows))
    pending = sum(r.status == "unconfirmed" for r in proposals)
    if pending:
        section.notes.append(f"{pending} proposal(s) wait for the reader's decision and are not counted.")
    return section


def _growth_section(state: TwinState, png_dir: Path) -> Section:
    section = Section("Growth and what-if scenarios (hypotheses)")
    series = state.series("SOD")
    if series is None:
        section.paragraphs.append("No growth series.")
        return section
    section.paragraphs.append(f"SOD series: {series.status}. {series.detail}")
    if series.fit is not None:
        section.paragraphs.append(series.fit.label)
    if series.two_point_rate_per_day is not None:
        section.paragraphs.append(f"Measured two-point rate: {series.two_point_rate_per_day:.4f} per day "
                                  "(from two measurements, not a model).")
    curves = ([_band(series.fit, False)] if series.fit is not None else []) + [_band(c, True) for c in state.whatif]
    therapy = [(t["start_day"], t["end_day"] if t["end_day"] is not None else max(series.t) + 112)
               for t in state.therapy]
    chart = GrowthChart("SOD: measured, fitted ensemble and what-if hypotheses", "mm",
                        np.asarray(series.t, float), np.asarray(series.y, float), curves, therapy)
    section.figures.append(Figure(growth_chart(chart, png_dir / "growth_sod.png"),
                                  "Fitted ensemble with 80/95 % bands; dashed: what-if hypotheses; grey: therapy"))
    weights = [[name, f"{model['akaike_weight']:.2f}", "yes" if model["converged"] else "no"]
               for name, model in series.models.items()]
    if weights:
        section.tables.append(Table("Models fitted to the SOD", ["model", "Akaike weight", "converged"], weights))
    for curve in state.whatif:
        section.notes.append(curve.label)
    return section


def _narrative_section(narrative: dict[str, Any]) -> Section:
    section = Section(f"Narrative ({narrative['label']})")
    section.paragraphs += [p for p in narrative["text"].split("\n") if p.strip()]
    grounding = narrative["grounding"]
    section.paragraphs.append(f"Grounding: {grounding.get('numbers_checked', 0)} numbers checked against the "
                              f"measurements; ungrounded: {grounding.get('ungrounded') or 'none'}.")
    section.notes += narrative.get("flags", [])
    return section
