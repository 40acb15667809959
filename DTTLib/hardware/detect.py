"""What this machine offers: GPU, CPU cores, RAM, platform and the relevant packages.

Detection must never crash: the profile choice runs at start-up of every command and every
Slicer module, so a missing torch, a CUDA build without a driver or a broken driver all end
as "no GPU" with the reason kept in ``notes``. torch is imported lazily, inside the function,
because a machine without torch is a valid CPU-only machine and importing it costs seconds.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

GIB = 1024**3

#: Environment variables that betray a hosted notebook. Any one set (non-empty) is enough.
PLATFORM_ENV_VARS: dict[str, tuple[str, ...]] = {
    "kaggle": ("KAGGLE_KERNEL_RUN_TYPE", "KAGGLE_URL_BASE", "KAGGLE_DATA_PROXY_URL"),
    "colab": ("COLAB_RELEASE_TAG", "COLAB_GPU", "COLAB_BACKEND_VERSION"),
}
#: Paths that exist only on a hosted notebook (checked when no variable decided).
PLATFORM_PATHS: dict[str, tuple[str, ...]] = {
    "kaggle": ("/kaggle/working",),
}


@dataclass(frozen=True)
class HardwareInfo:
    """Facts about the machine; every field has an "unknown / absent" default so tests can
    describe a simulated machine with only the fields that matter."""

    gpu_available: bool = False
    gpu_name: str | None = None
    gpu_count: int = 0
    #: total_memory of GPU 0 (the one the phases use), as torch reports it (below nominal).
    vram_total_bytes: int | None = None
    compute_capability: tuple[int, int] | None = None
    #: native bf16 only (compute capability >= 8.0); emulated bf16 on a T4 does not count.
    bf16_supported: bool = False
    #: cores this process may run on (CPU affinity), not the host's core count.
    cpu_cores: int = 1
    ram_total_bytes: int | None = None
    ram_available_bytes: int | None = None
    platform: str = "local"
    torch_version: str | None = None
    #: CUDA version torch was built with (None for CPU-only builds or no torch).
    cuda_version: str | None = None
    bitsandbytes_available: bool = False
    #: why something is missing (no torch, driver error, ...), in plain words.
    notes: tuple[str, ...] = ()

    @property
    def vram_total_gib(self) -> float:
        return (self.vram_total_bytes or 0) / GIB


@dataclass(frozen=True)
class _GpuFacts:
    available: bool = False
    name: str | None = None
    count: int = 0
    vram_total_bytes: int | None = None
    compute_capability: tuple[int, int] | None = None
    bf16_supported: bool = False
    torch_version: str | None = None
    cuda_version: str | None = None
    notes: tuple[str, ...] = ()


def detect_platform(
    environ: Mapping[str, str] | None = None,
    path_exists: Callable[[str], bool] = os.path.exists,
) -> str:
    """'kaggle', 'colab' or 'local'. ``environ`` and ``path_exists`` are injectable for tests."""
    env = os.environ if environ is None else environ
    for name, variables in PLATFORM_ENV_VARS.items():
        if any(env.get(var) for var in variables):
            return name
    for name, paths in PLATFORM_PATHS.items():
        try:
            if any(path_exists(p) for p in paths):
                return name
        except OSError:
            continue
    return "local"


def detect_cpu_cores() -> int:
    """Cores we may actually use: the affinity mask (taskset, cgroup cpusets), else cpu_count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def read_meminfo(path: str = "/proc/meminfo") -> tuple[int | None, int | None]:
    """(total, available) bytes from /proc/meminfo; (None, None) where it cannot be read."""
    values: dict[str, int] = {}
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    scale = 1024 if len(parts) > 1 and parts[1].lower() == "kb" else 1
                    values[key.strip()] = int(parts[0]) * scale
    except OSError:
        return None, None
    return values.get("MemTotal"), values.get("MemAvailable", values.get("MemFree"))


