"""The fast greedy loop (static cache, fixed-shape step) against transformers' own generate().

A tiny random Gemma3 with both layer kinds (sliding window 8, one full-attention layer) is
saved and loaded through from_pretrained; prompts longer and shorter than the window make
both the prefill and the decode steps cross it. The CUDA-graph capture itself needs a GPU
(benchmarks/gpu_narrative.py); here its eager twin runs the same step function.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from tiny_models import SPECIALS, save_tiny_gemma3

from DTTLib.errors import InputError
from DTTLib.narrative.fast_decode import ENV_SWITCH, FastDecoder, stop_token_ids, unsupported_reason
from DTTLib.narrative.generator import MedGemmaGenerator
from DTTLib.narrative.prompt import Prompt

WINDOW = 8
N = 24


def _save_model(folder):
    # three layers (sliding, full, sliding) with a window of 8, so decoding crosses the window
    return save_tiny_gemma3(folder, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                            sliding_window=WINDOW, max_position_embeddings=4096,
                            layer_types=["sliding_attention", "full_attention", "sliding_attention"])


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    from transformers import AutoProcessor, Gemma3ForConditionalGeneration

    folder = _save_model(tmp_path_factory.mktemp("fast_gemma3"))
    model = Gemma3ForConditionalGeneration.from_pretrained(str(folder)).eval()
    return model, AutoProcessor.from_pretrained(str(folder)), folder


def _text_inputs(processor, text, chat=True):
    tok = processor.tokenizer
    if chat:
        text = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
    return dict(tok(text, return_tensors="pt", add_special_tokens=False))


def _image_inputs(processor):
    image = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "describe the lesion"}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return dict(processor(text=text, images=[image], return_tensors="pt"))


def _reference(model, inputs, n, eos=None):
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=n, do_sample=False, eos_token_id=eos, pad_token_id=0)
    return out[0, inputs["input_ids"].shape[1]:].tolist()


@pytest.mark.parametrize("text, chat", [("the lesion grew from 12 mm to 15 mm; " * 3, True), ("ab", False)])
def test_tokens_equal_generate_across_the_sliding_window(loaded, text, chat):
    model, processor, _ = loaded
    inputs = _text_inputs(processor, text, chat)
    prompt_len = inputs["input_ids"].shape[1]
    assert (prompt_len > WINDOW) == chat and prompt_len + N > WINDOW  # both paths cross the window
    expected = _reference(model, inputs, N)
    result = FastDecoder(model).decode(inputs, N)
    assert len(set(expected)) > 3  # not a degenerate constant stream
    assert result.tokens == expected and result.stopped == "max_new_tokens"
    assert result.prompt_tokens == prompt_len


def test_tokens_equal_generate_with_an_image(loaded):
    model, processor, _ = loaded
    inputs = _image_inputs(processor)
    assert "pixel_values" in inputs and int(inputs["token_type_ids"].sum()) == 4
    expected = _reference(model, inputs, N)
    assert FastDecoder(model).decode(inputs, N).tokens == expected
    # the image changes the answer, so it really went through the prefill
    without = {k: v for k, v in inputs.items() if k not in ("pixel_values", "token_type_ids")}
    assert FastDecoder(model).decode(without, N).tokens != expected


def test_eager_attention_masks_match_generate(loaded):
    from transformers import Gemma3ForConditionalGeneration

    model, processor, folder = loaded
    eager = Gemma3ForConditionalGeneration.from_pretrained(str(folder), attn_implementation="eager").eval()
    assert unsupported_reason(eager) is None
    inputs = _image_inputs(processor)
    assert FastDecoder(eager).decode(inputs, N).tokens == _reference(eager, inputs, N)


def test_streaming_gets_every_token_in_order(loaded):
    model, processor, _ = loaded
    ids, pieces = [], []
    result = FastDecoder(model).decode(_text_inputs(processor, "size of lesion L1? "), N, on_token=ids.append,
                                       tokenizer=processor.tokenizer, on_text=pieces.append)
    assert ids == result.tokens and len(ids) == N
    assert "".join(pieces) == result.text == processor.tokenizer.decode(ids, skip_special_tokens=True)
    assert len(pieces) > 1  # streamed in pieces, not once at the end


def test_stop_token_ends_early_like_generate(loaded):
    model, processor, _ = loaded
    inputs = _text_inputs(processor, "the lesion grew from 12 mm to 15 mm; " * 3)
    free = FastDecoder(model).decode(inputs, N).tokens
    k = next(i for i in range(2, N) if free[i] not in free[:i])  # first appearance after a few tokens
    result = FastDecoder(model).decode(inputs, N, stop_ids=[free[k]])
    assert result.stopped == "eos" and result.tokens == free[:k + 1]
    assert result.tokens == _reference(model, inputs, N, eos=free[k])


def test_cancel_stops_within_one_token(loaded):
    model, processor, _ = loaded
    cancel = threading.Event()

    def on_token(_token):
        if len(seen) == 2:
            cancel.set()
        seen.append(_token)

    seen: list[int] = []
    result = FastDecoder(model).decode(_text_inputs(processor, "hello"), N, on_token=on_token, cancel=cancel)
    assert result.stopped == "cancelled" and 3 <= len(result.tokens) <= 4


def test_graph_path_is_skipped_on_cpu_with_the_reason(loaded):
    model, processor, _ = loaded
    inputs = _text_inputs(processor, "hello")
    auto = FastDecoder(model).decode(inputs, 4)
    assert auto.mode == "eager" and "cpu" in auto.graph_skipped and auto.capture_s == 0.0
    off = FastDecoder(model, use_graph=False).decode(inputs, 4)
    assert off.graph_skipped == "disabled" and off.tokens == auto.tokens
    with pytest.raises(InputError):
        FastDecoder(model).decode(inputs, 0)
    with pytest.raises(InputError):
        FastDecoder(model).decode({k: v.repeat(2, 1) for k, v in inputs.items()}, 4)


def test_failed_capture_falls_back_to_the_eager_step_with_the_same_tokens(loaded, monkeypatch):
    """The warm-up steps run for real before capture; when capture then fails, the buffers
    they moved must be restored so the eager fallback continues from the right token."""
    import contextlib

    import DTTLib.narrative.fast_decode as fd

    model, processor, _ = loaded
    inputs = _text_inputs(processor, "the lesion grew from 12 mm to 15 mm; " * 2)
    expected = _reference(model, inputs, N)

    class _Stream:
        def wait_stream(self, _other):
            pass

    def _graph(*_args, **_kwargs):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(fd, "graph_unavailable_reason", lambda _model: None)
    for name, value in {"Stream": _Stream, "current_stream": _Stream, "CUDAGraph": object, "graph": _graph,
                        "stream": lambda _s: contextlib.nullcontext()}.items():
        monkeypatch.setattr(torch.cuda, name, value)
    warmups = []
    step = fd.FastDecoder._step
    monkeypatch.setattr(fd.FastDecoder, "_step", lambda self: (warmups.append(1), step(self))[1])
    result = fd.FastDecoder(model, warmup_steps=2).decode(inputs, N)
    assert result.mode == "eager" and result.graph_skipped.startswith("capture failed: RuntimeError")
    assert len(warmups) == 2 + (N - 1)  # the warm-ups ran, then one eager step per token
    assert result.tokens == expected


def test_stop_ids_include_end_of_turn(loaded):
    model, processor, _ = loaded
    ids = stop_token_ids(model, processor.tokenizer)
    assert SPECIALS.index("<end_of_turn>") in ids and SPECIALS.index("<eos>") in ids


def test_generator_uses_the_fast_loop_when_asked_and_generate_otherwise(loaded, monkeypatch):
    model, processor, _ = loaded
    prompt = Prompt(text="Lesion L1 grew from 12 mm to 15 mm. Describe.", images=[], token_count=0, max_tokens=2048)
    fast = MedGemmaGenerator(model, processor, max_new_tokens=N, fast_decode=True)
    streamed: list[str] = []
    text = fast.generate(prompt, on_text=streamed.append)
    assert fast.last_decode is not None and fast.last_decode.mode == "eager"
    assert "".join(streamed) == text
    # same text as generate() with the same stop tokens
    enc = fast._inputs(prompt)
    expected = _reference(model, enc, N, eos=stop_token_ids(model, processor.tokenizer))
    assert fast.last_decode.tokens == expected
    assert text == processor.tokenizer.decode(expected, skip_special_tokens=True)
    plain = MedGemmaGenerator(model, processor, max_new_tokens=N, fast_decode=False)
    assert plain.generate(prompt).strip() == text.strip() and plain.last_decode is None
    # auto: only on CUDA, and the environment switch turns it off there too
    assert MedGemmaGenerator(model, processor).fast_decode is False
    monkeypatch.setenv(ENV_SWITCH, "0")

    class _OnCuda:
        device = "cuda:0"

    assert MedGemmaGenerator(_OnCuda(), processor).fast_decode is False
    monkeypatch.setenv(ENV_SWITCH, "1")
    assert MedGemmaGenerator(_OnCuda(), processor).fast_decode is True


def test_benchmark_script_runs_tiny_on_cpu(tmp_path):
    import json

    report = _benchmark_module().main(["--tiny", "--no-siglip", "--json", str(tmp_path / "r.json")])
    decode = report["decode"]
    assert decode["fast_graph"]["mode"] == "eager" and "cpu" in decode["fast_graph"]["graph_skipped"]
    assert decode["fast_eager"]["new_tokens"] == decode["plain"]["new_tokens"] == 10
    # the tiny prompt (40) + 10 tokens crosses the tiny window (32): all three loops still agree
    assert report["prompt_tokens"] + 10 > decode["sliding_window"]
    assert decode["first_mismatch"] == {"graph_vs_eager": None, "eager_vs_generate": None, "graph_vs_generate": None}
    assert json.loads((tmp_path / "r.json").read_text())["decode"]["fast_eager"]["meets_target"] is None


def _benchmark_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_narrative.py"
    spec = importlib.util.spec_from_file_location("gpu_narrative_fast", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_full_size_step_has_no_host_sync_or_cpu_tensor(attn):
    """What CUDA-graph capture needs, checked without a GPU: MedGemma-4B's real config on meta
    tensors (no memory). A data-dependent op (.item(), boolean indexing, nonzero) cannot run on
    meta and would raise; a CPU tensor in any op would mean a host copy inside the graph."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten
    from transformers import Gemma3ForConditionalGeneration

    config, _ = _benchmark_module().gemma_config(tiny=False)
    with torch.device("meta"):
        model = Gemma3ForConditionalGeneration(config).to(torch.bfloat16).eval()
    model.set_attn_implementation(attn)
    decoder = FastDecoder(model)
    text = config.text_config

    class _Devices(TorchDispatchMode):
        ops, cpu = 0, []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            self.ops += 1
            if any(isinstance(t, torch.Tensor) and t.device.type == "cpu" for t in tree_flatten((args, kwargs, out))[0]):
                self.cpu.append(str(func))
            return out

    with torch.inference_mode():
        decoder._setup(1088)
        for layer in decoder.cache.layers:  # what the (uncaptured) prefill allocates
            empty = torch.zeros((1, text.num_key_value_heads, 0, text.head_dim), device="meta", dtype=torch.bfloat16)
            layer.lazy_initialization(empty, empty)
        watch = _Devices()
        with watch:
            decoder._step()
    assert watch.cpu == [] and watch.ops > 34 * 20  # every layer ran
    assert decoder.next_token.shape == (1,) and decoder.cache.layers[0].keys.shape == (1, 4, 1088, 256)
