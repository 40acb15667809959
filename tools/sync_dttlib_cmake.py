#!/usr/bin/env python3
"""Rewrite the file lists in DTTLib/CMakeLists.txt from what is on disk.

Slicer installs only the files CMake lists; a forgotten one breaks the installed extension
while every source-tree test still passes. Run this after adding or removing a DTTLib file;
Testing/test_packaging.py fails until the lists match.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "DTTLib"
RESOURCE_SUFFIXES = (".json", ".txt")


def library_files() -> tuple[list[str], list[str]]:
    files = sorted(p.relative_to(LIBRARY).as_posix() for p in LIBRARY.rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts)
    scripts = [f for f in files if f.endswith(".py")]
    resources = [f for f in files if f.endswith(RESOURCE_SUFFIXES)]
    return scripts, resources


def render(scripts: list[str], resources: list[str]) -> str:
    def block(name: str, items: list[str]) -> str:
        return f"set({name}\n" + "".join(f"  {item}\n" for item in items) + "  )\n"

    return block("DTTLib_PYTHON_SCRIPTS", scripts) + "\n" + block("DTTLib_PYTHON_RESOURCES", resources)


def main() -> int:
    cmake = LIBRARY / "CMakeLists.txt"
    text = cmake.read_text()
    pattern = re.compile(r"(# BEGIN FILE LISTS[^\n]*\n).*?(# END FILE LISTS)", re.S)
    if not pattern.search(text):
        print(f"{cmake}: markers '# BEGIN FILE LISTS' / '# END FILE LISTS' not found", file=sys.stderr)
        return 1
    new = pattern.sub(lambda m: m.group(1) + render(*library_files()) + m.group(2), text)
    if new != text:
        cmake.write_text(new)
        print(f"updated {cmake.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