def detect_ram() -> tuple[int | None, int | None, str | None]:
    """(total, available, note): psutil when importable, /proc/meminfo otherwise."""
    try:
        psutil = importlib.import_module("psutil")
        memory = psutil.virtual_memory()
        return int(memory.total), int(memory.available), None
    except Exception:  # noqa: BLE001 - psutil missing or broken: use the fallback
        total, available = read_meminfo()
        note = None if total is not None else "RAM size unknown (no psutil, no /proc/meminfo)"
        return total, available, note


def bitsandbytes_installed() -> bool:
    """Whether bitsandbytes is importable, without importing it (its import probes CUDA)."""
    try:
        return importlib.util.find_spec("bitsandbytes") is not None
    except (ImportError, ValueError):
        return False


def _bf16_native(torch: Any, device: int) -> bool:
    """Native bf16 only. torch's default ``is_bf16_supported()`` also answers True on a T4
    (compute 7.5) because bf16 tensors can be *emulated* there, slowly; that must not pick bf16."""
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # older torch without the keyword
        major, _ = torch.cuda.get_device_capability(device)
        return major >= 8


def detect_gpu() -> _GpuFacts:
    """GPU facts through torch; any failure reads as "no GPU" with the reason in notes."""
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        return _GpuFacts(notes=("torch is not installed: CPU only",))
    except Exception as exc:  # noqa: BLE001 - a broken install (missing .so, ...) is "no torch"
        return _GpuFacts(notes=(f"torch failed to import ({type(exc).__name__}: {exc}): CPU only",))

    torch_version = str(getattr(torch, "__version__", "unknown"))
    cuda_version = getattr(getattr(torch, "version", None), "cuda", None)
    base = dict(torch_version=torch_version, cuda_version=cuda_version)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            available = bool(torch.cuda.is_available())
        if not available:
            driver_warnings = [str(w.message) for w in caught]
            if driver_warnings:
                reason = f"CUDA is not usable: {driver_warnings[0].strip()}"
            elif not cuda_version:
                reason = f"torch {torch_version} is a CPU-only build"
            else:
                reason = "no CUDA GPU visible: torch.cuda.is_available() is False"
            return _GpuFacts(notes=(reason,), **base)
        count = int(torch.cuda.device_count())
        properties = torch.cuda.get_device_properties(0)
        notes: tuple[str, ...] = ()
        if count > 1:
            notes = (f"{count} GPUs visible; the phases use GPU 0 only",)
        return _GpuFacts(
            available=True,
            name=str(properties.name),
            count=count,
            vram_total_bytes=int(properties.total_memory),
            compute_capability=(int(properties.major), int(properties.minor)),
            bf16_supported=_bf16_native(torch, 0),
            notes=notes,
            **base,
        )
    except Exception as exc:  # noqa: BLE001 - a broken driver must not stop the program
        return _GpuFacts(notes=(f"CUDA query failed ({type(exc).__name__}: {exc}): treated as no GPU",), **base)


def detect_hardware(
    environ: Mapping[str, str] | None = None,
    path_exists: Callable[[str], bool] = os.path.exists,
) -> HardwareInfo:
    """Everything the profile choice needs, gathered without raising."""
    gpu = detect_gpu()
    total, available, ram_note = detect_ram()
    notes = gpu.notes + ((ram_note,) if ram_note else ())
    return HardwareInfo(
        gpu_available=gpu.available,
        gpu_name=gpu.name,
        gpu_count=gpu.count,
        vram_total_bytes=gpu.vram_total_bytes,
        compute_capability=gpu.compute_capability,
        bf16_supported=gpu.bf16_supported,
        cpu_cores=detect_cpu_cores(),
        ram_total_bytes=total,
        ram_available_bytes=available,
        platform=detect_platform(environ, path_exists),
        torch_version=gpu.torch_version,
        cuda_version=gpu.cuda_version,
        bitsandbytes_available=bitsandbytes_installed(),
        notes=notes,
    )
