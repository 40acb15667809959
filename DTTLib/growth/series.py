"""Turn raw (time, value) rows into a clean series plus a status — never an exception.

Why a separate step: real trial tables hold text such as ``NOT EVALUABLE`` and ``TOO SMALL TO
MEASURE``, blanks and NaN. RECIST 1.1 says a lesion too small to measure counts as 5 mm
(its volume equivalent for mm³), and a not-evaluable assessment carries no size, so it is
dropped. Everything done to a series is reported in ``notes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

TOO_SMALL_MM = 5.0  # RECIST 1.1: "too small to measure" counts as 5 mm
TOO_SMALL_MM3 = math.pi / 6.0 * TOO_SMALL_MM ** 3  # sphere of 5 mm diameter ≈ 65.4 mm³

STATUS_OK = "ok"
STATUS_TOO_FEW = "too few points"
STATUS_CONSTANT = "constant values"


@dataclass
class Series:
    """A cleaned series: sorted numeric times/values, a status and what was changed."""

    name: str
    t: np.ndarray
    y: np.ndarray
    status: str
    notes: list[str] = field(default_factory=list)
    unit: str = "mm"

    @property
    def n(self) -> int:
        return int(self.t.size)

    @property
    def fittable(self) -> bool:
        return self.status == STATUS_OK

    def describe(self) -> str:
        """The one-line status shown to users: status plus notes."""
        return self.status + (f" ({'; '.join(self.notes)})" if self.notes else "")


def _as_float(v) -> float | None:
    if v is None:
        return None
    if isinstance(v, (int, float, np.floating, np.integer)):
        return float(v)
    try:
        return float(str(v).strip())
    except ValueError:
        return None


def _token(v) -> str:
    return " ".join(str(v).strip().upper().replace("_", " ").split())


def clean_series(name: str, times: Sequence, values: Sequence, unit: str = "mm",
                 min_points: int = 3) -> Series:
    """Clean one series. ``unit`` is "mm" (diameters) or "mm3" (volumes)."""
    too_small = TOO_SMALL_MM3 if unit == "mm3" else TOO_SMALL_MM
    ts, ys, notes = [], [], []
    n_ne = n_small = n_nan = n_text = n_bad_t = n_neg = 0
    for tv, yv in zip(times, values):
        t = _as_float(tv)
        if t is None or not math.isfinite(t):
            n_bad_t += 1
            continue
        y = _as_float(yv)
        if y is None:
            tok = _token(yv) if yv is not None else ""
            if tok in ("NOT EVALUABLE", "NE"):
                n_ne += 1
            elif tok in ("TOO SMALL TO MEASURE", "TOO SMALL", "TSTM"):
                n_small += 1
                ts.append(t)
                ys.append(too_small)
            elif tok in ("", "NA", "NAN", "NONE"):
                n_nan += 1
            else:
                n_text += 1
            continue
        if not math.isfinite(y):
            n_nan += 1
            continue
        if y < 0:
            n_neg += 1
            continue
        ts.append(t)
        ys.append(y)
    if n_ne:
        notes.append(f"{n_ne} NOT EVALUABLE dropped")
    if n_small:
        notes.append(f"{n_small} TOO SMALL TO MEASURE set to {too_small:g} {unit}")
    if n_nan:
        notes.append(f"{n_nan} missing/NaN dropped")
    if n_text:
        notes.append(f"{n_text} unreadable value(s) dropped")
    if n_neg:
        notes.append(f"{n_neg} negative value(s) dropped")
    if n_bad_t:
        notes.append(f"{n_bad_t} row(s) without a numeric time dropped")
    t = np.asarray(ts, float)
    y = np.asarray(ys, float)
    order = np.argsort(t, kind="stable")
    t, y = t[order], y[order]
    if t.size < min_points:
        status = STATUS_TOO_FEW
        notes.insert(0, f"{t.size} numeric point(s), need >= {min_points}")
    elif np.ptp(y) == 0:
        status = STATUS_CONSTANT
        notes.insert(0, "no change to fit; forecast = last value")
    elif np.ptp(t) == 0:
        status = STATUS_TOO_FEW
        notes.insert(0, "all points at one time")
    else:
        status = STATUS_OK
    return Series(str(name), t, y, status, notes, unit)


def group_rows(rows: Iterable[dict], series_key: str = "series", time_key: str = "time_days",
               value_key: str = "value") -> dict[str, tuple[list, list]]:
    """Group dict rows by series (one series named "1" when the column is absent), in order."""
    out: dict[str, tuple[list, list]] = {}
    for r in rows:
        name = str(r.get(series_key, "1") or "1").strip() or "1"
        tl, yl = out.setdefault(name, ([], []))
        tl.append(r.get(time_key))
        yl.append(r.get(value_key))
    return out
