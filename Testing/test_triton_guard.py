"""Two LLVMs in one process: OpenGL's (Mesa llvmpipe) first, then triton's, is a segfault.

Reproduced here by loading the system's libLLVM the way Mesa does before anything imports
triton (as a headless render before nnU-Net did in one pytest process). With DTTLib imported,
``import triton`` fails cleanly and torch carries on without it; without the guard the same
script dies with SIGSEGV. Each case runs in its own interpreter.
"""

from __future__ import annotations

import glob
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from DTTLib.triton_guard import foreign_llvm

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_LLVM = sorted(glob.glob("/usr/lib/*/libLLVM*.so*") + glob.glob("/usr/lib64/libLLVM*.so*"))

SCRIPT = r"""
import ctypes, sys
ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_GLOBAL)   # what Mesa's OpenGL does on first render
if sys.argv[2] == "guarded":
    import DTTLib  # noqa: F401
import torch
from torch.utils._triton import has_triton_package
print("triton", has_triton_package(), flush=True)
print("sum", float(torch.ones(3).sum()))
"""

needs_both = pytest.mark.skipif(not SYSTEM_LLVM or importlib.util.find_spec("triton") is None,
                                reason="needs a system libLLVM and the triton package")


def run(mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, SYSTEM_LLVM[0], mode], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


@needs_both
def test_torch_survives_a_loaded_opengl_llvm_with_dttlib_imported():
    done = run("guarded")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "triton False" in done.stdout and "sum 3.0" in done.stdout


@needs_both
def test_without_the_guard_the_same_process_crashes():
    """The reason the guard exists; if a future triton stops crashing, this says so."""
    done = run("plain")
    assert done.returncode != 0 and "triton" not in done.stdout


def test_foreign_llvm_reads_the_memory_map():
    maps = ("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libLLVM-15.so.1\n"
            "7f02-7f03 r-xp 0 08:01 2 /venv/site-packages/triton/_C/libLLVM.so\n")
    assert foreign_llvm(maps) == "/usr/lib/x86_64-linux-gnu/libLLVM-15.so.1"
    assert foreign_llvm(maps.splitlines()[1] + "\n") is None
    assert foreign_llvm("7f00-7f01 r-xp 0 08:01 1 /usr/lib/libc.so.6\n") is None
