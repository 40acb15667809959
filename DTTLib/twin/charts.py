"""What each twin chart shows, as plain series (no MRML): SOD timeline, waterfall, spider, growth.

Values come only from the twin state (RECIST input/output and growth curves), so every point
traces back to a measurement; ``DTTLib.mrml.twin_nodes`` turns these into plot nodes.
"""

from __future__ import annotations

from DTTLib.mrml.plots import SeriesSpec
from DTTLib.response.target_response import pd_threshold_curve
from DTTLib.twin.records import Curve, TwinState

TOO_SMALL_MM = 5.0
BLACK, GREY, RED, GREEN, BLUE, ORANGE = (0, 0, 0), (0.5, 0.5, 0.5), (0.85, 0.1, 0.1), (0.1, 0.6, 0.2), \
    (0.15, 0.35, 0.8), (0.9, 0.5, 0.05)
PALETTE = [(0.12, 0.47, 0.71), (1.0, 0.5, 0.05), (0.17, 0.63, 0.17), (0.84, 0.15, 0.16), (0.58, 0.4, 0.74),
           (0.55, 0.34, 0.29), (0.89, 0.47, 0.76), (0.5, 0.5, 0.5)]


def _sod_points(state: TwinState) -> tuple[list[float], list[float]]:
    tps = [t for t in (state.recist or {}).get("timepoints", []) if t["sod_mm"] is not None]
    return [float(t["day"]) for t in tps], [float(t["sod_mm"]) for t in tps]


PD_STEP_NAME = "PD threshold: +20 % and +5 mm over the nadir of the earlier visits"


def sod_timeline(state: TwinState) -> list[SeriesSpec]:
    """SOD over time, the PR line (−30 % of baseline), the PD threshold and the nadir.

    The PD threshold is a step curve: each visit is judged against the nadir of the visits
    before it (baseline included), ≥ 1.2 × that nadir and ≥ nadir + 5 mm (RECIST 1.1 §4.3.1), so
    a line at the smallest SOD of all visits would be wrong for every visit before that minimum.
    The nadir marker is the smallest SOD on study."""
    days, sod = _sod_points(state)
    if not days:
        return []
    span = [days[0], days[-1] if days[-1] > days[0] else days[0] + 1.0]
    nadir = min(sod)
    nadir_day = days[sod.index(nadir)]
    specs = [SeriesSpec("SOD (target lesions)", days, sod, "line", BLACK, role="observed"),
             SeriesSpec("SOD measured", days, sod, "points", BLACK, role="observed"),
             SeriesSpec("PR threshold: -30 % of baseline SOD", span, [0.7 * sod[0]] * 2, "line", GREEN, "dash",
                        role="threshold")]
    px, py = pd_threshold_curve(days, sod)
    if px:
        specs.append(SeriesSpec(PD_STEP_NAME, px, py, "line", RED, "dash", role="threshold"))
    specs.append(SeriesSpec("Nadir", [nadir_day], [nadir], "points", BLUE, role="nadir"))
    return specs


def lesion_changes(state: TwinState) -> dict[str, list[tuple[float, float]]]:
    """Per baseline lesion: (day, % change of its LD from baseline); unmeasurable points skipped."""
    case = state.recist_case or {"timepoints": []}
    out: dict[str, list[tuple[float, float]]] = {}
    base: dict[str, float] = {}
    for tp in case["timepoints"]:
        for les in tp["lesions"]:
            ld = les["ld_mm"]
            v = TOO_SMALL_MM if ld == "too_small" else (float(ld) if isinstance(ld, (int, float)) else None)
            if v is None:
                continue
            if les["id"] not in base:
                if v <= 0:
                    continue
                base[les["id"]] = v
            out.setdefault(les["id"], []).append((float(tp["day"]), 100.0 * (v - base[les["id"]]) / base[les["id"]]))
    return out


def waterfall(state: TwinState, level: str = "lesion") -> list[SeriesSpec]:
    """Best (lowest) % change from baseline, one bar per lesion (or the patient's SOD), largest first."""
    if level == "patient":
        tps = [t for t in (state.recist or {}).get("timepoints", [])[1:] if t["change_from_baseline_pct"] is not None]
        if not tps:
            return []
        best = min(t["change_from_baseline_pct"] for t in tps)
        return [SeriesSpec("Best SOD change from baseline (%)", [0.0], [best], "bar", BLUE, labels=[state.patient],
                           role="waterfall")]
    bars = [(lid, min(c for _, c in pts[1:])) for lid, pts in lesion_changes(state).items() if len(pts) > 1]
    bars.sort(key=lambda b: -b[1])
    if not bars:
        return []
    return [SeriesSpec("Best change from baseline per lesion (%)", [float(i) for i in range(len(bars))],
                       [b[1] for b in bars], "bar", BLUE, labels=[b[0] for b in bars], role="waterfall")]


def spider(state: TwinState) -> list[SeriesSpec]:
    """% change from baseline over time: one line per lesion, the SOD dashed."""
    specs = [SeriesSpec(f"{lid} (% change)", [p[0] for p in pts], [p[1] for p in pts], "line",
                        PALETTE[i % len(PALETTE)], role="lesion")
             for i, (lid, pts) in enumerate(sorted(lesion_changes(state).items()))]
    days, sod = _sod_points(state)
    if days and sod[0] > 0:
        specs.append(SeriesSpec("SOD (% change)", days, [100.0 * (s - sod[0]) / sod[0] for s in sod], "line",
                                BLACK, "dash", role="sod"))
    if days:
        specs += [SeriesSpec("-30 %", [days[0], days[-1]], [-30.0, -30.0], "line", GREEN, "dot", role="threshold"),
                  SeriesSpec("+20 %", [days[0], days[-1]], [20.0, 20.0], "line", RED, "dot", role="threshold")]
    return specs


def curve_specs(c: Curve, color, bands95: bool = True) -> list[SeriesSpec]:
    prefix = "HYPOTHESIS — " if c.kind == "hypothesis" and not c.name.startswith("HYPOTHESIS") else ""
    name = prefix + c.name
    role = "hypothesis" if c.kind == "hypothesis" else "fit"
    specs = [SeriesSpec(f"{name} median", c.t, c.median, "line", color, role=role),
             SeriesSpec(f"{name} 80 % low", c.t, c.lo80, "line", color, "dash", role=f"{role} band80"),
             SeriesSpec(f"{name} 80 % high", c.t, c.hi80, "line", color, "dash", role=f"{role} band80")]
    if bands95:
        specs += [SeriesSpec(f"{name} 95 % low", c.t, c.lo95, "line", color, "dot", role=f"{role} band95"),
                  SeriesSpec(f"{name} 95 % high", c.t, c.hi95, "line", color, "dot", role=f"{role} band95")]
    return specs


def growth(state: TwinState, series: str = "SOD", whatif: list[Curve] | None = None) -> list[SeriesSpec]:
    """Observed points, fitted ensemble median with 80/95 % bands, what-if curves (hypotheses)."""
    g = state.series(series)
    if g is None:
        return []
    specs = [SeriesSpec(f"{series} observed", g.t, g.y, "points", BLACK, role="observed")]
    if g.fit is not None:
        specs += curve_specs(g.fit, BLUE)
    for i, c in enumerate(state.whatif if whatif is None else whatif):
        specs += curve_specs(c, [ORANGE, RED, GREEN, GREY][i % 4], bands95=False)
    return specs
