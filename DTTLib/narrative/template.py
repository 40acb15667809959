"""The deterministic template: the same sections as MedGemma, written from the facts alone.

It is the CPU default and the fallback whenever a model's output fails a safety or
grounding check, so every number it prints is a fact rounded for display.
"""

from __future__ import annotations

from DTTLib.narrative.facts import LOW_CONFIDENCE, TwinFacts

MODEL_SECTIONS = ("Findings", "Therapy", "Response", "Growth model", "What-if scenarios")
QUALITY_SECTION = "Measurement quality"


def fmt(value: float) -> str:
    """Display rounding that stays within the grounding tolerance of the fact."""
    a = abs(value)
    if a >= 100:
        text = f"{value:.1f}"
    elif a >= 1:
        text = f"{value:.2f}"
    elif a == 0:
        text = "0"
    else:
        text = f"{value:.4g}"
        if "e" in text:
            text = f"{value:.8f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _pct(value: float) -> str:
    return f"{'+' if value > 0 else ''}{fmt(value)}%"


def findings(facts: TwinFacts) -> str:
    tps = facts.timepoints
    lines = [f"{len(facts.lesion_ids)} lesion(s) measured at {len(tps)} timepoint(s): "
             + ", ".join(f"{name} (day {fmt(day)})" for name, day in tps) + "."]
    for lesion in facts.lesion_ids:
        rows = sorted((m for m in facts.measurements if m.lesion_id == lesion), key=lambda m: m.day)
        parts = []
        for m in rows:
            size = f"{fmt(m.ld_mm)} mm" if m.ld_mm is not None else "not measured"
            extra = f", short axis {fmt(m.sa_mm)} mm" if m.sa_mm is not None else ""
            vol = f", volume {fmt(m.volume_ml)} ml" if m.volume_ml is not None else ""
            low = " (low-confidence measurement)" if m.low_confidence else ""
            parts.append(f"{size}{extra}{vol} at {m.timepoint}{low}")
        lines.append(f"Lesion {lesion}: longest diameter " + "; ".join(parts) + ".")
    return " ".join(lines)


def therapy(facts: TwinFacts) -> str:
    if not facts.therapy:
        return "No therapy timeline was recorded."
    return " ".join(f"{t.name}: from day {fmt(t.start_day)}"
                    + (f" to day {fmt(t.end_day)}." if t.end_day is not None else ", ongoing.")
                    for t in facts.therapy)


def caveats(facts: TwinFacts) -> str:
    """The engine's caveats, verbatim and labelled as such; "" when there are none. Every
    narrative's Response section ends with this sentence, whichever backend wrote the rest."""
    if not facts.caveats:
        return ""
    label = "this caveat" if len(facts.caveats) == 1 else "these caveats"
    return (f"The response assessment carries {label}: "  # quoted: a caveat may itself hold "; "
            + "; ".join(f"“{c.rstrip(' .')}”" for c in facts.caveats) + ".")


def response(facts: TwinFacts) -> str:
    if not facts.response:
        return " ".join(t for t in (f"No {facts.criteria} assessment was recorded.", caveats(facts)) if t)
    lines = []
    for r in facts.response:
        parts = [f"At {r.timepoint} (day {fmt(r.day)})"]
        if r.sum_mm is not None:
            parts.append(f"the sum of target diameters is {fmt(r.sum_mm)} mm")
        if r.change_from_baseline_pct is not None:
            parts.append(f"{_pct(r.change_from_baseline_pct)} from baseline")
        if r.change_from_nadir_pct is not None:
            parts.append(f"{_pct(r.change_from_nadir_pct)} from the nadir")
        text = ", ".join(parts)
        if r.response:
            text += f"; response category {r.response}"
        lines.append(text + ".")
    if facts.best_response:
        lines.append(f"Best overall response ({facts.criteria}): {facts.best_response}.")
    if facts.caveats:
        lines.append(caveats(facts))
    return " ".join(lines)


def growth(facts: TwinFacts) -> str:
    g = facts.growth
    if g is None:
        return "No growth model was fitted."
    lines = [f"The best-supported growth model is {g.model}."]
    for p in g.parameters:
        interval = (f" (interval {fmt(p.low)} to {fmt(p.high)})" if p.low is not None and p.high is not None else "")
        lines.append(f"Parameter {p.name} = {fmt(p.value)}{(' ' + p.unit) if p.unit else ''}{interval}.")
    if g.doubling_time_days is not None:
        lines.append(f"Estimated doubling time: {fmt(g.doubling_time_days)} days.")
    if g.forecast_day is not None and g.forecast_mm is not None:
        band = (f" (interval {fmt(g.forecast_low_mm)} to {fmt(g.forecast_high_mm)} mm)"
                if g.forecast_low_mm is not None and g.forecast_high_mm is not None else "")
        lines.append(f"The model projects {fmt(g.forecast_mm)} mm at day {fmt(g.forecast_day)}{band}; "
                     "projections are uncertain model outputs.")
    return " ".join(lines)


def whatif(facts: TwinFacts) -> str:
    if not facts.whatif:
        return "No what-if scenarios were explored."
    lines = []
    for w in facts.whatif:
        text = f"Hypothetical scenario '{w.scenario}'"
        if w.description:
            text += f" ({w.description})"
        diffs = []
        if w.difference_mm is not None:
            diffs.append(f"{'+' if w.difference_mm > 0 else ''}{fmt(w.difference_mm)} mm")
        if w.difference_pct is not None:
            diffs.append(_pct(w.difference_pct))
        if diffs:
            when = f" at day {fmt(w.day)}" if w.day is not None else ""
            text += f": the modelled size differs by {' / '.join(diffs)}{when} compared with the fitted course"
        lines.append(text + ".")
    lines.append("These are model hypotheses, not predictions for this patient.")
    return " ".join(lines)


def quality(facts: TwinFacts) -> str:
    low = [m for m in facts.measurements if m.low_confidence]
    if low:
        text = " ".join(f"Low-confidence measurement: lesion {m.lesion_id} at {m.timepoint} "
                        f"(confidence {fmt(m.confidence)}{', ' + m.source if m.source else ''})."
                        for m in low)
        text += " Treat these values with caution."
    else:
        text = f"No measurement was flagged as low-confidence (threshold {fmt(LOW_CONFIDENCE)})."
    if facts.clinical_notes.strip():
        text += " Clinical notes were provided; they are kept as written and not interpreted here."
    return text


def template_sections(facts: TwinFacts) -> dict[str, str]:
    return {"Findings": findings(facts), "Therapy": therapy(facts), "Response": response(facts),
            "Growth model": growth(facts), "What-if scenarios": whatif(facts),
            QUALITY_SECTION: quality(facts)}
