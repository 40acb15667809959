"""Match lesions of two consecutive timepoints and detect new, disappeared, split and merged ones.

1. Carry the earlier lesions' centroids into the later scan with the registration (RAS).
2. Hungarian assignment (``scipy.optimize.linear_sum_assignment``) on centroid distance, with
   pairs farther than ``cap_mm`` (20 mm) forbidden.
3. Pairs closer than ``confident_mm`` (10 mm) are accepted on distance alone. Pairs in the
   ambiguous 10–20 mm zone pay an appearance penalty in the cost and are accepted only if the
   appearance similarity reaches ``min_similarity`` (method "appearance").
4. Left-over lesions: a later lesion lying mostly inside an earlier lesion's footprint (masks
   compared on the earlier grid, through the registration) is a split child; an earlier lesion
   lying inside a later lesion's footprint is merged into it; the rest are new / disappeared.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from DTTLib.tracking.appearance import Similarity, default_similarity
from DTTLib.tracking.records import Event, LesionObservation, Link
from DTTLib.tracking.registration import RegistrationResult

FORBIDDEN = 1e6


@dataclass(frozen=True)
class MatchOptions:
    cap_mm: float = 20.0
    confident_mm: float = 10.0
    min_similarity: float = 0.5
    appearance_weight: float = 1.0
    min_overlap: float = 0.3  # fraction of the smaller footprint inside the other


@dataclass
class PairMatch:
    links: list[Link] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    distances_mm: np.ndarray | None = None


def _overlap(small: np.ndarray | None, big: np.ndarray | None) -> float:
    """Fraction of ``small``'s voxels inside ``big`` (same grid)."""
    if small is None or big is None:
        return 0.0
    n = int(np.count_nonzero(small))
    return float(np.count_nonzero(small & big)) / n if n else 0.0


def match_pair(earlier: list[LesionObservation], later: list[LesionObservation],
               registration: RegistrationResult | None = None,
               later_masks_on_earlier_grid: dict[str, np.ndarray] | None = None,
               similarity: Similarity | None = default_similarity,
               options: MatchOptions | None = None) -> PairMatch:
    """Links and events between two timepoints. ``later_masks_on_earlier_grid`` (by lesion id)
    enables split/merge detection; without masks only new/disappeared are reported."""
    opts = options or MatchOptions()
    reg = registration or RegistrationResult.identity()
    out = PairMatch()
    n, m = len(earlier), len(later)
    if n and m:
        carried = reg.to_followup([o.centroid_ras for o in earlier])
        dest = np.array([o.centroid_ras for o in later], float)
        dist = np.linalg.norm(carried[:, None, :] - dest[None, :, :], axis=2)
    else:
        dist = np.zeros((n, m))
    out.distances_mm = dist
    sim = np.full((n, m), np.nan)
    cost = np.full((n, m), FORBIDDEN)
    for i in range(n):
        for j in range(m):
            d = dist[i, j]
            if d > opts.cap_mm:
                continue
            c = d / opts.cap_mm
            if d > opts.confident_mm:
                s = similarity(earlier[i], later[j]) if similarity is not None else None
                if s is not None:
                    sim[i, j] = s
                    if s < opts.min_similarity:
                        continue  # looks like a different lesion: not allowed in the ambiguous zone
                    c += opts.appearance_weight * (1.0 - s)
                else:
                    c += opts.appearance_weight * 0.5
            cost[i, j] = c
    matched_e: set[int] = set()
    matched_l: set[int] = set()
    if n and m:
        rows, cols = linear_sum_assignment(cost)
        for i, j in zip(rows, cols):
            if cost[i, j] >= FORBIDDEN:
                continue
            d = float(dist[i, j])
            s = None if np.isnan(sim[i, j]) else float(sim[i, j])
            if d <= opts.confident_mm:
                conf, method, note = 1.0 - 0.5 * d / opts.confident_mm, "registration+hungarian", ""
            elif s is not None:
                conf = s * (1.0 - 0.5 * (d - opts.confident_mm) / (opts.cap_mm - opts.confident_mm)) * 0.9
                method, note = "appearance", f"ambiguous zone ({d:.1f} mm); appearance {s:.2f}"
            else:
                conf, method = 0.3, "registration+hungarian"
                note = f"ambiguous zone ({d:.1f} mm) and no appearance available: please review"
            out.links.append(Link(earlier[i].key, later[j].key, round(conf, 3), method, round(d, 3), s, None, note))
            matched_e.add(i)
            matched_l.add(j)
    warped = later_masks_on_earlier_grid or {}
    # split: an unmatched later lesion inside an earlier lesion's footprint
    children: dict[int, list[tuple[int, float]]] = {}
    for j in range(m):
        if j in matched_l:
            continue
        best = max(((i, _overlap(warped.get(later[j].lesion_id), earlier[i].mask)) for i in range(n)),
                   key=lambda x: x[1], default=(None, 0.0))
        if best[0] is not None and best[1] >= opts.min_overlap:
            children.setdefault(best[0], []).append((j, best[1]))
    for i, kids in children.items():
        for j, ov in kids:
            out.links.append(Link(earlier[i].key, later[j].key, round(ov, 3), "overlap", round(float(dist[i, j]), 3),
                                  None, round(ov, 3), "split child"))
            matched_l.add(j)
        targets = [lk.target for lk in out.links if lk.source == earlier[i].key]
        if len(targets) >= 2:
            out.events.append(Event("split", [earlier[i].key], targets, round(min(ov for _, ov in kids), 3),
                                    "overlap", f"{earlier[i].lesion_id} → {len(targets)} lesions"))
            matched_e.add(i)
    # merged: an unmatched earlier lesion inside a later lesion's footprint
    parents: dict[int, list[tuple[int, float]]] = {}
    for i in range(n):
        if i in matched_e:
            continue
        best = max(((j, _overlap(earlier[i].mask, warped.get(later[j].lesion_id))) for j in range(m)),
                   key=lambda x: x[1], default=(None, 0.0))
        if best[0] is not None and best[1] >= opts.min_overlap:
            parents.setdefault(best[0], []).append((i, best[1]))
    for j, olds in parents.items():
        for i, ov in olds:
            out.links.append(Link(earlier[i].key, later[j].key, round(ov, 3), "overlap", round(float(dist[i, j]), 3),
                                  None, round(ov, 3), "merged into"))
            matched_e.add(i)
        sources = [lk.source for lk in out.links if lk.target == later[j].key]
        if len(sources) >= 2:
            out.events.append(Event("merged", sources, [later[j].key], round(min(ov for _, ov in olds), 3),
                                    "overlap", f"{len(sources)} lesions → {later[j].lesion_id}"))
            matched_l.add(j)
    for i in range(n):
        if i not in matched_e:
            out.events.append(Event("disappeared", [earlier[i].key], [], 0.8, "registration+hungarian",
                                    f"no lesion within {opts.cap_mm:g} mm"))
    for j in range(m):
        if j not in matched_l:
            out.events.append(Event("new", [], [later[j].key], 0.8, "registration+hungarian",
                                    f"no earlier lesion within {opts.cap_mm:g} mm"))
    return out
