"""Keep triton from crashing a process whose OpenGL has already loaded LLVM.

Mesa's software OpenGL (llvmpipe — headless rendering, VMs, remote desktops) maps a shared
``libLLVM`` into the process. triton, which CUDA builds of torch import (``torch._dynamo``,
nnU-Net's predictor), carries its own LLVM, and its start-up code binds to the copy already
loaded: the process dies with a segmentation fault, taking the Slicer scene with it. Loaded the
other way round, both work. So when ``triton`` is about to be imported and a foreign libLLVM is
already mapped, the import fails cleanly instead (``ModuleNotFoundError``): torch then treats
triton as absent, which costs nothing on the CPU and only ``torch.compile``'s GPU kernels on a GPU.
"""

from __future__ import annotations

import importlib.abc
import logging
import re
import sys
from pathlib import Path

_LLVM = re.compile(r"\s(/\S*/libLLVM[^/\s]*\.so[^/\s]*)$", re.M)
_log = logging.getLogger(__name__)


def foreign_llvm(maps: str | None = None) -> str | None:
    """The path of a shared libLLVM mapped into this process (Linux), or None."""
    if maps is None:
        if not sys.platform.startswith("linux"):
            return None
        try:
            maps = Path("/proc/self/maps").read_text()
        except OSError:
            return None
    found = [path for path in _LLVM.findall(maps) if "/triton/" not in path]
    return found[0] if found else None


class TritonGuard(importlib.abc.MetaPathFinder):
    """Refuses ``import triton`` while a foreign libLLVM is loaded; otherwise stays out of the way."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname != "triton":
            return None
        library = foreign_llvm()
        if library is None:
            return None
        message = (f"triton not loaded: {library} (OpenGL's LLVM) is already in this process and triton's "
                   "own LLVM would crash it; torch runs without triton kernels")
        _log.warning(message)
        raise ModuleNotFoundError(message, name="triton")


def install() -> None:
    """Put the guard first on ``sys.meta_path`` (once); a no-op once triton is imported."""
    if "triton" in sys.modules or any(isinstance(finder, TritonGuard) for finder in sys.meta_path):
        return
    sys.meta_path.insert(0, TritonGuard())


__all__ = ["TritonGuard", "foreign_llvm", "install"]
