"""The profile table (``profiles.json``) as typed, validated records.

The precision rules and the profiles are data so they can be tuned without touching code;
this module turns the JSON into frozen records once, and refuses a table that is
incomplete or ambiguous, because a wrong table would silently put a model on a GPU it
does not fit.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from DTTLib.errors import DTTError
from DTTLib.hardware.detect import GIB

PROFILES_PATH = Path(__file__).with_name("profiles.json")

#: Hardware precision classes of the design table (ADR-012); 'cpu' = CPU, template narrative.
PRECISIONS = ("bf16", "fp16", "nf4", "cpu")
HALF_PRECISIONS = ("bf16", "fp16")
PLATFORMS = ("kaggle", "colab", "local")
ANY_PLATFORM = "any"
DEVICES = ("cuda", "cpu")
REQUIREMENTS = ("gpu", "bitsandbytes")
NARRATIVE_BACKENDS = ("medgemma-4b", "medgemma-27b", "template")
#: Precision values allowed in profile settings; 'auto' = the table's decision (bf16/fp16).
SETTING_PRECISIONS = ("bf16", "fp16", "nf4", "fp32", "auto")
PHASE_KEYS: dict[str, tuple[str, ...]] = {
    "segmentation": ("model", "device", "batch_size"),
    "embeddings": ("model", "device", "precision", "batch_size"),
    "narrative": ("backend", "device", "precision", "max_context_tokens",
                  "max_context_tokens_multi_timepoint", "max_images"),
}
PROFILE_KEYS = ("description", "match", "settings")
MATCH_KEYS = ("platforms", "precisions", "min_vram_gb", "max_vram_gb")
RULE_KEYS = ("min_vram_gb", "precision", "requires", "why")


@dataclass(frozen=True)
class PrecisionRule:
    """One row of the design's precision table."""

    min_vram_gb: float
    precision: str
    requires: tuple[str, ...]
    why: str
    #: used instead of ``precision`` (bf16) when the GPU lacks native bf16 (T4, V100).
    without_bf16: str | None = None


@dataclass(frozen=True)
class MatchRule:
    """When a profile is chosen automatically; bounds are nominal GB classes, max exclusive."""

    platforms: tuple[str, ...]
    precisions: tuple[str, ...]
    min_vram_gb: float | None
    max_vram_gb: float | None

    def is_generic(self) -> bool:
        return ANY_PLATFORM in self.platforms


@dataclass(frozen=True)
class Profile:
    """A named set of per-phase settings (settings are copied out, never handed out)."""

    name: str
    description: str
    match: MatchRule
    _settings_json: str

    @property
    def settings(self) -> dict[str, Any]:
        return json.loads(self._settings_json)

    def needs_gpu(self) -> bool:
        return any(phase.get("device") == "cuda" for phase in self.settings.values())


@dataclass(frozen=True)
class ProfileTable:
    """The whole table plus the VRAM tolerance arithmetic every comparison goes through."""

    tolerance: float
    vram_classes_gb: tuple[float, ...]
    rules: tuple[PrecisionRule, ...]
    profiles: Mapping[str, Profile]

    def meets(self, vram_bytes: int | None, nominal_gb: float | None) -> bool:
        """True when a card reporting ``vram_bytes`` belongs to the ``nominal_gb`` class or
        above: reported GiB >= nominal * (1 - tolerance). ``None`` means no bound."""
        if nominal_gb is None:
            return True
        return (vram_bytes or 0) / GIB >= nominal_gb * (1.0 - self.tolerance)

    def vram_class_gb(self, vram_bytes: int | None) -> float | None:
        """Largest named class the card reaches (16 for a T4's 14.7 GiB); None below all."""
        reached = [c for c in self.vram_classes_gb if self.meets(vram_bytes, c)]
        return max(reached) if reached else None

    def names(self) -> list[str]:
        return sorted(self.profiles)


