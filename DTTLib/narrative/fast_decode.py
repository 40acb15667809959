"""Greedy decoding over a static KV cache, one fixed-shape step per token, CUDA-graph captured.

Why: plain ``generate()`` pays Python and kernel-launch overhead on every token (7–8 tok/s
for MedGemma-4B on an H200, far below the memory-bandwidth limit). Here the prompt (with its
images) is prefilled in one forward into a pre-allocated cache of length
``prompt + max_new_tokens``; every later token runs the *same* step on static buffers —
``input_ids`` (1, 1), ``position`` (1,), the cache, and 4-D masks computed on the device from
``position`` — so on CUDA the step is captured once with ``torch.cuda.CUDAGraph`` and replayed
per token. The step writes its own next input (argmax → ``input_ids``, ``position + 1``) inside
the graph, so the host only reads one token id per step. On CPU (and in tests) the same step
runs eagerly; both paths give the tokens ``generate(do_sample=False)`` gives.

All layers keep the full length; the sliding-window layers are limited by their mask
(``kv > q - window``), which avoids the Python-side branches of transformers'
``StaticSlidingWindowLayer`` that a captured graph would freeze.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from DTTLib.errors import InputError

#: set to "0" to switch the fast path off everywhere (then ``generate()`` is used)
ENV_SWITCH = "DTT_FAST_DECODE"
MASK_IMPLEMENTATIONS = ("sdpa", "eager")
CACHE_ALIGN = 64  # cache length multiple; the extra slots are always masked


def fast_decode_enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def unsupported_reason(model: Any) -> str | None:
    """Why the fast loop cannot run this model (None when it can)."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "get_input_embeddings"):
        return "not a transformers model"
    text = config.get_text_config()
    if not getattr(text, "layer_types", None):
        return "model config has no layer_types (not a Gemma3-style decoder)"
    impl = getattr(text, "_attn_implementation", None) or getattr(config, "_attn_implementation", None)
    if impl not in MASK_IMPLEMENTATIONS:
        return f"attention implementation '{impl}' (the fast loop builds masks for sdpa/eager only)"
    device_map = getattr(model, "hf_device_map", None) or {}
    if len({str(d) for d in device_map.values()}) > 1:
        return "model is split across devices or offloaded (device_map)"
    return None


def graph_unavailable_reason(model: Any) -> str | None:
    """Why the decode step cannot be captured as a CUDA graph here (None when it can)."""
    import torch  # noqa: PLC0415

    device = _device(model)
    if device.type != "cuda":
        return f"model is on {device.type}: CUDA graphs need a CUDA device"
    if not torch.cuda.is_available():
        return "torch.cuda is not available"
    return None


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """EOS ids from the generation config and tokenizer, plus Gemma's ``<end_of_turn>``."""
    ids: list[int] = []
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids += list(eos) if isinstance(eos, (list, tuple)) else ([eos] if eos is not None else [])
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.append(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    if "<end_of_turn>" in vocab:
        ids.append(vocab["<end_of_turn>"])
    return sorted({int(i) for i in ids})


def _device(model: Any) -> Any:
    import torch  # noqa: PLC0415

    device = getattr(model, "device", None)
    return torch.device(device) if device is not None else next(model.parameters()).device


@dataclass
class DecodeResult:
    """Tokens (stop token included, like ``generate``), text and where the time went."""

    tokens: list[int]
    text: str
    prompt_tokens: int
    mode: str                      # "cuda_graph" or "eager"
    stopped: str                   # "eos", "max_new_tokens" or "cancelled"
    graph_skipped: str | None = None
    ttft_s: float = 0.0            # prompt in → first token id on the host
    capture_s: float = 0.0         # warm-up + capture (0 in eager mode)
    decode_s: float = 0.0          # after capture, tokens 2..n

    @property
    def decode_tok_s(self) -> float:
        steps = len(self.tokens) - 1
        return steps / self.decode_s if steps > 0 and self.decode_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"new_tokens": len(self.tokens), "prompt_tokens": self.prompt_tokens, "mode": self.mode,
                "stopped": self.stopped, "graph_skipped": self.graph_skipped,
                "ttft_s": round(self.ttft_s, 4), "capture_s": round(self.capture_s, 4),
                "decode_s": round(self.decode_s, 4), "decode_tok_s": round(self.decode_tok_s, 1),
                "total_s": round(self.ttft_s + self.capture_s + self.decode_s, 4)}


