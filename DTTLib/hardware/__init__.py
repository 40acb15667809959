"""Hardware detection, the precision table and hardware profiles (plain Python, no Qt/MRML).

``detect_hardware()`` gathers the facts without ever raising; ``choose_profile()`` turns
them into per-phase settings following the design's precision table (ADR-012), which lives
in ``profiles.json``; ``env_report()`` is what ``dtt env --json`` prints.
"""

from DTTLib.hardware.detect import HardwareInfo, detect_hardware, detect_platform
from DTTLib.hardware.profiles import (
    PROFILE_ENV_VAR,
    PrecisionDecision,
    ProfileDecision,
    choose_precision,
    choose_profile,
    describe_gpu,
    profile_names,
)
from DTTLib.hardware.report import env_report, hardware_facts
from DTTLib.hardware.table import (
    PROFILES_PATH,
    ProfileTable,
    load_profile_table,
    validate_profile_data,
)

__all__ = [
    "PROFILES_PATH",
    "PROFILE_ENV_VAR",
    "HardwareInfo",
    "PrecisionDecision",
    "ProfileDecision",
    "ProfileTable",
    "choose_precision",
    "choose_profile",
    "describe_gpu",
    "detect_hardware",
    "detect_platform",
    "env_report",
    "hardware_facts",
    "load_profile_table",
    "profile_names",
    "validate_profile_data",
]
