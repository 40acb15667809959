"""Where the real shared data lives: ``../shared/data`` beside the checkout, or $DTT_SHARED_DATA."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("DTT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
