"""MedGemma as a text generator: one call, streaming, cancellable, KV cache dropped after.

Works with any Gemma3ForConditionalGeneration folder (MedGemma 4B / 27B, or a tiny random
model in tests) through the same processor/tokenizer code.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from DTTLib.models.memory import release_memory
from DTTLib.narrative.prompt import Prompt


def _as_rgb(image: Any) -> Any:
    import numpy as np  # noqa: PLC0415

    if isinstance(image, (str, Path)):
        from PIL import Image  # noqa: PLC0415

        return np.asarray(Image.open(image).convert("RGB"))
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.dtype != np.uint8:
        lo, hi = float(array.min()), float(array.max())
        array = ((array - lo) / (hi - lo or 1.0) * 255).astype(np.uint8)
    return array


class MedGemmaGenerator:
    """``generate(prompt, on_text, cancel) -> str`` over a loaded model + processor."""

    def __init__(self, model: Any, processor: Any, max_new_tokens: int = 400,
                 static_cache: bool | None = None, name: str = "medgemma-4b") -> None:
        self.model = model
        self.processor = processor
        self.max_new_tokens = max_new_tokens
        self.name = name
        device = getattr(model, "device", None)
        #: static cache (capturable decode) only pays off on a GPU
        self.static_cache = (str(device).startswith("cuda")) if static_cache is None else static_cache

    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])

    def _inputs(self, prompt: Prompt) -> Any:
        messages = prompt.messages()
        if prompt.images and hasattr(self.processor, "image_processor"):
            text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            enc = self.processor(text=text, images=[_as_rgb(i) for i in prompt.images], return_tensors="pt")
        else:
            plain = [{"role": "user", "content": prompt.text}]
            text = self.tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=True)
            enc = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)
        enc = {k: v.to(self.model.device) for k, v in enc.items()}
        if "pixel_values" in enc:
            enc["pixel_values"] = enc["pixel_values"].to(self.model.dtype)
        if "pixel_values" not in enc:
            enc.pop("token_type_ids", None)
        return enc

    def generate(self, prompt: Prompt, on_text: Callable[[str], None] | None = None,
                 cancel: threading.Event | None = None) -> str:
        import torch  # noqa: PLC0415
        from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer  # noqa: PLC0415

        class _Stream(TextStreamer):
            def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                if on_text is not None and text:
                    on_text(text)

        class _Cancel(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                stop = bool(cancel is not None and cancel.is_set())
                return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

        enc = self._inputs(prompt)
        extra: dict[str, Any] = {}
        if self.static_cache:
            extra["cache_implementation"] = "static"
        try:
            with torch.inference_mode():
                out = self.model.generate(
                    **enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                    streamer=_Stream(self.tokenizer, skip_prompt=True, skip_special_tokens=True),
                    stopping_criteria=StoppingCriteriaList([_Cancel()]), **extra)
            new_tokens = out[0, enc["input_ids"].shape[1]:]
            return self.tokenizer.decode(new_tokens, skip_special_tokens=True)
        finally:
            # no chat history and no KV cache survive the call
            enc = out = None  # noqa: F841
            release_memory()
