"""Grounding check: every number in a narrative must be a fact (within its rounding), and
every lesion it names must exist. A narrative that fails is flagged, regenerated or replaced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from DTTLib.narrative.facts import LESION_ID, TwinFacts, caveat_lesion_ids, fact_numbers

NUMBER = re.compile(r"(?<![A-Za-z0-9_.])[-+−]?\d+(?:\.\d+)?(?![\d.]*\d)")
LESION_MENTION = LESION_ID
#: Fixed phrases whose digits are names, not measurements.
CONSTANT_PHRASES = ("RECIST 1.1", "iRECIST 1.1")


@dataclass
class GroundingReport:
    numbers_checked: int = 0
    ungrounded: list[str] = field(default_factory=list)
    unknown_lesions: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.ungrounded and not self.unknown_lesions

    def to_dict(self) -> dict[str, object]:
        return {"numbers_checked": self.numbers_checked, "ungrounded": list(self.ungrounded),
                "unknown_lesions": list(self.unknown_lesions)}


def _tolerance(token: str) -> float:
    decimals = len(token.split(".", 1)[1]) if "." in token else 0
    return 0.5 * 10 ** (-decimals) + 1e-9


def _strip_names(text: str, facts: TwinFacts) -> str:
    names = sorted({*facts.lesion_ids, *(t for t, _ in facts.timepoints), *CONSTANT_PHRASES,
                    facts.criteria, facts.patient_id, *(t.name for t in facts.therapy),
                    *(w.scenario for w in facts.whatif), facts.growth.model if facts.growth else ""},
                   key=len, reverse=True)
    for name in names:
        if name and any(ch.isdigit() for ch in name):
            text = re.sub(rf"(?<![\w]){re.escape(name)}(?![\w])", " ", text)
    return text


def check_grounding(text: str, facts: TwinFacts) -> GroundingReport:
    report = GroundingReport()
    known = fact_numbers(facts)
    ids = {i.lower() for i in (*facts.lesion_ids, *caveat_lesion_ids(facts))}
    for match in LESION_MENTION.finditer(text):
        name = match.group(1) or match.group(2)
        if name.lower() not in ids and name not in report.unknown_lesions:
            report.unknown_lesions.append(name)
    for match in NUMBER.finditer(_strip_names(text, facts)):
        token = match.group(0).replace("−", "-")
        value, tol = float(token), _tolerance(token)
        report.numbers_checked += 1
        if not any(abs(value - k) <= tol for k in known):
            report.ungrounded.append(match.group(0))
    return report
