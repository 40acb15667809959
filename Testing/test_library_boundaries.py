"""DTTLib stays Qt-free and cheap to import; optional dependencies are named when missing."""

from __future__ import annotations

import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHECK_IMPORTS = r"""
import importlib, json, pkgutil, sys
import DTTLib
after_package = sorted(m for m in ("slicer", "torch", "vtk", "scipy") if m in sys.modules)
for info in pkgutil.walk_packages(DTTLib.__path__, "DTTLib."):
    importlib.import_module(info.name)
forbidden = sorted(m for m in sys.modules if m.split(".")[0] in ("qt", "ctk", "PythonQt", "PyQt5", "PySide6"))
print(json.dumps({"after_package": after_package, "forbidden": forbidden,
                  "slicer_app": hasattr(sys.modules.get("slicer"), "app")}))
"""


def test_importing_every_dttlib_module_pulls_no_qt():
    out = subprocess.run([sys.executable, "-c", CHECK_IMPORTS], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["after_package"] == [], "import DTTLib must not import heavy packages"
    assert report["forbidden"] == []
    assert report["slicer_app"] is False


def test_no_source_file_reaches_for_qt_or_the_application():
    pattern = re.compile(r"^\s*(import|from)\s+(qt|ctk|slicer\.ScriptedLoadableModule)\b|slicer\.app\b", re.M)
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "DTTLib").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_missing_feature_packages_are_named_with_the_fix(monkeypatch):
    from DTTLib import dependencies
    from DTTLib.errors import MissingDependencyError

    real_version = dependencies.metadata.version

    def pretend_timm_is_absent(name):
        if name == "timm":
            raise dependencies.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(dependencies.metadata, "version", pretend_timm_is_absent)
    missing = [req.name for req in dependencies.missing_requirements("segmentation")]
    assert "timm" in missing
    with pytest.raises(MissingDependencyError, match=r"timm>=1\.0.*pip install"):
        dependencies.check_feature("segmentation")


def test_core_feature_is_satisfied_in_the_test_environment():
    from DTTLib.dependencies import features, missing_requirements

    assert {"core", "segmentation", "narrative", "store"} <= set(features())
    assert missing_requirements("core") == []


@pytest.mark.parametrize("installed,spec,expected", [
    ("1.11.0", ">=1.11", True), ("1.10.9", ">=1.11", False), ("2.0", ">=1.11,<2", False),
    ("5.0.0rc1", ">=5.0", True), ("0.1.1", "==0.1.1", True),
])
def test_version_comparison(installed, spec, expected):
    from DTTLib.dependencies import _compare

    clauses = [re.match(r"(>=|==|<=|>|<|!=|~=)?\s*(.*)", c).groups() for c in spec.split(",")]
    assert all(_compare(installed, op or "==", v) for op, v in clauses) is expected
