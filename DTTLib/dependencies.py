"""Which Python packages a feature needs, which are missing, and installing them in Slicer.

The list is data (``requirements.json``). Inside 3D Slicer, installs happen on first use of
a feature, after the user agrees — never at import — through ``slicer.pydeps`` (Slicer ≥
5.11) or ``slicer.util.pip_install``; torch comes from the PyTorch extension
(PyTorchUtils), which picks the build that fits the machine's GPU. Packages Slicer ships
(numpy, SimpleITK, …) are never reinstalled.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from DTTLib.errors import InputError, MissingDependencyError

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(.*)$")


@dataclass(frozen=True)
class Requirement:
    name: str
    spec: str  # e.g. ">=1.11"
    text: str  # as written in requirements.json


@cache
def _table() -> dict[str, Any]:
    return json.loads(Path(__file__).with_name("requirements.json").read_text())


def features() -> list[str]:
    return sorted(_table()["features"])


def requirements_for(feature: str) -> list[Requirement]:
    table = _table()["features"]
    if feature not in table:
        raise InputError(f"unknown feature '{feature}'", f"known features: {', '.join(sorted(table))}")
    return [_parse(text) for text in table[feature]]


def needs_torch(feature: str) -> bool:
    return feature in _table()["needs_torch"]


def missing_requirements(feature: str) -> list[Requirement]:
    """Requirements of ``feature`` that are absent or too old in this Python."""
    return [req for req in requirements_for(feature) if not _satisfied(req)]


def check_feature(feature: str) -> None:
    """Raise a clear error naming what to install when ``feature`` cannot run here."""
    missing = missing_requirements(feature)
    if needs_torch(feature) and not _installed("torch"):
        missing = [Requirement("torch", "", "torch (install the PyTorch extension in Slicer)"), *missing]
    if missing:
        names = ", ".join(req.text for req in missing)
        raise MissingDependencyError(
            f"the '{feature}' feature needs Python packages that are not installed: {names}",
            "in 3D Slicer, press the module's Apply button and accept the install prompt; "
            f"elsewhere run: pip install {' '.join(repr(r.text) for r in missing if r.name != 'torch')}")


def install_in_slicer(feature: str, confirm: Callable[[str], bool], requester: str = "DigitalTwinTumor") -> bool:
    """Install what ``feature`` lacks inside 3D Slicer; returns False when the user declines."""
    missing = missing_requirements(feature)
    torch_missing = needs_torch(feature) and not _installed("torch")
    if not missing and not torch_missing:
        return True
    listing = ", ".join([*(["torch (via the PyTorch extension)"] if torch_missing else []),
                         *(req.text for req in missing)])
    if not confirm(f"{requester} needs to install: {listing}. This is done once and can take "
                   "a few minutes. Continue?"):
        return False
    import slicer  # noqa: PLC0415 - only inside Slicer

    if torch_missing:
        _install_torch_with_pytorchutils(slicer)
    if missing:
        texts = [req.text for req in missing]
        skip = list(_table()["provided_by_slicer"])
        pydeps = _slicer_pydeps()
        if pydeps is not None and hasattr(pydeps, "pip_ensure"):
            from packaging.requirements import Requirement as PackagingRequirement  # noqa: PLC0415

            pydeps.pip_ensure([PackagingRequirement(t) for t in texts], skip_packages=skip, requester=requester)
        else:
            slicer.util.pip_install(" ".join(texts))
    still = missing_requirements(feature)
    if still:
        raise MissingDependencyError(
            f"installation finished but these are still missing: {', '.join(r.text for r in still)}",
            "restart 3D Slicer; if that does not help, install them from the Python console with "
            "slicer.util.pip_install(...) and check the log (Help → Report a bug shows it)")
    return True


def _install_torch_with_pytorchutils(slicer: Any) -> None:
    try:
        import PyTorchUtils  # noqa: PLC0415 - module of the PyTorch extension
    except ImportError:
        raise MissingDependencyError(
            "PyTorch is needed but the 'PyTorch' extension is not installed",
            "install the PyTorch extension from the Extensions Manager, restart Slicer, and retry"
        ) from None
    logic = PyTorchUtils.PyTorchUtilsLogic()
    if not logic.torchInstalled():
        logic.installTorch(askConfirmation=False)


def _slicer_pydeps() -> Any:
    for name in ("slicer.pydeps", "slicer.packaging"):
        try:
            return __import__(name, fromlist=["pip_ensure"])
        except ImportError:
            continue
    return None


def _parse(text: str) -> Requirement:
    match = _REQUIREMENT.match(text)
    if not match:
        raise InputError(f"cannot parse requirement '{text}'", "fix DTTLib/requirements.json")
    return Requirement(match.group(1), match.group(3).strip(), text)


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def _satisfied(req: Requirement) -> bool:
    try:
        installed = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        return False
    for clause in filter(None, (c.strip() for c in req.spec.split(","))):
        operator, version = re.match(r"(>=|==|<=|>|<|!=|~=)?\s*(.*)", clause).groups()
        if not _compare(installed, operator or "==", version):
            return False
    return True


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        digits = re.match(r"\d+", piece)
        if not digits:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


def _compare(installed: str, operator: str, wanted: str) -> bool:
    have, want = _version_tuple(installed), _version_tuple(wanted)
    width = max(len(have), len(want))
    have, want = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
    return {">=": have >= want, "==": have == want, "<=": have <= want, ">": have > want,
            "<": have < want, "!=": have != want, "~=": have >= want}[operator]