# -- validation -----------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_rules(data: Mapping[str, Any], problems: list[str]) -> None:
    tolerance = data.get("vram_tolerance", {})
    fraction = tolerance.get("fraction") if isinstance(tolerance, Mapping) else None
    if not _is_number(fraction) or not 0 <= fraction < 0.5:
        problems.append("vram_tolerance.fraction must be a number in [0, 0.5)")
    classes = data.get("vram_classes_gb")
    if (not isinstance(classes, list) or not classes or not all(_is_number(c) and c > 0 for c in classes)
            or classes != sorted(set(classes))):
        problems.append("vram_classes_gb must be a non-empty, increasing list of positive numbers")
    rules = data.get("precision_rules")
    if not isinstance(rules, list) or not rules:
        problems.append("precision_rules must be a non-empty list")
        return
    previous = float("inf")
    for i, rule in enumerate(rules):
        where = f"precision_rules[{i}]"
        if not isinstance(rule, Mapping):
            problems.append(f"{where} must be an object")
            continue
        missing = [k for k in RULE_KEYS if k not in rule]
        if missing:
            problems.append(f"{where} lacks {', '.join(missing)}")
            continue
        if rule["precision"] not in PRECISIONS:
            problems.append(f"{where}.precision must be one of {', '.join(PRECISIONS)}")
        if rule.get("without_bf16") is not None and rule["without_bf16"] not in PRECISIONS:
            problems.append(f"{where}.without_bf16 must be one of {', '.join(PRECISIONS)}")
        if not isinstance(rule["requires"], list) or any(r not in REQUIREMENTS for r in rule["requires"]):
            problems.append(f"{where}.requires must list only {', '.join(REQUIREMENTS)}")
        if not _is_number(rule["min_vram_gb"]) or rule["min_vram_gb"] < 0:
            problems.append(f"{where}.min_vram_gb must be a number >= 0")
        elif rule["min_vram_gb"] >= previous:
            problems.append("precision_rules must be ordered by decreasing min_vram_gb")
        else:
            previous = rule["min_vram_gb"]
    last = rules[-1]
    if not (isinstance(last, Mapping) and last.get("min_vram_gb") == 0 and last.get("precision") == "cpu"
            and not last.get("requires")):
        problems.append("the last precision rule must be the unconditional CPU row (min_vram_gb 0, precision cpu)")


