"""Safety rules applied to every narrative, whatever wrote it.

A fixed disclaimer and a label that cannot be removed; no treatment, dosing or prognosis
advice (sentences with such phrases are removed, and a section left empty rejects the
output); clinical notes are data inside delimiters that cannot close early.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

DISCLAIMER = ("Research software, not a medical device. This summary restates measurements and "
              "model outputs only; it is not a diagnosis and gives no treatment, dosing or prognosis "
              "advice. A qualified clinician must review the images and measurements.")
AI_LABEL = "AI-generated summary — verify every statement against the measurements."
TEMPLATE_LABEL = "Automatically generated summary (deterministic template from the measurements; no language model)."

ADVICE_PATTERNS: dict[str, re.Pattern[str]] = {
    "treatment": re.compile(
        r"\b(recommend\w*|advis\w*|we suggest|i suggest|suggest(?:s|ed)? (?:that|start\w*|stop\w*|switch\w*)"
        r"|should (?:be )?(?:start|stop|continu|switch|receiv|treat|undergo|consider|increas|reduc|escalat|add)\w*"
        r"|consider(?:ing)? (?:start|stop|switch|add|increas|reduc|chemo|radio|surg|immuno|resect)\w*"
        r"|(?:start|switch|discontinue|stop|escalate) (?:the |a )?(?:treatment|therapy|chemotherapy|drug|regimen)"
        r"|next line of (?:therapy|treatment)|refer(?:ral)? (?:to|for))", re.I),
    "dosing": re.compile(r"(\b\d+(?:\.\d+)?\s*(?:mg|mcg|µg|Gy|IU)\b|mg/(?:kg|m2|m²)|\bdos(?:e|es|age|ing)\b|\btitrat\w*)", re.I),
    "prognosis": re.compile(r"\b(prognos\w*|life expectancy|(?:overall |progression-free )?survival|months? to live"
                            r"|will (?:die|survive|be cured)|curable|incurable|cure|terminal|fatal|mortality)\b", re.I),
}

NOTES_BEGIN = "<<<CLINICAL_NOTES_BEGIN>>>"
NOTES_END = "<<<CLINICAL_NOTES_END>>>"


@dataclass
class SafetyResult:
    text: str
    removed: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)


def advice_categories(text: str) -> list[str]:
    return [name for name, pattern in ADVICE_PATTERNS.items() if pattern.search(text)]


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]


def remove_advice(text: str) -> SafetyResult:
    """Drop every sentence with advice phrases; report what was removed and why."""
    kept, result = [], SafetyResult("")
    for sentence in _sentences(text):
        found = advice_categories(sentence)
        if found:
            result.removed.append(sentence.strip())
            result.categories += [c for c in found if c not in result.categories]
        else:
            kept.append(sentence.strip())
    result.text = " ".join(kept)
    return result


def fence_notes(notes: str, limit_chars: int = 1500) -> str:
    """Clinical notes as inert data: markers inside them are defused, length is capped."""
    cleaned = notes.replace("<<<", "‹‹‹").replace(">>>", "›››")
    cleaned = re.sub(r"<\s*/?\s*(start_of_turn|end_of_turn|bos|eos|start_of_image|end_of_image)\s*>",
                     "[removed control token]", cleaned, flags=re.I)
    if len(cleaned) > limit_chars:
        cleaned = cleaned[:limit_chars] + " [truncated]"
    return f"{NOTES_BEGIN}\n{cleaned}\n{NOTES_END}"
