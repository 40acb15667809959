"""Pick the precision and the hardware profile for this machine (design ADR-012).

The decision is made here from the hardware facts, never left to the libraries: with no GPU,
bitsandbytes "loads" a 4-bit model on the CPU without complaint and fails later. Every
decision carries its reasons in plain words so ``dtt env`` can say why.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from DTTLib.errors import DTTError, InputError
from DTTLib.hardware.detect import HardwareInfo
from DTTLib.hardware.table import (
    HALF_PRECISIONS,
    Profile,
    ProfileTable,
    load_profile_table,
)

#: Environment variable naming a profile when no explicit one is given.
PROFILE_ENV_VAR = "DTT_PROFILE"

_REQUIREMENT_MISSING = {
    "gpu": "there is no usable GPU (bitsandbytes would silently load 4-bit weights on the CPU)",
    "bitsandbytes": "bitsandbytes is not installed (pip install bitsandbytes enables NF4)",
}


@dataclass(frozen=True)
class PrecisionDecision:
    """Precision class of the design table: 'bf16' | 'fp16' | 'nf4' | 'cpu', and where."""

    precision: str
    device: str
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ProfileDecision:
    """The profile in force, its settings with 'auto' resolved, and why."""

    name: str
    settings: dict[str, Any]
    precision: PrecisionDecision
    reasons: list[str]
    description: str = ""
    #: 'auto', 'argument' or 'DTT_PROFILE': where the profile name came from.
    source: str = "auto"


def profile_names() -> list[str]:
    """Valid profile names, sorted."""
    return load_profile_table().names()


def _usable_vram(info: HardwareInfo) -> int:
    return int(info.vram_total_bytes or 0) if info.gpu_available else 0


def describe_gpu(info: HardwareInfo, table: ProfileTable | None = None) -> str:
    """'GPU 'Tesla T4' with 14.7 GiB reported (16 GB class)' or 'No usable GPU (why)'."""
    table = table or load_profile_table()
    if not info.gpu_available:
        why = "; ".join(info.notes) if info.notes else "none detected"
        return f"No usable GPU ({why})"
    vram_class = table.vram_class_gb(info.vram_total_bytes)
    smallest = min(table.vram_classes_gb)
    size = f"{vram_class:g} GB class" if vram_class is not None else f"below the {smallest:g} GB class"
    return f"GPU '{info.gpu_name or 'unknown'}' with {info.vram_total_gib:.1f} GiB reported ({size})"


def _bf16_missing(info: HardwareInfo) -> str:
    if info.compute_capability:
        major, minor = info.compute_capability
        return f"the GPU does not support bf16 (compute capability {major}.{minor}; native bf16 needs 8.0)"
    return "the GPU does not support bf16"


def choose_precision(info: HardwareInfo, table: ProfileTable | None = None) -> PrecisionDecision:
    """Walk the precision rules top to bottom; a row whose requirements fail is skipped."""
    table = table or load_profile_table()
    gpu = describe_gpu(info, table)
    vram = _usable_vram(info)
    have = {"gpu": info.gpu_available, "bitsandbytes": info.bitsandbytes_available}
    reasons: list[str] = []
    for rule in table.rules:
        if rule.min_vram_gb > 0 and not table.meets(vram, rule.min_vram_gb):
            continue
        missing = [r for r in rule.requires if not have.get(r, False)]
        if missing:
            explained = " and ".join(_REQUIREMENT_MISSING.get(r, f"{r} is missing") for r in missing)
            reasons.append(f"{gpu}: {rule.precision} would fit, but {explained}; falling back")
            continue
        precision, because = rule.precision, rule.why
        if precision == "bf16" and not info.bf16_supported and rule.without_bf16:
            precision, because = rule.without_bf16, _bf16_missing(info)
        elif precision == "bf16":
            because = f"{rule.why}, and the GPU supports bf16 natively"
        elif precision == "cpu" and info.gpu_available and not reasons:
            smallest = min((r.min_vram_gb for r in table.rules if r.min_vram_gb > 0), default=0.0)
            because = f"the GPU is below the {smallest:g} GB class, too small for MedGemma; {rule.why}"
        subject = gpu if not reasons else "Fallback"
        reasons.append(f"{subject}: {precision} because {because}")
        return PrecisionDecision(precision, "cpu" if precision == "cpu" else "cuda", reasons)
    # Unreachable with a validated table (its last row is the unconditional CPU row).
    reasons.append(f"{gpu}: cpu because no precision rule applied")
    return PrecisionDecision("cpu", "cpu", reasons)


def _matches(profile: Profile, info: HardwareInfo, precision: str, table: ProfileTable) -> bool:
    match = profile.match
    if precision not in match.precisions:
        return False
    vram = _usable_vram(info)
    if match.min_vram_gb is not None and not table.meets(vram, match.min_vram_gb):
        return False
    return match.max_vram_gb is None or not table.meets(vram, match.max_vram_gb)


def _auto_profile(info: HardwareInfo, precision: PrecisionDecision, table: ProfileTable) -> Profile:
    """A profile for this platform wins over an 'any' profile; the table is unambiguous."""
    candidates = [p for p in table.profiles.values() if _matches(p, info, precision.precision, table)]
    specific = [p for p in candidates if info.platform in p.match.platforms]
    generic = [p for p in candidates if p.match.is_generic()]
    chosen = specific or generic
    if not chosen:  # a validated table covers every decision; guard anyway
        raise DTTError(f"No hardware profile matches precision {precision.precision} on {info.platform}",
                       "Set DTT_PROFILE=cpu_only, and report this as a bug in profiles.json.")
    return chosen[0]


def _cannot_run(profile: Profile, info: HardwareInfo, precision: PrecisionDecision,
                table: ProfileTable) -> list[str]:
    """Why this machine cannot run ``profile`` (empty when it can). Platform is not checked:
    a Kaggle profile runs on any machine with the same GPU class."""
    problems: list[str] = []
    settings = profile.settings
    precisions = {settings["embeddings"]["precision"], settings["narrative"]["precision"]}
    if profile.needs_gpu() and not info.gpu_available:
        why = "; ".join(info.notes) if info.notes else "none detected"
        return [f"it needs a GPU and none is usable ({why})"]
    minimum = profile.match.min_vram_gb
    if minimum is not None and not table.meets(_usable_vram(info), minimum):
        problems.append(f"it needs a GPU of the {minimum:g} GB class or more, and this machine has "
                        f"{describe_gpu(info, table)}")
    if "nf4" in precisions and not info.bitsandbytes_available:
        problems.append("it runs NF4, which needs bitsandbytes, and bitsandbytes is not installed")
    if "bf16" in precisions and not info.bf16_supported:
        problems.append(f"it runs bf16 and {_bf16_missing(info)}")
    if not problems and "auto" in precisions and precision.precision not in HALF_PRECISIONS:
        problems.append(f"it runs half precision on the GPU, and this machine's precision is {precision.precision}")
    return problems


def _resolve(profile: Profile, precision: PrecisionDecision) -> tuple[dict[str, Any], PrecisionDecision]:
    """Settings with 'auto' replaced by the decided precision, and the precision the
    narrative will really run at (which a requested profile may lower, e.g. to nf4)."""
    settings = profile.settings
    for phase in settings.values():
        if phase.get("precision") == "auto":
            phase["precision"] = precision.precision
    narrative = settings["narrative"]
    if narrative["backend"] == "template":
        effective, device = "cpu", "cpu"
    else:
        effective, device = narrative["precision"], narrative["device"]
    if (effective, device) == (precision.precision, precision.device):
        return settings, precision
    note = (f"profile '{profile.name}' runs the narrative as {effective} on {device} "
            f"(the hardware alone allows {precision.precision} on {precision.device})")
    return settings, PrecisionDecision(effective, device, [*precision.reasons, note])


def choose_profile(info: HardwareInfo, requested: str | None = None,
                   environ: Mapping[str, str] | None = None) -> ProfileDecision:
    """The profile for ``info``: ``requested`` (else $DTT_PROFILE) when the hardware can run
    it, the automatic choice otherwise. Raises InputError for an unknown or unrunnable name."""
    table = load_profile_table()
    precision = choose_precision(info, table)
    auto = _auto_profile(info, precision, table)
    env = os.environ if environ is None else environ
    source = "argument"
    if requested is None or not requested.strip():
        requested, source = env.get(PROFILE_ENV_VAR), PROFILE_ENV_VAR
    name = (requested or "").strip()
    origin = f" (from {PROFILE_ENV_VAR})" if source == PROFILE_ENV_VAR else ""
    unset = f"unset {PROFILE_ENV_VAR}" if source == PROFILE_ENV_VAR else "leave the profile out"

    if not name:
        profile, source = auto, "auto"
        note = f"profile '{auto.name}' chosen automatically for platform '{info.platform}'"
    else:
        if name not in table.profiles:
            raise InputError(f"Unknown hardware profile '{name}'{origin}",
                             f"Use one of: {', '.join(table.names())}; or {unset} to choose "
                             f"automatically ('{auto.name}' fits this machine).")
        profile = table.profiles[name]
        problems = _cannot_run(profile, info, precision, table)
        if problems:
            raise InputError(f"Hardware profile '{name}'{origin} cannot run on this machine: "
                             + "; ".join(problems),
                             f"Use profile '{auto.name}', which fits this machine, or {unset} "
                             "to choose automatically.")
        note = f"profile '{name}' requested{origin or ' explicitly'}; this machine can run it"
        if not profile.match.is_generic() and info.platform not in profile.match.platforms:
            note += (f" (it is meant for {', '.join(profile.match.platforms)}, "
                     f"this machine looks like '{info.platform}')")
    settings, effective = _resolve(profile, precision)
    reasons = [*effective.reasons, note]
    return ProfileDecision(profile.name, settings, effective, reasons, profile.description, source)
