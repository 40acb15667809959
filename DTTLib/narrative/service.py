"""Write a narrative: generate → parse sections → remove advice → check grounding →
regenerate once with a reminder → otherwise fall back to the template. Always labelled,
always with the fixed disclaimer.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from DTTLib.errors import InputError
from DTTLib.narrative.facts import TwinFacts
from DTTLib.narrative.grounding import check_grounding
from DTTLib.narrative.prompt import Prompt, build_prompt
from DTTLib.narrative.safety import AI_LABEL, DISCLAIMER, TEMPLATE_LABEL, remove_advice
from DTTLib.narrative.template import MODEL_SECTIONS, QUALITY_SECTION, caveats, quality, template_sections

BACKENDS = ("template", "medgemma-4b", "medgemma-27b")


class Generator(Protocol):
    name: str

    def generate(self, prompt: Prompt, on_text: Callable[[str], None] | None = None,
                 cancel: threading.Event | None = None) -> str: ...


@dataclass
class NarrativeResult:
    text: str
    sections: dict[str, str]
    backend: str
    grounding: dict[str, Any]
    flags: list[str] = field(default_factory=list)
    label: str = ""
    disclaimer: str = DISCLAIMER
    attempts: int = 0
    prompt_tokens: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "sections": self.sections, "backend": self.backend,
                "grounding": self.grounding, "flags": self.flags, "label": self.label,
                "disclaimer": self.disclaimer, "attempts": self.attempts,
                "prompt_tokens": self.prompt_tokens}

    def markdown(self) -> str:
        return self.text


def compose(sections: dict[str, str], label: str) -> str:
    body = "\n\n".join(f"## {title}\n{text}" for title, text in sections.items())
    return f"*{label}*\n\n{body}\n\n---\n{DISCLAIMER}\n"


HEADING = re.compile(r"^\s*(?:#+\s*|\*\*)?\s*(" + "|".join(re.escape(s) for s in MODEL_SECTIONS)
                     + r")\s*(?:\*\*)?\s*:?\s*$", re.I | re.M)


def parse_sections(text: str) -> dict[str, str]:
    """The model's sections by title (case-insensitive headings); missing ones are absent."""
    titles = {s.lower(): s for s in MODEL_SECTIONS}
    found = list(HEADING.finditer(text))
    sections: dict[str, str] = {}
    for i, match in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(text)
        sections[titles[match.group(1).lower()]] = text[match.end():end].strip()
    return sections


def _check_model_text(raw: str, facts: TwinFacts) -> tuple[dict[str, str] | None, list[str], dict[str, Any]]:
    """(sections or None when rejected, flags, grounding report)."""
    flags: list[str] = []
    sections = parse_sections(raw)
    missing = [s for s in MODEL_SECTIONS if not sections.get(s)]
    if missing:
        return None, [f"missing sections: {', '.join(missing)}"], {"numbers_checked": 0, "ungrounded": [],
                                                                   "unknown_lesions": []}
    cleaned: dict[str, str] = {}
    for title, text in sections.items():
        result = remove_advice(text)
        if result.removed:
            flags.append(f"advice removed from '{title}' ({', '.join(result.categories)}): "
                         + " | ".join(result.removed))
        if not result.text.strip():
            return None, [*flags, f"section '{title}' was only advice: output rejected"], \
                {"numbers_checked": 0, "ungrounded": [], "unknown_lesions": []}
        cleaned[title] = result.text
    # the engine's caveats reach the reader whatever the model wrote: appended unless quoted in full
    if facts.caveats and not all(c.rstrip(" .") in cleaned["Response"] for c in facts.caveats):
        cleaned["Response"] = f"{cleaned['Response']} {caveats(facts)}"
    cleaned[QUALITY_SECTION] = quality(facts)
    report = check_grounding("\n".join(cleaned.values()), facts)
    if not report.ok:
        what = []
        if report.ungrounded:
            what.append("numbers not in the facts: " + ", ".join(report.ungrounded))
        if report.unknown_lesions:
            what.append("lesions that do not exist: " + ", ".join(report.unknown_lesions))
        return None, [*flags, "ungrounded output (" + "; ".join(what) + ")"], report.to_dict()
    return cleaned, flags, report.to_dict()


def template_narrative(facts: TwinFacts, flags: list[str] | None = None) -> NarrativeResult:
    sections = template_sections(facts)
    report = check_grounding("\n".join(sections.values()), facts)
    flags = list(flags or [])
    if not report.ok:  # a template bug must never pass silently
        flags.append("template output failed its own grounding check")
    return NarrativeResult(compose(sections, TEMPLATE_LABEL), sections, "template", report.to_dict(),
                           flags, TEMPLATE_LABEL)


def narrate(facts: TwinFacts, generator: Generator | None = None, images: list[Any] | None = None,
            on_text: Callable[[str], None] | None = None, cancel: threading.Event | None = None,
            max_attempts: int = 2, count_tokens: Callable[[str], int] | None = None,
            max_tokens: int | None = None) -> NarrativeResult:
    """The narrative for ``facts``: from ``generator`` when given and it passes the checks,
    else from the template (with the reasons in ``flags``)."""
    if generator is None:
        return template_narrative(facts)
    if max_attempts < 1:
        raise InputError("max_attempts must be at least 1", "Use 1 or 2.")
    flags: list[str] = []
    reminder = ""
    prompt_tokens = None
    for attempt in range(1, max_attempts + 1):
        prompt = build_prompt(facts, images, count_tokens or getattr(generator, "count_tokens", None),
                              max_tokens, reminder=reminder)
        prompt_tokens = prompt.token_count
        if prompt.dropped:
            flags.append("left out of the prompt to fit the token budget: " + ", ".join(prompt.dropped))
        raw = generator.generate(prompt, on_text, cancel)
        if cancel is not None and cancel.is_set():
            result = template_narrative(facts, [*flags, "generation cancelled: template shown instead"])
            result.attempts = attempt
            return result
        sections, new_flags, grounding = _check_model_text(raw, facts)
        flags += [f"attempt {attempt}: {f}" for f in new_flags]
        if sections is not None:
            return NarrativeResult(compose(sections, AI_LABEL), sections, generator.name, grounding,
                                   flags, AI_LABEL, attempts=attempt, prompt_tokens=prompt_tokens)
        reminder = ("REMINDER: your previous answer broke the rules (" + "; ".join(new_flags)[:300]
                    + "). Use only numbers and lesion ids from the FACTS and give no advice.")
    result = template_narrative(facts, [*flags, f"fell back to the template after {max_attempts} attempt(s)"])
    result.attempts = max_attempts
    result.prompt_tokens = prompt_tokens
    return result
