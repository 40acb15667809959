"""Which narrative backend runs here, and why; building the MedGemma generator via the manager."""

from __future__ import annotations

from typing import Any

from DTTLib.errors import InputError

MODEL_BACKENDS = {"medgemma-4b": "medgemma-4b", "medgemma-27b": "medgemma-27b", "medgemma": "medgemma-4b"}


def choose_backend(requested: str | None, profile: Any) -> tuple[str, str]:
    """(backend, reason). ``profile`` is a ``ProfileDecision``; 'auto'/None follows it."""
    chosen = profile.settings["narrative"]["backend"]
    why = "; ".join(profile.precision.reasons[-1:]) or profile.name
    if requested in (None, "", "auto"):
        return chosen, f"profile '{profile.name}' chooses {chosen} ({why})"
    if requested == "template":
        return "template", "requested: deterministic template"
    if requested not in MODEL_BACKENDS:
        raise InputError(f"Unknown narrative backend '{requested}'",
                         "Use template, medgemma-4b, medgemma-27b or auto.")
    backend = MODEL_BACKENDS[requested]
    if chosen == "template":
        return backend, (f"requested {backend}; this machine's profile '{profile.name}' would use the "
                         f"template ({why}), so expect slow CPU generation")
    return backend, f"requested {backend} on profile '{profile.name}'"


def medgemma_generator(manager: Any, model: str, max_new_tokens: int = 400,
                       allow_download: bool = True, name: str | None = None) -> Any:
    """Load (phase 'narrative', other phases unloaded) and wrap as a generator."""
    from DTTLib.narrative.generator import MedGemmaGenerator  # noqa: PLC0415

    loaded = manager.load("narrative", model, allow_download=allow_download)
    return MedGemmaGenerator(loaded.model, loaded.processor, max_new_tokens,
                             name=name or loaded.model_id)
