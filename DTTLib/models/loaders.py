"""Load a model folder with transformers, following a :class:`LoadPlan`.

One function per phase; all go through ``from_pretrained(folder, dtype=...)`` so tests that
save tiny random models exercise exactly the code that loads the real checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from DTTLib.models.precision import LoadPlan, from_pretrained_kwargs


def _place(model: Any, plan: LoadPlan) -> Any:
    if plan.device_map is None and not plan.quantized:
        model = model.to(plan.device)
    model.eval()
    return model


def load_narrative_model(folder: Path, plan: LoadPlan) -> tuple[Any, Any]:
    """(Gemma3ForConditionalGeneration, processor or tokenizer)."""
    from transformers import AutoProcessor, AutoTokenizer, Gemma3ForConditionalGeneration  # noqa: PLC0415

    model = Gemma3ForConditionalGeneration.from_pretrained(str(folder), **from_pretrained_kwargs(plan))
    try:
        processor = AutoProcessor.from_pretrained(str(folder))
    except Exception:  # noqa: BLE001 - a text-only folder has a tokenizer but no processor
        processor = AutoTokenizer.from_pretrained(str(folder))
    return _place(model, plan), processor


def load_embedding_model(folder: Path, plan: LoadPlan) -> tuple[Any, None]:
    """A SigLIP model (full or vision-only); the embedder does its own preprocessing."""
    from transformers import AutoModel  # noqa: PLC0415

    model = AutoModel.from_pretrained(str(folder), **from_pretrained_kwargs(plan))
    return _place(model, plan), None


def load_sam_model(folder: Path, plan: LoadPlan) -> tuple[Any, Any]:
    from transformers import SamModel, SamProcessor  # noqa: PLC0415

    model = SamModel.from_pretrained(str(folder), **from_pretrained_kwargs(plan))
    try:
        processor = SamProcessor.from_pretrained(str(folder))
    except Exception:  # noqa: BLE001
        processor = None
    return _place(model, plan), processor


DEFAULT_LOADERS = {"narrative": load_narrative_model, "embeddings": load_embedding_model,
                   "segmentation": load_sam_model}


def split_device_map(model_class: Any, config: Any, max_memory: dict[Any, Any]) -> dict[str, Any]:
    """A device map across several GPUs that keeps each decoder layer whole (MedGemma 27B).

    Built on an empty (meta) model, so it costs no memory.
    """
    from accelerate import infer_auto_device_map, init_empty_weights  # noqa: PLC0415

    with init_empty_weights():
        model = model_class(config)
    no_split = list(getattr(model, "_no_split_modules", None) or [])
    return infer_auto_device_map(model, max_memory=max_memory, no_split_module_classes=no_split)
