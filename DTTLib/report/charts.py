"""Report charts as PNG files (matplotlib, no display needed).

Each chart takes plain arrays so it can be checked against the numbers it was given; the
same numbers go into the scene's table/plot nodes and twin.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from DTTLib.response.target_response import pd_threshold_curve

#: Colours that stay distinguishable for colour-blind readers (Okabe–Ito).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")


def _pyplot():
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


@dataclass
class Band:
    """A model's curve with its prediction interval, for one series."""

    label: str
    days: np.ndarray
    median: np.ndarray
    lo80: np.ndarray | None = None
    hi80: np.ndarray | None = None
    lo95: np.ndarray | None = None
    hi95: np.ndarray | None = None
    hypothesis: bool = False  # what-if curves are drawn dashed and labelled as hypotheses


@dataclass
class GrowthChart:
    title: str
    unit: str
    observed_days: np.ndarray
    observed_values: np.ndarray
    curves: list[Band] = field(default_factory=list)
    therapy: Sequence[tuple[float, float]] = ()


def sod_timeline(days: Sequence[float], sod_mm: Sequence[float | None], path: Path,
                 title: str = "Sum of target diameters") -> Path:
    """SOD over time with the RECIST lines: −30 % of baseline (PR) and the PD threshold, a step
    curve: each visit is judged against the nadir of the visits before it (baseline included),
    ≥ +20 % and ≥ +5 mm over it (``pd_threshold_curve``); the marker is the smallest SOD on study."""
    plt = _pyplot()
    days_a = np.asarray(days, float)
    sod = np.array([np.nan if v is None else v for v in sod_mm], float)
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    ax.plot(days_a, sod, "o-", color=PALETTE[0], label="SOD (measured)")
    finite = np.isfinite(sod)
    if finite.any():
        baseline = sod[finite][0]
        ax.axhline(0.7 * baseline, color=PALETTE[2], ls="--", lw=1, label="−30 % of baseline (PR)")
        px, py = pd_threshold_curve(days_a[finite].tolist(), sod[finite].tolist())
        if px:
            ax.plot(px, py, color=PALETTE[1], ls="--", lw=1, label="+20 % and +5 mm over earlier nadir (PD)")
        nadir_index = int(np.nanargmin(np.where(finite, sod, np.nan)))
        nadir = sod[nadir_index]
        ax.plot([days_a[nadir_index]], [nadir], "v", color=PALETTE[1], ms=9, label="nadir")
    ax.set_xlabel("day")
    ax.set_ylabel("mm")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def waterfall(labels: Sequence[str], best_change_pct: Sequence[float], path: Path,
              title: str = "Best change from baseline") -> Path:
    """Bars sorted from most growth to most shrinkage, with the −30 % and +20 % lines."""
    plt = _pyplot()
    order = np.argsort(best_change_pct)[::-1]
    values = np.asarray(best_change_pct, float)[order]
    names = [labels[i] for i in order]
    colours = [PALETTE[1] if v >= 20 else PALETTE[2] if v <= -30 else PALETTE[5] for v in values]
    fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=110)
    ax.bar(range(len(values)), values, color=colours)
    ax.set_xticks(range(len(values)), names, rotation=0, fontsize=8)
    ax.axhline(20, color=PALETTE[1], ls="--", lw=1)
    ax.axhline(-30, color=PALETTE[2], ls="--", lw=1)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("% change")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def growth_chart(chart: GrowthChart, path: Path) -> Path:
    """Observed sizes, fitted curves with 80/95 % bands, what-if curves dashed (hypotheses)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=110)
    for start, end in chart.therapy:
        ax.axvspan(start, end, color="#999999", alpha=0.12, lw=0)
    for index, curve in enumerate(chart.curves):
        colour = PALETTE[(index + 1) % len(PALETTE)]
        if curve.lo95 is not None and curve.hi95 is not None:
            ax.fill_between(curve.days, curve.lo95, curve.hi95, color=colour, alpha=0.10, lw=0)
        if curve.lo80 is not None and curve.hi80 is not None:
            ax.fill_between(curve.days, curve.lo80, curve.hi80, color=colour, alpha=0.20, lw=0)
        label = f"{curve.label} (hypothesis)" if curve.hypothesis and "hypothesis" not in curve.label.lower() else curve.label
        ax.plot(curve.days, curve.median, ls="--" if curve.hypothesis else "-", color=colour, label=label)
    ax.plot(chart.observed_days, chart.observed_values, "o", color="black", label="measured")
    ax.set_xlabel("day")
    ax.set_ylabel(chart.unit)
    ax.set_title(chart.title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def _save(fig, path: Path) -> Path:  # noqa: ANN001
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    _pyplot().close(fig)
    return path
