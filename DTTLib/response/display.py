"""How the RECIST engine's warnings and the reader's further-increase call read in every view.

The engine (:mod:`DTTLib.response.engine`) warns when it read an input a certain way or set it
aside: a non-target "further increase" it could not count, a timepoint treated as NE, a response
or an iUPD not yet confirmed. Each changes how far the response can be trusted, so every place
that shows a response (``dtt recist``, the ``dtt run`` report and summary, the Digital Twin
Tumor module) shows the count next to it and the whole list, in the words written here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def recist_warnings(recist: Mapping[str, Any] | None) -> list[str]:
    """The warnings of an engine result dict (``result_to_dict``, ``TwinState.recist``); [] if none."""
    if not recist:
        return []
    return [str(w) for w in recist.get("warnings") or []]


def warning_count(count: int, criteria: str) -> str:
    """``"2 iRECIST warnings"``: what a status line carries next to the response."""
    return f"{count} {criteria} warning{'' if count == 1 else 's'}"


def warning_heading(count: int, criteria: str) -> str:
    """The line above the list: how many, and that they bear on the response."""
    return f"{warning_count(count, criteria)} — read before relying on the response:"


def warning_lines(warnings: Sequence[str], criteria: str, bullet: str = "  - ") -> list[str]:
    """The heading, then one line per warning; no lines when there is no warning."""
    if not warnings:
        return []
    return [warning_heading(len(warnings), criteria)] + [f"{bullet}{w}" for w in warnings]


def further_increase_text(timepoint: Mapping[str, Any]) -> str | None:
    """The reader's iRECIST non-target further-increase call of one engine timepoint, for a table
    cell: "yes", "no", "not assessed" where it matters (a follow-up whose non-target status is PD:
    there a missing call keeps iUPD), None where the call does not apply (baseline, no call)."""
    if timepoint.get("is_baseline"):
        return None
    call = timepoint.get("non_target_further_increase")
    if call is True:
        return "yes"
    if call is False:
        return "no"
    return "not assessed" if timepoint.get("non_target") == "PD" else None
