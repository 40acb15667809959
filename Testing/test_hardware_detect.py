"""Hardware detection: real facts on this (GPU-less) machine, and simulated torch failures."""

from __future__ import annotations

import os
import subprocess
import sys
import types
import warnings
from pathlib import Path

import psutil
import pytest

from DTTLib.hardware import HardwareInfo, choose_profile, detect_hardware, detect_platform
from DTTLib.hardware.detect import read_meminfo

GIB = 1024**3
REPO = Path(__file__).resolve().parents[1]


def no_paths(_: str) -> bool:
    return False


def test_this_machine():
    info = detect_hardware(environ={}, path_exists=no_paths)
    assert isinstance(info, HardwareInfo)
    assert info.platform == "local"
    torch = sys.modules.get("torch")  # imported by detect_hardware when installed
    if torch is not None and torch.cuda.is_available():  # a GPU machine: check the facts instead
        assert info.gpu_available and info.gpu_count >= 1 and info.vram_total_bytes > GIB
        assert info.compute_capability is not None and info.gpu_name
        return
    assert info.gpu_available is False and info.gpu_count == 0 and info.vram_total_bytes is None
    assert info.cpu_cores == len(os.sched_getaffinity(0))  # the cores we may use, not all on the host
    if hasattr(os, "sched_getaffinity"):
        assert info.cpu_cores == len(os.sched_getaffinity(0))
    assert info.ram_total_bytes == psutil.virtual_memory().total
    assert 0 < info.ram_available_bytes <= info.ram_total_bytes
    assert info.notes, "the reason for 'no GPU' must be recorded"
    assert choose_profile(info, environ={}).name == "cpu_only"


@pytest.mark.parametrize(("environ", "paths", "expected"), [
    ({}, (), "local"),
    ({"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}, (), "kaggle"),
    ({"KAGGLE_URL_BASE": "kaggle-proxy-base"}, (), "kaggle"),
    ({"COLAB_RELEASE_TAG": "release-colab_20250101"}, (), "colab"),
    ({"COLAB_GPU": "1"}, (), "colab"),
    ({"KAGGLE_KERNEL_RUN_TYPE": ""}, (), "local"),
    ({}, ("/kaggle/working",), "kaggle"),
])
def test_platform(environ, paths, expected):
    assert detect_platform(environ, lambda p: p in paths) == expected


def test_platform_reaches_detect_hardware():
    assert detect_hardware(environ={"COLAB_GPU": "0"}, path_exists=no_paths).platform == "colab"


def test_module_import_does_not_import_torch():
    code = "import sys, DTTLib.hardware; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60).returncode == 0


def test_without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    info = detect_hardware(environ={}, path_exists=no_paths)
    assert info.gpu_available is False and info.torch_version is None and info.cuda_version is None
    assert any("torch is not installed" in n for n in info.notes)
    assert info.cpu_cores >= 1 and info.ram_total_bytes
    assert choose_profile(info, environ={}).name == "cpu_only"


def test_without_psutil_reads_proc_meminfo(monkeypatch):
    assert Path("/proc/meminfo").exists(), "this test needs Linux's /proc/meminfo"
    expected_total = psutil.virtual_memory().total
    monkeypatch.setitem(sys.modules, "psutil", None)
    monkeypatch.setitem(sys.modules, "torch", None)
    info = detect_hardware(environ={}, path_exists=no_paths)
    assert info.ram_total_bytes == expected_total
    assert 0 < info.ram_available_bytes <= info.ram_total_bytes


def test_read_meminfo(tmp_path):
    path = tmp_path / "meminfo"
    path.write_text("MemTotal:       16384 kB\nMemFree:  100 kB\nMemAvailable:    8192 kB\n")
    assert read_meminfo(str(path)) == (16384 * 1024, 8192 * 1024)
    assert read_meminfo(str(tmp_path / "missing")) == (None, None)


def fake_torch(cuda: object, version_cuda: str | None = "12.4") -> types.ModuleType:
    module = types.ModuleType("torch")
    module.__version__ = "9.9.9"
    module.version = types.SimpleNamespace(cuda=version_cuda, hip=None)
    module.cuda = cuda
    return module


def test_broken_driver_is_no_gpu_with_reason(monkeypatch):
    def broken() -> bool:
        raise RuntimeError("CUDA driver version is insufficient for CUDA runtime version")

    monkeypatch.setitem(sys.modules, "torch", fake_torch(types.SimpleNamespace(is_available=broken)))
    info = detect_hardware(environ={}, path_exists=no_paths)
    assert info.gpu_available is False and info.torch_version == "9.9.9"
    assert any("driver version is insufficient" in n for n in info.notes)


def test_driver_warning_is_recorded(monkeypatch):
    def unavailable() -> bool:
        warnings.warn("CUDA initialization: Found no NVIDIA driver on your system.", UserWarning, stacklevel=1)
        return False

    monkeypatch.setitem(sys.modules, "torch", fake_torch(types.SimpleNamespace(is_available=unavailable)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the warning must be captured, not leak out
        info = detect_hardware(environ={}, path_exists=no_paths)
    assert info.gpu_available is False
    assert any("Found no NVIDIA driver" in n for n in info.notes)


def test_failure_after_is_available_is_no_gpu(monkeypatch):
    def properties(_: int) -> object:
        raise RuntimeError("device-side assert")

    cuda = types.SimpleNamespace(is_available=lambda: True, device_count=lambda: 1, get_device_properties=properties)
    monkeypatch.setitem(sys.modules, "torch", fake_torch(cuda))
    info = detect_hardware(environ={}, path_exists=no_paths)
    assert info.gpu_available is False and any("device-side assert" in n for n in info.notes)


def t4_cuda(with_keyword: bool = True) -> types.SimpleNamespace:
    """A T4 as torch sees it: is_bf16_supported() says True by default (emulation)."""
    props = types.SimpleNamespace(name="Tesla T4", total_memory=15_828_320_256, major=7, minor=5)
    if with_keyword:
        def bf16(including_emulation: bool = True) -> bool:
            return including_emulation
    else:
        def bf16() -> bool:
            return True
    return types.SimpleNamespace(is_available=lambda: True, device_count=lambda: 2,
                                 get_device_properties=lambda i: props,
                                 get_device_capability=lambda i: (7, 5), is_bf16_supported=bf16)


@pytest.mark.parametrize("with_keyword", [True, False])
def test_simulated_t4_is_read_and_emulated_bf16_does_not_count(monkeypatch, with_keyword):
    monkeypatch.setitem(sys.modules, "torch", fake_torch(t4_cuda(with_keyword)))
    info = detect_hardware(environ={"KAGGLE_KERNEL_RUN_TYPE": "Batch"}, path_exists=no_paths)
    assert (info.gpu_available, info.gpu_name, info.gpu_count) == (True, "Tesla T4", 2)
    assert info.vram_total_bytes == 15_828_320_256 and info.compute_capability == (7, 5)
    assert info.bf16_supported is False and info.cuda_version == "12.4"
    decision = choose_profile(info, environ={})
    assert (decision.name, decision.precision.precision) == ("kaggle_t4", "fp16")


def test_bitsandbytes_is_looked_up_not_imported(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    assert detect_hardware(environ={}, path_exists=no_paths).bitsandbytes_available is False
