"""MedGemma as a text generator: one call, streaming, cancellable, KV cache dropped after.

Works with any Gemma3ForConditionalGeneration folder (MedGemma 4B / 27B, or a tiny random
model in tests) through the same processor/tokenizer code.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from DTTLib.models.memory import release_memory
from DTTLib.narrative.fast_decode import fast_decode_enabled
from DTTLib.narrative.prompt import Prompt

log = logging.getLogger(__name__)


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
                 static_cache: bool | None = None, name: str = "medgemma-4b",
                 fast_decode: bool | None = None) -> None:
        self.model = model
        self.processor = processor
        self.max_new_tokens = max_new_tokens
        self.name = name
        device = getattr(model, "device", None)
        #: static cache (capturable decode) only pays off on a GPU
        self.static_cache = (str(device).startswith("cuda")) if static_cache is None else static_cache
        #: greedy fixed-shape loop with a CUDA-graph step (fast_decode.py): on by default on a
        #: GPU; off with fast_decode=False or the environment variable DTT_FAST_DECODE=0
        self.fast_decode = (str(device).startswith("cuda") and fast_decode_enabled()) \
            if fast_decode is None else fast_decode
        #: the last fast decode (tokens, mode, timings), and why it was skipped if it was
        self.last_decode: Any = None
        self.fast_skipped: str | None = None

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
        if self.fast_decode:
            text = self._generate_fast(enc, on_text, cancel)
            if text is not None:
                return text
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

    def _generate_fast(self, enc: dict[str, Any], on_text: Callable[[str], None] | None,
                       cancel: threading.Event | None) -> str | None:
        """The fast loop's text, or None (reason in ``fast_skipped``) to use ``generate()``."""
        from DTTLib.narrative.fast_decode import FastDecoder, stop_token_ids, unsupported_reason  # noqa: PLC0415

        self.fast_skipped = unsupported_reason(self.model)
        if self.fast_skipped:
            return None
        streamed: list[str] = []

        def piece(text: str) -> None:
            streamed.append(text)
            if on_text is not None:
                on_text(text)

        try:
            result = FastDecoder(self.model).decode(
                enc, self.max_new_tokens, stop_token_ids(self.model, self.tokenizer), cancel=cancel,
                tokenizer=self.tokenizer, on_text=piece)
        except Exception as exc:  # noqa: BLE001 - nothing shown yet: generate() can start over
            if streamed:
                raise
            self.fast_skipped = f"fast decode failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            log.warning("%s; using generate()", self.fast_skipped)
            return None
        finally:
            enc = None  # noqa: F841
            release_memory()
        self.last_decode = result
        if result.graph_skipped:
            self.fast_skipped = f"CUDA graph not used: {result.graph_skipped}"
        return result.text
