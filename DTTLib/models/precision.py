"""From the hardware profile's precision to concrete ``from_pretrained`` arguments.

The precision *decision* is made in :mod:`DTTLib.hardware` (one table for everything); this
module only maps it to torch dtypes, a quantisation config and a device map, and re-checks
the two things bitsandbytes will not check for us: a usable GPU and the package itself
(with no GPU, bitsandbytes "loads" 4-bit weights on the CPU and fails later).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field, replace
from typing import Any

from DTTLib.errors import ResourceError
from DTTLib.hardware.detect import HardwareInfo

DTYPE_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32", "cpu": "float32", "nf4": None}


@dataclass(frozen=True)
class LoadPlan:
    """How to load one model: precision class, device, and why."""

    precision: str  # bf16 | fp16 | fp32 | nf4
    device: str  # cuda | cpu
    #: 'auto' (accelerate places layers, offloading to the CPU) or None (one device).
    device_map: str | dict[str, Any] | None = None
    batch_size: int = 1
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def quantized(self) -> bool:
        return self.precision == "nf4"

    @property
    def offloaded(self) -> bool:
        return self.device_map is not None

    def with_reason(self, reason: str, **changes: Any) -> LoadPlan:
        return replace(self, reasons=(*self.reasons, reason), **changes)


def bitsandbytes_installed() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def four_bit_possible(info: HardwareInfo, bnb_installed: bool | None = None) -> tuple[bool, str]:
    """Whether a 4-bit load is safe here, and why not. Checks the GPU first, then the package."""
    if not info.gpu_available:
        return False, "4-bit needs a CUDA GPU (without one bitsandbytes silently loads on the CPU and fails later)"
    installed = bitsandbytes_installed() if bnb_installed is None else bnb_installed
    if not installed:
        return False, "4-bit needs bitsandbytes, which is not installed (pip install bitsandbytes)"
    return True, "a CUDA GPU and bitsandbytes are present"


def plan_for(phase_settings: dict[str, Any], info: HardwareInfo,
             bnb_installed: bool | None = None) -> LoadPlan:
    """A plan from one phase's profile settings (``device``, ``precision``, ``batch_size``)."""
    device = phase_settings.get("device") or "cpu"
    precision = phase_settings.get("precision") or ("fp32" if device == "cpu" else "fp16")
    batch = int(phase_settings.get("batch_size") or 1)
    reasons = [f"profile asks for {precision} on {device}"]
    if device == "cuda" and not info.gpu_available:
        return LoadPlan("fp32", "cpu", None, batch, (*reasons, "no usable GPU: fp32 on the CPU"))
    if precision == "cpu":
        precision = "fp32"
    if precision == "nf4":
        ok, why = four_bit_possible(info, bnb_installed)
        if not ok:
            fallback = "fp16" if info.gpu_available else "fp32"
            return LoadPlan(fallback, "cuda" if info.gpu_available else "cpu",
                            "auto" if info.gpu_available else None, batch,
                            (*reasons, f"{why}; using {fallback}"
                             + (" with CPU offload" if info.gpu_available else "")))
    if precision == "bf16" and device == "cuda" and not info.bf16_supported:
        precision = "fp16"
        reasons.append("the GPU has no native bf16: fp16")
    if device == "cpu" and precision in ("fp16", "nf4"):
        reasons.append(f"{precision} on the CPU is slow or unsupported: fp32")
        precision = "fp32"
    return LoadPlan(precision, device, None, batch, tuple(reasons))


def from_pretrained_kwargs(plan: LoadPlan) -> dict[str, Any]:
    """Keyword arguments for ``from_pretrained`` (``dtype=``, never ``torch_dtype=``)."""
    import torch  # noqa: PLC0415

    if plan.quantized:
        from transformers import BitsAndBytesConfig  # noqa: PLC0415

        return {"quantization_config": BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16), "device_map": {"": 0}, "dtype": torch.bfloat16}
    kwargs: dict[str, Any] = {"dtype": getattr(torch, DTYPE_NAMES[plan.precision])}
    if plan.device_map is not None:
        kwargs["device_map"] = plan.device_map
    return kwargs


def check_plan(plan: LoadPlan, info: HardwareInfo, bnb_installed: bool | None = None) -> None:
    """Refuse a plan bitsandbytes would accept wrongly (4-bit without a GPU or the package)."""
    if plan.quantized:
        ok, why = four_bit_possible(info, bnb_installed)
        if not ok:
            raise ResourceError(f"Cannot load in 4-bit: {why}",
                                "Use the fp16/bf16 profile, the CPU, or the template narrative.")
