"""The model catalog: which checkpoints exist, where they come from, what they need.

Kept as data (``catalog.json``) so adding a checkpoint or pinning a checksum is a data
change; this module only reads and checks it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from DTTLib.errors import InputError

CATALOG_PATH = Path(__file__).with_name("catalog.json")
PHASES = ("segmentation", "embeddings", "narrative")


@dataclass(frozen=True)
class ModelEntry:
    """One catalog row. ``source`` is 'hub:<repo>', 'bundled:<package>' or 'folder:<description>'
    (no download: the user points at a local folder, e.g. a self-trained nnU-Net model)."""

    id: str
    source: str
    phase: str
    architecture: str
    size_bytes: int
    licence: str
    gated: bool
    revision: str | None = None
    licence_url: str = ""
    parameters: int = 0
    checksums: dict[str, str] = field(default_factory=dict)
    input: dict[str, Any] = field(default_factory=dict)
    vram_gb: dict[str, float] = field(default_factory=dict)
    device_needs: str = ""

    @property
    def kind(self) -> str:
        return self.source.split(":", 1)[0]

    @property
    def hub_id(self) -> str | None:
        return self.source.split(":", 1)[1] if self.kind == "hub" else None


def _entry(model_id: str, row: dict[str, Any]) -> ModelEntry:
    for key in ("source", "phase", "architecture", "size_bytes", "licence", "gated"):
        if key not in row:
            raise InputError(f"Model catalog entry '{model_id}' lacks '{key}'",
                             f"Add it to {CATALOG_PATH.name}.")
    if row["phase"] not in PHASES:
        raise InputError(f"Model catalog entry '{model_id}' has unknown phase '{row['phase']}'",
                         f"Use one of {', '.join(PHASES)}.")
    if row["source"].split(":", 1)[0] not in ("hub", "bundled", "folder"):
        raise InputError(f"Model catalog entry '{model_id}' has source '{row['source']}'",
                         "Use 'hub:<repo id>', 'bundled:<package>' or 'folder:<what to put there>'.")
    known = set(ModelEntry.__dataclass_fields__)
    return ModelEntry(id=model_id, **{k: v for k, v in row.items() if k in known and k != "id"})


@lru_cache(maxsize=4)
def load_catalog(path: Path = CATALOG_PATH) -> dict[str, ModelEntry]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return {model_id: _entry(model_id, row) for model_id, row in data["models"].items()}


def get_entry(model_id: str) -> ModelEntry:
    catalog = load_catalog()
    if model_id not in catalog:
        raise InputError(f"Unknown model '{model_id}'",
                         f"Use one of: {', '.join(sorted(catalog))}, or give a local folder.")
    return catalog[model_id]
