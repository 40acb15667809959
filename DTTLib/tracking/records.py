"""Records of lesion tracking: observations, links, events, overrides and the identity graph.

A *key* names one lesion at one timepoint: ``(timepoint_index, lesion_id)``. Links join keys of
consecutive timepoints; a *track* is a connected chain of links (one lesion's identity over
time). Everything is plain data so the graph serialises to JSON and into MRML tables.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from DTTLib.errors import InputError

METHODS = ("registration+hungarian", "appearance", "overlap", "user")
EVENTS = ("new", "disappeared", "split", "merged")
ACTIONS = ("reassign", "split", "merge", "new", "unlink")

Key = tuple[int, str]


@dataclass
class LesionObservation:
    """One segmented lesion at one timepoint (mask on its scan's grid, optional)."""

    lesion_id: str
    timepoint: int
    centroid_ras: tuple[float, float, float]
    mask: np.ndarray | None = None
    intensities: np.ndarray | None = None  # voxel values inside the mask
    scan_stats: tuple[float, float] | None = None  # (mean, sd) of the whole scan
    embedding: np.ndarray | None = None
    volume_mm3: float | None = None

    @property
    def key(self) -> Key:
        return (self.timepoint, self.lesion_id)

    def histogram(self) -> np.ndarray | None:
        from DTTLib.tracking.appearance import BINS  # noqa: PLC0415

        if self.intensities is None or np.asarray(self.intensities).size < 3:
            return None
        mean, sd = self.scan_stats or (0.0, 1.0)
        h, _ = np.histogram((np.asarray(self.intensities, float) - mean) / (sd or 1.0), BINS)
        return h / h.sum() if h.sum() else None


@dataclass
class Link:
    """Same lesion at two timepoints; ``method`` says how we know, ``confidence`` how sure."""

    source: Key
    target: Key
    confidence: float
    method: str
    distance_mm: float | None = None
    similarity: float | None = None
    overlap: float | None = None
    note: str = ""


@dataclass
class Event:
    """new / disappeared / split (one → many) / merged (many → one)."""

    kind: str
    sources: list[Key]
    targets: list[Key]
    confidence: float
    method: str
    note: str = ""


@dataclass
class Override:
    """A user's decision, kept with its reason (required) so every change is traceable."""

    action: str
    sources: list[Key]
    targets: list[Key]
    reason: str
    user: str = ""


@dataclass
class IdentityGraph:
    """Per-patient lesion identities: observations' keys, links, events and user overrides."""

    patient: str = "Patient"
    days: list[float] = field(default_factory=list)
    lesions: list[Key] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    overrides: list[Override] = field(default_factory=list)
    registrations: list[dict[str, Any]] = field(default_factory=list)

    # -- queries -------------------------------------------------------------------------
    def links_from(self, key: Key) -> list[Link]:
        return [lk for lk in self.links if tuple(lk.source) == tuple(key)]

    def links_to(self, key: Key) -> list[Link]:
        return [lk for lk in self.links if tuple(lk.target) == tuple(key)]

    def tracks(self) -> dict[str, list[Key]]:
        """Track id → keys in time order. A lesion continues the track of its (single) parent;
        the children of a split and the result of a merge start new tracks, named after the
        first lesion id; track ids are the baseline lesion ids where there is one."""
        order = sorted((tuple(k) for k in self.lesions), key=lambda k: (k[0], k[1]))
        track_of: dict[Key, str] = {}
        tracks: dict[str, list[Key]] = {}
        for key in order:
            parents = self.links_to(key)
            parent = tuple(parents[0].source) if len(parents) == 1 else None
            siblings = self.links_from(parent) if parent else []
            if parent in track_of and len(siblings) == 1:
                tid = track_of[parent]
            else:
                tid = key[1]
                while tid in tracks:
                    tid = f"{key[1]}@t{key[0]}" if tid == key[1] else tid + "'"
            track_of[key] = tid
            tracks.setdefault(tid, []).append(key)
        return tracks

    def track_of(self) -> dict[Key, str]:
        return {k: tid for tid, keys in self.tracks().items() for k in keys}

    # -- user overrides ------------------------------------------------------------------
    def apply_override(self, override: Override) -> None:
        """Apply and record a user decision. Reason is mandatory; keys must exist."""
        if not override.reason or not override.reason.strip():
            raise InputError(f"override '{override.action}' has no reason",
                             "say why (e.g. 'same lesion, registration off by 15 mm at the diaphragm')")
        if override.action not in ACTIONS:
            raise InputError(f"unknown override action {override.action!r}", f"use one of {', '.join(ACTIONS)}")
        known = {tuple(k) for k in self.lesions}
        for k in list(override.sources) + list(override.targets):
            if tuple(k) not in known:
                raise InputError(f"lesion {k} is not in the identity graph", "pick a lesion from the lesion table")
        src = [tuple(k) for k in override.sources]
        tgt = [tuple(k) for k in override.targets]
        note = f"user: {override.reason.strip()}"
        if override.action == "reassign":
            if len(src) != 1 or len(tgt) != 1:
                raise InputError("reassign needs one earlier and one later lesion", "select exactly one of each")
            self._cut(targets=tgt)
            self._cut(sources=src)
            self.links.append(Link(src[0], tgt[0], 1.0, "user", note=note))
        elif override.action == "split":
            if len(src) != 1 or len(tgt) < 2:
                raise InputError("split needs one earlier lesion and at least two later ones", "select them")
            self._cut(targets=tgt)
            self._cut(sources=src)
            self.links += [Link(src[0], t, 1.0, "user", note=note) for t in tgt]
            self.events.append(Event("split", src, tgt, 1.0, "user", note))
        elif override.action == "merge":
            if len(src) < 2 or len(tgt) != 1:
                raise InputError("merge needs at least two earlier lesions and one later one", "select them")
            self._cut(targets=tgt)
            self._cut(sources=src)
            self.links += [Link(s, tgt[0], 1.0, "user", note=note) for s in src]
            self.events.append(Event("merged", src, tgt, 1.0, "user", note))
        elif override.action in ("new", "unlink"):
            if not tgt:
                raise InputError(f"{override.action} needs the later lesion(s)", "select them")
            self._cut(targets=tgt)
            if override.action == "new":
                self.events.append(Event("new", [], tgt, 1.0, "user", note))
        self.events = [e for e in self.events if e.method == "user" or self._event_still_true(e)]
        self.overrides.append(Override(override.action, src, tgt, override.reason.strip(), override.user))

    def _cut(self, sources: list[Key] | None = None, targets: list[Key] | None = None) -> None:
        s = set(sources or [])
        t = set(targets or [])
        self.links = [lk for lk in self.links if tuple(lk.source) not in s and tuple(lk.target) not in t]

    def _event_still_true(self, e: Event) -> bool:
        if e.kind == "new":
            return all(not self.links_to(k) for k in e.targets)
        if e.kind == "disappeared":
            return all(not self.links_from(k) for k in e.sources)
        return all(self.links_from(s) for s in e.sources) and all(self.links_to(t) for t in e.targets)

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"patient": self.patient, "days": list(self.days),
                "lesions": [list(k) for k in self.lesions],
                "links": [_keys_to_lists(asdict(x)) for x in self.links],
                "events": [_keys_to_lists(asdict(x)) for x in self.events],
                "overrides": [_keys_to_lists(asdict(x)) for x in self.overrides],
                "registrations": list(self.registrations),
                "tracks": {tid: [list(k) for k in keys] for tid, keys in self.tracks().items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "IdentityGraph":
        key = lambda v: (int(v[0]), str(v[1]))  # noqa: E731
        g = cls(d.get("patient", "Patient"), [float(x) for x in d.get("days", [])],
                [key(k) for k in d.get("lesions", [])])
        g.links = [Link(**{**x, "source": key(x["source"]), "target": key(x["target"])}) for x in d.get("links", [])]
        g.events = [Event(**{**x, "sources": [key(k) for k in x["sources"]], "targets": [key(k) for k in x["targets"]]})
                    for x in d.get("events", [])]
        g.overrides = [Override(**{**x, "sources": [key(k) for k in x["sources"]],
                                   "targets": [key(k) for k in x["targets"]]}) for x in d.get("overrides", [])]
        g.registrations = list(d.get("registrations", []))
        return g


def _keys_to_lists(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if k in ("source", "target"):
            out[k] = list(v)
        elif k in ("sources", "targets"):
            out[k] = [list(x) for x in v]
        else:
            out[k] = v
    return out
