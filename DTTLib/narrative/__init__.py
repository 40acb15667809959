"""Grounded narratives of the twin: facts, prompt, MedGemma / template backends, safety checks.

Typical use::

    from DTTLib.narrative import load_facts, narrate
    result = narrate(load_facts("twin.json"))          # template (CPU default)
    result.text, result.grounding["ungrounded"], result.flags
"""

from DTTLib.narrative.facts import LOW_CONFIDENCE, TwinFacts, facts_from_dict, fact_numbers, load_facts
from DTTLib.narrative.grounding import GroundingReport, check_grounding
from DTTLib.narrative.prompt import MAX_IMAGES, MAX_TOKENS, MAX_TOKENS_MULTI, Prompt, build_prompt
from DTTLib.narrative.safety import AI_LABEL, DISCLAIMER, TEMPLATE_LABEL, advice_categories, fence_notes, remove_advice
from DTTLib.narrative.service import BACKENDS, NarrativeResult, narrate, parse_sections, template_narrative
from DTTLib.narrative.template import MODEL_SECTIONS, QUALITY_SECTION, template_sections

__all__ = [
    "AI_LABEL", "BACKENDS", "DISCLAIMER", "LOW_CONFIDENCE", "MAX_IMAGES", "MAX_TOKENS", "MAX_TOKENS_MULTI",
    "MODEL_SECTIONS", "QUALITY_SECTION", "TEMPLATE_LABEL", "GroundingReport", "NarrativeResult", "Prompt",
    "TwinFacts", "advice_categories", "build_prompt", "check_grounding", "fact_numbers", "facts_from_dict",
    "fence_notes", "load_facts", "narrate", "parse_sections", "remove_advice", "template_narrative",
    "template_sections",
]