def text_streamer(tokenizer: Any, on_text: Callable[[str], None]) -> Any:
    """transformers' TextStreamer word-boundary logic, sending pieces to ``on_text``."""
    from transformers import TextStreamer  # noqa: PLC0415

    class _Pieces(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                on_text(text)

    return _Pieces(tokenizer, skip_prompt=False, skip_special_tokens=True)


def _decode_cache(config: Any, max_cache_len: int, position: Any) -> Any:
    """A transformers ``Cache`` whose layers all hold ``max_cache_len`` slots; a one-token
    update writes at the shared device tensor ``position`` (no Python-side length state)."""
    import torch  # noqa: PLC0415
    from transformers.cache_utils import Cache, StaticLayer  # noqa: PLC0415

    class _StepLayer(StaticLayer):
        def lazy_initialization(self, key_states: Any, value_states: Any) -> None:
            # the parent's version also marks static addresses for torch.compile, whose first
            # call imports dynamo (~2 s); plain allocation is all a CUDA graph needs
            self.device = key_states.device
            self.batch_size, self.num_heads = key_states.shape[:2]
            self.k_head_dim, self.v_head_dim = key_states.shape[-1], value_states.shape[-1]
            shape = (self.batch_size, self.num_heads, self.max_cache_len)
            self.keys = torch.zeros((*shape, self.k_head_dim), dtype=key_states.dtype, device=self.device)
            self.values = torch.zeros((*shape, self.v_head_dim), dtype=value_states.dtype, device=self.device)
            self.cumulative_length = self.cumulative_length.to(self.device)
            self.is_initialized = True

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> Any:
            if key_states.shape[-2] != 1:      # prefill: slots 0..P-1 via the parent
                return super().update(key_states, value_states, *args, **kwargs)
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            self.keys.index_copy_(2, position, key_states)
            self.values.index_copy_(2, position, value_states)
            return self.keys, self.values

    layers = len(config.get_text_config().layer_types)
    return Cache(layers=[_StepLayer(max_cache_len=max_cache_len) for _ in range(layers)])


class FastDecoder:
    """Greedy decode with a captured (CUDA) or eager (anywhere) fixed-shape step.

    ``use_graph``: None = capture when the model is on CUDA; False = always eager.
    One decode at a time per instance; the cache and graph are dropped after each call.
    """

    def __init__(self, model: Any, use_graph: bool | None = None, warmup_steps: int = 2) -> None:
        reason = unsupported_reason(model)
        if reason:
            raise InputError(f"Fast decoding cannot run this model: {reason}",
                             f"Use generate() instead (set {ENV_SWITCH}=0).")
        self.model = model
        self.use_graph = use_graph
        self.warmup_steps = warmup_steps
        self._lock = threading.Lock()
        text = model.config.get_text_config()
        self.layer_types = sorted(set(text.layer_types))
        self.sliding_window = getattr(text, "sliding_window", None)
        self.eager_masks = (getattr(text, "_attn_implementation", None) == "eager")
        #: why the last decode did not use a CUDA graph (None when it did)
        self.graph_skipped: str | None = None

    # -- the fixed-shape step -------------------------------------------------------------
    def _setup(self, total_len: int) -> None:
        import torch  # noqa: PLC0415

        device = _device(self.model)
        self.ids = torch.zeros((1, 1), dtype=torch.long, device=device)
        self.position = torch.zeros((1,), dtype=torch.long, device=device)
        self.next_token = torch.zeros((1,), dtype=torch.long, device=device)
        self.kv_index = torch.arange(total_len, device=device)
        self.cache = _decode_cache(self.model.config, total_len, self.position)
        self.embed = self.model.get_input_embeddings()

    def _masks(self) -> dict[str, Any]:
        import torch  # noqa: PLC0415

        seen = (self.kv_index <= self.position).view(1, 1, 1, -1)
        masks = {}
        for kind in self.layer_types:
            mask = seen
            if kind == "sliding_attention" and self.sliding_window:
                mask = seen & (self.kv_index > self.position - self.sliding_window).view(1, 1, 1, -1)
            if self.eager_masks:
                dtype = self.embed.weight.dtype
                mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
                    ~mask, torch.finfo(dtype).min)
            masks[kind] = mask
        return masks

    def _step(self) -> None:
        """One token: reads ``ids``/``position``, writes ``next_token``, ``ids``, ``position + 1``."""
        out = self.model(inputs_embeds=self.embed(self.ids), attention_mask=self._masks(),
                         position_ids=self.position.view(1, 1), cache=self.cache, use_cache=True,
                         logits_to_keep=1)
        nxt = out.logits[:, -1, :].argmax(dim=-1)
        self.next_token.copy_(nxt)
        self.ids.copy_(nxt.view(1, 1))
        self.position.add_(1)

    def _capture(self) -> Any:
        """Warm up on a side stream, restore the buffers, capture one step."""
        import torch  # noqa: PLC0415

        saved_ids, saved_pos = self.ids.clone(), self.position.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        try:
            with torch.cuda.stream(side):
                for _ in range(self.warmup_steps):
                    self._step()
        finally:
            torch.cuda.current_stream().wait_stream(side)
            # warm-up wrote cache slots ahead of the real position: harmless, each is rewritten
            # before it is read; the inputs go back to the real next step (also for the eager
            # fallback when this fails)
            self.ids.copy_(saved_ids)
            self.position.copy_(saved_pos)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            self._step()
        torch.cuda.synchronize()
        return graph

    # -- decoding ------------------------------------------------------------------------
    def decode(self, inputs: dict[str, Any], max_new_tokens: int, stop_ids: Iterable[int] = (),
               on_token: Callable[[int], None] | None = None, cancel: threading.Event | None = None,
               tokenizer: Any = None, on_text: Callable[[str], None] | None = None) -> DecodeResult:
        """Greedy tokens for ``inputs`` (what the processor returns, batch 1, on the model's
        device). ``on_token`` gets every id in order; ``on_text`` word pieces (needs
        ``tokenizer``). Stops after a ``stop_ids`` token (kept, like ``generate``)."""
        if max_new_tokens < 1:
            raise InputError("max_new_tokens must be at least 1", "Ask for one or more new tokens.")
        input_ids = inputs["input_ids"]
        if input_ids.shape[0] != 1:
            raise InputError("Fast decoding takes one prompt at a time", "Pass a batch of 1.")
        with self._lock:
            try:
                return self._decode(inputs, max_new_tokens, set(int(s) for s in stop_ids), on_token,
                                    cancel, tokenizer, on_text)
            finally:
                self.cache = self.ids = self.position = self.next_token = self.kv_index = None

    def _decode(self, inputs: dict[str, Any], max_new_tokens: int, stops: set[int],
                on_token: Callable[[int], None] | None, cancel: threading.Event | None,
                tokenizer: Any, on_text: Callable[[str], None] | None) -> DecodeResult:
        import torch  # noqa: PLC0415

        streamer = text_streamer(tokenizer, on_text) if (on_text is not None and tokenizer is not None) else None
        prompt_len = int(inputs["input_ids"].shape[1])
        t0 = time.perf_counter()
        with torch.inference_mode():
            # rounded up: SDPA's memory-efficient kernel wants the mask's last dim aligned
            self._setup(-(-(prompt_len + max_new_tokens) // CACHE_ALIGN) * CACHE_ALIGN)
            out = self.model(**inputs, position_ids=self.kv_index[:prompt_len].view(1, -1), cache=self.cache,
                             use_cache=True, logits_to_keep=1)
            first = out.logits[:, -1, :].argmax(dim=-1)
            self.ids.copy_(first.view(1, 1))
            self.position.fill_(prompt_len)
            out = None
            tok = int(first.item())
            ttft = time.perf_counter() - t0

            def emit(token: int) -> None:
                if on_token is not None:
                    on_token(token)
                if streamer is not None:
                    streamer.put(torch.tensor([token]))

            tokens = [tok]
            emit(tok)
            graph, capture_s = None, 0.0
            done = self._stop_reason(tok, tokens, max_new_tokens, stops, cancel)
            want_graph = self.use_graph is not False
            self.graph_skipped = graph_unavailable_reason(self.model) if want_graph else "disabled"
            if done is None and self.graph_skipped is None:
                t1 = time.perf_counter()
                try:
                    graph = self._capture()
                except Exception as exc:  # noqa: BLE001 - fall back to the eager step, say why
                    self.graph_skipped = f"capture failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                    graph = None
                capture_s = time.perf_counter() - t1
            mode = "cuda_graph" if graph is not None else "eager"
            run = graph.replay if graph is not None else self._step
            t2 = time.perf_counter()
            if done is None:
                run()
            while done is None:
                tok = int(self.next_token.item())   # the one host sync per token
                tokens.append(tok)
                done = self._stop_reason(tok, tokens, max_new_tokens, stops, cancel)
                if done is None:
                    run()   # queue the next step first, so streaming this token overlaps it
                emit(tok)
            decode_s = time.perf_counter() - t2
            if streamer is not None:
                streamer.end()
            graph = run = None
        text = tokenizer.decode(tokens, skip_special_tokens=True) if tokenizer is not None else ""
        return DecodeResult(tokens, text, prompt_len, mode, done, self.graph_skipped, ttft, capture_s, decode_s)

    @staticmethod
    def _stop_reason(tok: int, tokens: list[int], max_new_tokens: int, stops: set[int],
                     cancel: threading.Event | None) -> str | None:
        if tok in stops:
            return "eos"
        if len(tokens) >= max_new_tokens:
            return "max_new_tokens"
        if cancel is not None and cancel.is_set():
            return "cancelled"
        return None