def _check_profile(name: str, profile: Any, half_min_gb: float | None, problems: list[str]) -> None:
    where = f"profile '{name}'"
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        problems.append(f"{where}: names are lower-case letters, digits and underscores")
    if not isinstance(profile, Mapping):
        problems.append(f"{where} must be an object")
        return
    missing = [k for k in PROFILE_KEYS if k not in profile]
    if missing:
        problems.append(f"{where} lacks {', '.join(missing)}")
        return
    if not isinstance(profile["description"], str) or not profile["description"].strip():
        problems.append(f"{where}: description must be a non-empty string")
    match = profile["match"]
    if not isinstance(match, Mapping) or any(k not in match for k in MATCH_KEYS):
        problems.append(f"{where}: match needs {', '.join(MATCH_KEYS)}")
        return
    platforms, precisions = match["platforms"], match["precisions"]
    if (not isinstance(platforms, list) or not platforms
            or any(p not in PLATFORMS + (ANY_PLATFORM,) for p in platforms)
            or (ANY_PLATFORM in platforms and len(platforms) > 1)):
        problems.append(f"{where}: match.platforms must be ['any'] or a list of {', '.join(PLATFORMS)}")
    if not isinstance(precisions, list) or not precisions or any(p not in PRECISIONS for p in precisions):
        problems.append(f"{where}: match.precisions must list some of {', '.join(PRECISIONS)}")
        precisions = []
    low, high = match["min_vram_gb"], match["max_vram_gb"]
    for key, value in (("min_vram_gb", low), ("max_vram_gb", high)):
        if value is not None and (not _is_number(value) or value < 0):
            problems.append(f"{where}: match.{key} must be null or a number >= 0")
    if _is_number(low) and _is_number(high) and low >= high:
        problems.append(f"{where}: match.min_vram_gb must be below max_vram_gb")

    settings = profile["settings"]
    if not isinstance(settings, Mapping) or set(settings) != set(PHASE_KEYS):
        problems.append(f"{where}: settings must have exactly the phases {', '.join(PHASE_KEYS)}")
        return
    for phase, keys in PHASE_KEYS.items():
        block = settings[phase]
        if not isinstance(block, Mapping) or any(k not in block for k in keys):
            problems.append(f"{where}: settings.{phase} needs {', '.join(keys)}")
            return
        if block["device"] not in DEVICES:
            problems.append(f"{where}: settings.{phase}.device must be one of {', '.join(DEVICES)}")
        if "batch_size" in keys and not _is_count(block["batch_size"]):
            problems.append(f"{where}: settings.{phase}.batch_size must be an integer >= 1")
        if "model" in keys and (not isinstance(block["model"], str) or not block["model"]):
            problems.append(f"{where}: settings.{phase}.model must be a non-empty string")
    embeddings, narrative = settings["embeddings"], settings["narrative"]
    if embeddings["precision"] not in SETTING_PRECISIONS:
        problems.append(f"{where}: settings.embeddings.precision must be one of {', '.join(SETTING_PRECISIONS)}")
    if narrative["backend"] not in NARRATIVE_BACKENDS:
        problems.append(f"{where}: settings.narrative.backend must be one of {', '.join(NARRATIVE_BACKENDS)}")
    elif narrative["backend"] == "template":
        if narrative["precision"] is not None or narrative["device"] != "cpu":
            problems.append(f"{where}: the template narrative runs on cpu with precision null")
    elif narrative["precision"] not in ("bf16", "fp16", "nf4", "auto"):
        problems.append(f"{where}: settings.narrative.precision must be bf16, fp16, nf4 or auto")
    for key in ("max_context_tokens", "max_context_tokens_multi_timepoint", "max_images"):
        if not _is_count(narrative[key]):
            problems.append(f"{where}: settings.narrative.{key} must be an integer >= 1")
    if (_is_count(narrative["max_context_tokens"]) and _is_count(narrative["max_context_tokens_multi_timepoint"])
            and narrative["max_context_tokens_multi_timepoint"] < narrative["max_context_tokens"]):
        problems.append(f"{where}: max_context_tokens_multi_timepoint must be >= max_context_tokens")

    uses_auto = "auto" in (embeddings["precision"], narrative["precision"])
    if uses_auto and (any(p not in HALF_PRECISIONS for p in precisions) or half_min_gb is None
                      or not _is_number(low) or low < half_min_gb):
        problems.append(f"{where}: precision 'auto' needs match.precisions within bf16/fp16 and "
                        f"match.min_vram_gb >= {half_min_gb} (where the table always gives bf16 or fp16)")
    gpu_phases = [p for p in PHASE_KEYS if settings[p]["device"] == "cuda"]
    if gpu_phases and "cpu" in precisions:
        problems.append(f"{where}: matches the cpu precision but puts {', '.join(gpu_phases)} on cuda")
    if not gpu_phases and any(p != "cpu" for p in precisions):
        problems.append(f"{where}: runs everything on cpu, so it may only match the cpu precision")


