"""Building a twin from masks as one cancellable job with progress: what a GUI runs in a worker.

The caller reads the scene on its own thread into a :class:`TwinBuildRequest` (numpy copies, no
MRML node), :func:`compute_twin` does the long part — one registration per pair of scans, then
measuring and tracking, then RECIST and growth fits — and the caller publishes the
:class:`ComputedTwin` on its thread. Cancel is honoured between steps and after the last one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: A progress step: ("register", pair, pairs), ("track",), ("fit",) or ("done",).
Step = tuple


@dataclass
class TwinBuildRequest:
    patient: str
    #: DTTLib.twin.from_masks.TimepointMasks, baseline first: scan, masks, organs and the reader's
    #: non-target status with its iRECIST further increase (True / False / None = not assessed)
    timepoints: list[Any]
    therapy: list[Any]  # TherapyEntry
    new_lesions: list[bool | None]  # per timepoint: the reader's call, or None = as tracking finds
    register_scans: bool = True
    immunotherapy: bool = False
    confirmation_required: bool = False
    min_sd_days: float = 42.0
    previous_overrides: list[Any] = field(default_factory=list)  # the patient's earlier corrections


@dataclass
class ComputedTwin:
    inputs: Any = None  # TwinInputs
    state: Any = None  # TwinState
    whatif: Any = None  # what-if engine, None without a SOD fit
    overrides: list[tuple[Any, str]] = field(default_factory=list)  # (correction, error or "") re-applied
    cancelled: bool = False  # stopped before the end: nothing else is set


def compute_twin(request: TwinBuildRequest, progress: Callable[[int, int, Step], None] | None = None,
                 should_cancel: Callable[[], bool] | None = None) -> ComputedTwin:
    """The twin of ``request``; ``progress(done, total, step)`` as each step starts. Pure: no MRML,
    no Qt, so it is safe in a worker thread. Errors are raised (DTTError names problem and fix)."""
    from DTTLib.tracking.registration import register  # noqa: PLC0415
    from DTTLib.twin.assemble import build_twin  # noqa: PLC0415
    from DTTLib.twin.from_masks import inputs_from_masks  # noqa: PLC0415

    timepoints = request.timepoints
    pairs = len(timepoints) - 1 if request.register_scans else 0
    total, done = pairs + 2, 0

    def start(step: Step) -> bool:
        if should_cancel is not None and should_cancel():
            return False
        if progress is not None:
            progress(done, total, step)
        return True

    registrations = None
    if pairs:
        registrations = [None]
        for pair in range(1, pairs + 1):
            if not start(("register", pair, pairs)):
                return ComputedTwin(cancelled=True)
            registrations.append(register(timepoints[pair - 1].scan, timepoints[pair].scan))
            done += 1
    if not start(("track",)):
        return ComputedTwin(cancelled=True)
    inputs, _graph = inputs_from_masks(request.patient, timepoints, request.therapy,
                                       register_scans=request.register_scans, registrations=registrations,
                                       immunotherapy=request.immunotherapy,
                                       confirmation_required=request.confirmation_required,
                                       min_sd_days=request.min_sd_days)
    for info, flag in zip(inputs.timepoints[1:], request.new_lesions[1:]):  # the baseline has no new lesions
        info.new_lesions = None if flag is None else bool(flag)
    overrides = reapply_overrides(inputs, request.previous_overrides)
    done += 1
    if not start(("fit",)):
        return ComputedTwin(cancelled=True)
    state, whatif = build_twin(inputs)
    done += 1
    if should_cancel is not None and should_cancel():
        return ComputedTwin(cancelled=True)
    if progress is not None:
        progress(done, total, ("done",))
    return ComputedTwin(inputs, state, whatif, overrides)


def reapply_overrides(inputs: Any, previous: list[Any]) -> list[tuple[Any, str]]:
    """Rebuilding a patient's twin re-tracks the lesions; the user's corrections (each with its
    reason) are applied again where their lesions still exist. Returns (correction, error or "")."""
    from DTTLib.errors import DTTError  # noqa: PLC0415
    from DTTLib.tracking.records import IdentityGraph  # noqa: PLC0415

    if not previous:
        return []
    graph = IdentityGraph.from_dict(inputs.identity)
    outcomes = []
    for override in previous:
        try:
            graph.apply_override(override)
            outcomes.append((override, ""))
        except DTTError as error:
            outcomes.append((override, error.message))
    inputs.identity = graph.to_dict()
    return outcomes


__all__ = ["ComputedTwin", "TwinBuildRequest", "compute_twin", "reapply_overrides"]
