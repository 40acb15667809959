"""The extension as Slicer builds it: CMake lists every file, modules follow the template.

A .py missing from CMake is not installed, so the installed extension breaks while every
source-tree test passes; these checks catch that, and the template's contract with the .ui.
"""

from __future__ import annotations

import ast
import importlib
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("DigitalTwinTumor", "DTTSegmentation", "DTTNarrative")


def cmake_set(text: str, variable: str) -> list[str]:
    match = re.search(rf"set\(\s*{re.escape(variable)}\s+(.*?)\)", text, re.S)
    assert match, f"set({variable} ...) not found"
    return [item for item in match.group(1).split() if not item.startswith("#")]


def test_every_dttlib_file_is_listed_in_cmake():
    text = (ROOT / "DTTLib" / "CMakeLists.txt").read_text()
    listed_scripts = set(cmake_set(text, "DTTLib_PYTHON_SCRIPTS"))
    listed_resources = set(cmake_set(text, "DTTLib_PYTHON_RESOURCES"))
    library = ROOT / "DTTLib"
    on_disk = {p.relative_to(library).as_posix() for p in library.rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    scripts = {f for f in on_disk if f.endswith(".py")}
    resources = {f for f in on_disk if f.endswith((".json", ".txt"))}
    hint = "run: python tools/sync_dttlib_cmake.py"
    assert scripts - listed_scripts == set(), f"not in DTTLib/CMakeLists.txt ({hint})"
    assert resources - listed_resources == set(), f"not in DTTLib/CMakeLists.txt ({hint})"
    assert (listed_scripts | listed_resources) - on_disk == set(), f"listed but missing ({hint})"
    assert "ctkMacroCompilePythonScript" in text and "DESTINATION_DIR" in text


@pytest.mark.parametrize("module", MODULES)
def test_every_module_file_is_listed_in_its_cmake(module):
    folder = ROOT / module
    text = (folder / "CMakeLists.txt").read_text()
    assert re.search(rf"set\(MODULE_NAME {module}\)", text)
    expand = lambda items: {i.replace("${MODULE_NAME}", module) for i in items}  # noqa: E731
    scripts = expand(cmake_set(text, "MODULE_PYTHON_SCRIPTS"))
    resources = expand(cmake_set(text, "MODULE_PYTHON_RESOURCES"))
    py_files = {p.relative_to(folder).as_posix() for p in folder.rglob("*.py")}
    assert py_files - scripts == set(), f"{module}/CMakeLists.txt misses scripts"
    resource_files = {p.relative_to(folder).as_posix() for p in (folder / "Resources").rglob("*")
                      if p.is_file()}
    assert resource_files - resources == set(), f"{module}/CMakeLists.txt misses resources"
    for listed in scripts | resources:
        assert (folder / listed).is_file(), f"{module}: listed file {listed} does not exist"
    assert f"Resources/UI/{module}.ui" in resources and f"Resources/Icons/{module}.png" in resources
    assert "WITH_GENERIC_TESTS" in text
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text


def test_top_level_cmake_is_a_complete_extension():
    text = (ROOT / "CMakeLists.txt").read_text()
    assert re.search(r"^project\(DigitalTwinTumor\)", text, re.M)
    for field in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS"):
        match = re.search(rf'set\(EXTENSION_{field} "([^"]+)"\)', text)
        assert match and match.group(1).strip(), f"EXTENSION_{field} is missing or empty"
    assert re.search(r'set\(EXTENSION_DEPENDS "PyTorch"\)', text)
    assert re.search(r"find_package\(Slicer REQUIRED\)", text)
    for sub in ("DTTLib", *MODULES):
        assert f"add_subdirectory({sub})" in text
    assert "Slicer_EXTENSION_GENERATE_CONFIG" in text and "Slicer_EXTENSION_CPACK" in text
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")
    for field in ("ICONURL", "SCREENSHOTURLS"):
        picture = re.search(rf'EXTENSION_{field} "[^"]*/main/([^"]+)"', text).group(1)
        assert (ROOT / picture).is_file(), f"{picture} referenced by EXTENSION_{field} is not in the repository"


def _classes(tree: ast.Module) -> dict[str, ast.ClassDef]:
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def module_sources(module: str) -> list[str]:
    """The module file and its feature parts (``<Module>Lib/*.py``, mixed into its classes)."""
    parts = sorted((ROOT / module / f"{module}Lib").glob("*.py"))
    return [(ROOT / module / f"{module}.py").read_text()] + [part.read_text() for part in parts]


@pytest.mark.parametrize("module", MODULES)
def test_module_follows_the_scripted_module_template(module):
    source = (ROOT / module / f"{module}.py").read_text()
    tree = ast.parse(source)
    classes = _classes(tree)
    for suffix in ("", "ParameterNode", "Widget", "Logic", "Test"):
        assert f"{module}{suffix}" in classes, f"{module}{suffix} class is missing"
    test_methods = {n.name for n in classes[f"{module}Test"].body if isinstance(n, ast.FunctionDef)}
    assert {"setUp", "runTest"} <= test_methods
    assert any(name.startswith("test_") for name in test_methods)
    # parameter node fields ↔ the .ui's SlicerParameterName properties
    fields = {n.target.id for n in classes[f"{module}ParameterNode"].body if isinstance(n, ast.AnnAssign)}
    ui = ET.parse(ROOT / module / "Resources" / "UI" / f"{module}.ui")
    bound = {prop.find("string").text for prop in ui.iter("property") if prop.get("name") == "SlicerParameterName"}
    assert bound <= fields, f"the .ui binds parameters the node does not have: {bound - fields}"
    widget_names = {w.get("name") for w in ui.iter("widget")}
    used = set(re.findall(r"self\.ui\.(\w+)", "\n".join(module_sources(module))))
    assert used <= widget_names, f"{module}.py uses widgets missing from the .ui: {used - widget_names}"
    # no installs or heavy imports at file scope (Slicer reviewers check this)
    for part in module_sources(module):
        part_tree = ast.parse(part)
        top_imports = {alias.name.split(".")[0] for node in part_tree.body if isinstance(node, ast.Import)
                       for alias in node.names}
        top_imports |= {node.module.split(".")[0] for node in part_tree.body if isinstance(node, ast.ImportFrom)}
        assert top_imports <= {"logging", "os", "sys", "typing", "vtk", "slicer", f"{module}Lib"}, top_imports
        assert "pip_install" not in part


@pytest.mark.parametrize("module", MODULES)
def test_module_only_uses_dttlib_names_that_exist(module):
    trees = [ast.parse(source) for source in module_sources(module)]
    imports = [(node.module, alias.name) for tree in trees for node in ast.walk(tree)
               if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("DTTLib")
               for alias in node.names]
    assert imports, f"{module} does not delegate to DTTLib"
    for module_name, name in imports:
        assert hasattr(importlib.import_module(module_name), name), f"{module_name}.{name} does not exist"
