"""Printing helpers shared by subcommands: JSON for machines, aligned text for people."""

from __future__ import annotations

import json
import math
import sys
from typing import Any


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "tolist"):
        return _json_safe(value.tolist())
    return value


def print_json(data: Any) -> None:
    json.dump(_json_safe(data), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def print_fields(rows: list[tuple[str, Any]]) -> None:
    width = max(len(label) for label, _ in rows) if rows else 0
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
