"""Model catalog, weight cache and the phase-by-phase model manager (no Qt, no MRML).

``ModelManager`` keeps one phase (segmentation → embeddings → narrative) resident at a time
and walks an out-of-memory fallback chain; ``ModelStore`` finds weights in a local folder,
the user cache or the hub; the catalog is data (``catalog.json``).
"""

from DTTLib.models.cache import CACHE_ENV_VAR, ModelStore, ResolvedModel, default_cache_dir, gated_message, sha256_file
from DTTLib.models.catalog import CATALOG_PATH, PHASES, ModelEntry, get_entry, load_catalog
from DTTLib.models.manager import LoadedModel, ModelManager
from DTTLib.models.memory import free_vram_bytes, is_out_of_memory, release_memory
from DTTLib.models.precision import LoadPlan, bitsandbytes_installed, four_bit_possible, from_pretrained_kwargs, plan_for

__all__ = [
    "CACHE_ENV_VAR", "CATALOG_PATH", "PHASES", "LoadPlan", "LoadedModel", "ModelEntry", "ModelManager",
    "ModelStore", "ResolvedModel", "bitsandbytes_installed", "default_cache_dir", "four_bit_possible",
    "free_vram_bytes", "from_pretrained_kwargs", "gated_message", "get_entry", "is_out_of_memory",
    "load_catalog", "plan_for", "release_memory", "sha256_file",
]
