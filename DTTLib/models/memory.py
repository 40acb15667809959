"""GPU memory: measure what is free, free what we held, recognise out-of-memory errors.

CUDA functions are only called after ``torch.cuda.is_available()``: on a CPU machine (or a
CUDA build without a driver) they would raise.
"""

from __future__ import annotations

import gc
import sys
from typing import Any


def cuda_available() -> bool:
    torch = sys.modules.get("torch")
    if torch is None:
        try:
            import torch  # noqa: PLC0415
        except ImportError:
            return False
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken driver counts as no GPU
        return False


def free_vram_bytes() -> tuple[int, int] | None:
    """(free, total) bytes on the current GPU, or None without CUDA."""
    if not cuda_available():
        return None
    import torch  # noqa: PLC0415

    free, total = torch.cuda.mem_get_info()
    return int(free), int(total)


def release_memory() -> None:
    """Collect garbage and hand cached CUDA blocks back to the driver."""
    gc.collect()
    if cuda_available():
        import torch  # noqa: PLC0415

        torch.cuda.empty_cache()


def is_out_of_memory(exc: BaseException) -> bool:
    """torch.cuda.OutOfMemoryError, or the RuntimeError older builds / other backends raise."""
    torch = sys.modules.get("torch")
    oom_type: Any = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None) if torch else None
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
