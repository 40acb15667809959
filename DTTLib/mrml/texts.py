"""Narratives and notes ↔ ``vtkMRMLTextNode``."""

from __future__ import annotations

from typing import Any

from DTTLib.mrml.runtime import get_scene


def add_text_node(text: str, name: str = "Text", scene: Any = None,
                  attributes: dict[str, str] | None = None) -> Any:
    scene = scene or get_scene()
    node = scene.AddNewNodeByClass("vtkMRMLTextNode", name)
    node.SetText(text)
    for key, value in (attributes or {}).items():
        node.SetAttribute(key, value)
    return node


def text_of(node: Any) -> str:
    return node.GetText() or ""
