"""Who is who over time: each lesion observation → the baseline lesion it continues, or a new one.

RECIST 1.1 (Eisenhauer 2009, appendix I): fragments of a split target are summed into the
target's LD; when targets coalesce, the merged lesion's LD goes to one of them and the others
count 0 mm. A lesion with no earlier identity after baseline is a *new* lesion.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from DTTLib.tracking.records import IdentityGraph, Key
from DTTLib.twin.records import LesionMeasurement


@dataclass
class Identities:
    owner: dict[Key, str] = field(default_factory=dict)  # key → baseline id or new-lesion track id
    new_tracks: set[str] = field(default_factory=set)
    merged_away: dict[tuple[int, str], str] = field(default_factory=dict)  # (timepoint, baseline id) → into
    disappeared: set[tuple[int, str]] = field(default_factory=set)  # (timepoint, baseline id) said gone
    tracks: dict[str, list[Key]] = field(default_factory=dict)


def resolve(measurements: list[LesionMeasurement], graph: IdentityGraph | None) -> Identities:
    keys = sorted({(m.timepoint, m.lesion_id) for m in measurements})
    ids = Identities()
    if graph is None:
        baseline = {k[1] for k in keys if k[0] == 0}
        for k in keys:
            ids.owner[k] = k[1]
            ids.tracks.setdefault(k[1], []).append(k)
            if k[1] not in baseline:
                ids.new_tracks.add(k[1])
        return ids
    graph_keys = {tuple(k) for k in graph.lesions}
    track_id = graph.track_of()
    for k in keys:
        if k not in graph_keys:
            ids.owner[k] = k[1] if k[0] == 0 else f"{k[1]}@t{k[0]}"
            if k[0] > 0:
                ids.new_tracks.add(ids.owner[k])
            continue
        parents = sorted(tuple(lk.source) for lk in graph.links_to(k))
        if k[0] == 0:
            ids.owner[k] = k[1]
        elif not parents:
            ids.owner[k] = track_id[k]
            ids.new_tracks.add(track_id[k])
        else:
            owners = sorted({ids.owner.get(p, track_id.get(p, p[1])) for p in parents})
            ids.owner[k] = owners[0]
            for other in owners[1:]:
                ids.merged_away[(k[0], other)] = owners[0]
    for k, o in ids.owner.items():
        ids.tracks.setdefault(o, []).append(k)
    for e in graph.events:
        if e.kind == "disappeared":
            for s in e.sources:
                o = ids.owner.get(tuple(s))
                if o is not None:
                    for t in range(int(s[0]) + 1, len(graph.days)):
                        ids.disappeared.add((t, o))
    return ids
