"""The JSON-ready report that ``dtt env --json`` prints: facts, decision and reasons.

Kept apart from the decision logic so the command line, the Slicer modules and the audit
log all show the same facts in the same words.
"""

from __future__ import annotations

from typing import Any

from DTTLib.hardware.detect import GIB, HardwareInfo
from DTTLib.hardware.profiles import ProfileDecision
from DTTLib.hardware.table import load_profile_table


def _gib(value: int | None) -> float | None:
    return None if value is None else round(value / GIB, 1)


def hardware_facts(info: HardwareInfo) -> dict[str, Any]:
    """The hardware record as plain JSON types, with GiB figures next to the bytes."""
    table = load_profile_table()
    return {
        "gpu_available": info.gpu_available,
        "gpu_name": info.gpu_name,
        "gpu_count": info.gpu_count,
        "vram_total_bytes": info.vram_total_bytes,
        "vram_total_gib": _gib(info.vram_total_bytes),
        "vram_class_gb": table.vram_class_gb(info.vram_total_bytes) if info.gpu_available else None,
        "compute_capability": list(info.compute_capability) if info.compute_capability else None,
        "bf16_supported": info.bf16_supported,
        "cpu_cores": info.cpu_cores,
        "ram_total_bytes": info.ram_total_bytes,
        "ram_total_gib": _gib(info.ram_total_bytes),
        "ram_available_bytes": info.ram_available_bytes,
        "ram_available_gib": _gib(info.ram_available_bytes),
        "platform": info.platform,
        "torch_version": info.torch_version,
        "cuda_version": info.cuda_version,
        "bitsandbytes_available": info.bitsandbytes_available,
        "notes": list(info.notes),
    }


def env_report(info: HardwareInfo, decision: ProfileDecision) -> dict[str, Any]:
    """Hardware facts, the chosen profile and precision, and the reasons in plain words."""
    return {
        "hardware": hardware_facts(info),
        "profile": {
            "name": decision.name,
            "description": decision.description,
            "source": decision.source,
            "settings": decision.settings,
        },
        "precision": {"precision": decision.precision.precision, "device": decision.precision.device},
        "reasons": list(decision.reasons),
    }


def env_report_lines(report: dict[str, Any]) -> list[str]:
    """The report as short lines for people (``dtt env``, the DTT Narrative panel)."""
    hardware = report["hardware"]
    if hardware["gpu_available"]:
        gpu = f"{hardware['gpu_name']} ({hardware['vram_total_gib']} GiB, bf16 " \
              f"{'yes' if hardware['bf16_supported'] else 'no'})"
    else:
        gpu = "none"
    lines = [
        f"GPU: {gpu}",
        f"CPU cores: {hardware['cpu_cores']}, RAM: {hardware['ram_total_gib']} GiB, platform: {hardware['platform']}",
        f"torch: {hardware['torch_version'] or 'not installed'}",
        f"Profile: {report['profile']['name']} — {report['profile']['description']}",
        f"Precision: {report['precision']['precision']} on {report['precision']['device']}",
        "Why:",
    ]
    lines += [f"  - {reason}" for reason in report["reasons"]]
    lines += [f"  note: {note}" for note in hardware["notes"]]
    return lines