def _overlap(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    low = max(a["min_vram_gb"] or 0, b["min_vram_gb"] or 0)
    highs = [h for h in (a["max_vram_gb"], b["max_vram_gb"]) if h is not None]
    return not highs or low < min(highs)


def _check_ambiguity(profiles: Mapping[str, Any], problems: list[str]) -> None:
    """Two profiles of the same specificity must never both match the same machine."""
    names = sorted(profiles)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            a, b = profiles[first]["match"], profiles[second]["match"]
            shared_platforms = set(a["platforms"]) & set(b["platforms"])
            shared_precisions = set(a["precisions"]) & set(b["precisions"])
            if shared_platforms and shared_precisions and _overlap(a, b):
                problems.append(f"profiles '{first}' and '{second}' both match platform "
                                f"{sorted(shared_platforms)[0]}, precision {sorted(shared_precisions)[0]} "
                                "and overlapping VRAM ranges")


def _possible_precisions(rules: list[Mapping[str, Any]], vram_gb: float) -> set[str]:
    """Every precision the rules can give a GPU of ``vram_gb`` (requirements may fail)."""
    found: set[str] = set()
    for rule in rules:
        if vram_gb >= rule["min_vram_gb"]:
            found.add(rule["precision"])
            if rule.get("without_bf16"):
                found.add(rule["without_bf16"])
            if not rule["requires"]:
                break
    return found


def _check_coverage(data: Mapping[str, Any], problems: list[str]) -> None:
    """The 'any' profiles must cover everything the rules can decide, on every platform."""
    generic = [p["match"] for p in data["profiles"].values() if ANY_PLATFORM in p["match"]["platforms"]]
    points = sorted({0.0, *map(float, data["vram_classes_gb"]), *(float(r["min_vram_gb"]) for r in data["precision_rules"])})
    points += [points[-1] * 2 + 1]
    for vram in points:
        for precision in sorted(_possible_precisions(data["precision_rules"], vram)):
            if not any(precision in m["precisions"]
                       and (m["min_vram_gb"] is None or vram >= m["min_vram_gb"])
                       and (m["max_vram_gb"] is None or vram < m["max_vram_gb"]) for m in generic):
                problems.append(f"no 'any' profile covers precision {precision} at the {vram:g} GB class")


def validate_profile_data(data: Any) -> list[str]:
    """Problems with a parsed profiles.json, in plain words; empty when the table is usable."""
    if not isinstance(data, Mapping):
        return ["the top level must be an object"]
    problems: list[str] = []
    _check_rules(data, problems)
    profiles = data.get("profiles")
    if not isinstance(profiles, Mapping) or not profiles:
        problems.append("profiles must be a non-empty object")
        return problems
    if problems:
        return problems
    half = [r["min_vram_gb"] for r in data["precision_rules"] if r["precision"] in HALF_PRECISIONS]
    half_min_gb = min(half) if half else None
    for name, profile in profiles.items():
        _check_profile(name, profile, half_min_gb, problems)
    if not problems:
        _check_ambiguity(profiles, problems)
        _check_coverage(data, problems)
    return problems


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"duplicate key(s) {', '.join(duplicates)}")
    return dict(pairs)


def table_from_data(data: Mapping[str, Any]) -> ProfileTable:
    """Build the records from parsed JSON (validated first)."""
    problems = validate_profile_data(data)
    if problems:
        raise DTTError("The hardware profile table is invalid: " + "; ".join(problems),
                       f"Restore {PROFILES_PATH.name} from the extension's release.")
    rules = tuple(
        PrecisionRule(float(r["min_vram_gb"]), r["precision"], tuple(r["requires"]), r["why"], r.get("without_bf16"))
        for r in data["precision_rules"]
    )
    profiles = {
        name: Profile(
            name=name,
            description=p["description"],
            match=MatchRule(tuple(p["match"]["platforms"]), tuple(p["match"]["precisions"]),
                            p["match"]["min_vram_gb"], p["match"]["max_vram_gb"]),
            _settings_json=json.dumps(copy.deepcopy(p["settings"])),
        )
        for name, p in data["profiles"].items()
    }
    return ProfileTable(float(data["vram_tolerance"]["fraction"]),
                        tuple(data["vram_classes_gb"]), rules, MappingProxyType(profiles))


@functools.cache
def load_profile_table(path: str | None = None) -> ProfileTable:
    """Read and validate profiles.json once per process (``path`` for tests)."""
    source = Path(path) if path else PROFILES_PATH
    try:
        data = json.loads(source.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (OSError, ValueError) as exc:
        raise DTTError(f"Cannot read the hardware profile table {source}: {exc}",
                       "Reinstall the extension or restore the file.") from exc
    return table_from_data(data)
