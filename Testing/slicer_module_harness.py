"""Run the modules' own self-tests headless, on the real MRML scene of slicer-core.

The slicer-core wheel has MRML and the module logics but not Slicer's scripted-module
framework (``ScriptedLoadableModule``, ``i18n``, ``parameterNodeWrapper`` need the Qt
application). This harness supplies the few framework names a module *file* imports, so
its ``...Test`` class — the one Slicer's test harness runs — executes here against real
MRML nodes. It does not stand in for any MRML class; widgets are not exercised.
"""

from __future__ import annotations

import importlib.util
import sys
import types
import unittest
from pathlib import Path


class _ScriptedLoadableModule:
    def __init__(self, parent=None):
        self.parent = parent


class _ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        self.parent = parent


class _ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        self.parent = parent


class _ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message, msec=None):  # noqa: N802 - Slicer's name
        pass


def _framework_modules() -> dict[str, types.ModuleType]:
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")
    scripted.ScriptedLoadableModule = _ScriptedLoadableModule
    scripted.ScriptedLoadableModuleLogic = _ScriptedLoadableModuleLogic
    scripted.ScriptedLoadableModuleWidget = _ScriptedLoadableModuleWidget
    scripted.ScriptedLoadableModuleTest = _ScriptedLoadableModuleTest
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = lambda cls: cls
    wrapper.WithinRange = lambda low, high: (low, high)
    return {module.__name__: module for module in (scripted, i18n, wrapper)}


def load_module_file(path: Path) -> types.ModuleType:
    """Import a Slicer module file with the framework names available."""
    import slicer  # noqa: F401 - the real slicer-core package must be imported first

    for name, module in _framework_modules().items():
        sys.modules.setdefault(name, module)
    folder = str(path.resolve().parent)
    if folder not in sys.path:  # as in Slicer, which puts each scripted module's folder on the path, so a
        sys.path.insert(0, folder)  # module file can import its own <Module>Lib package
    spec = importlib.util.spec_from_file_location(f"dtt_selftest_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_self_test(path: Path) -> unittest.TestResult:
    """Run ``<Module>Test.runTest`` exactly as Slicer's harness does; returns the result."""
    module = load_module_file(path)
    test_class = getattr(module, f"{path.stem}Test")
    result = unittest.TestResult()
    test_class("runTest").run(result)
    return result
