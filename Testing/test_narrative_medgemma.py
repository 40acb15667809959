"""MedGemma backend through the real loading path: a tiny random Gemma3 saved to disk."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from tiny_models import save_tiny_gemma3

from DTTLib.hardware import HardwareInfo, choose_profile
from DTTLib.models import ModelManager, ModelStore
from DTTLib.narrative import facts_from_dict, narrate
from DTTLib.narrative.backends import choose_backend, medgemma_generator
from DTTLib.narrative.example import example_twin
from DTTLib.narrative.prompt import build_prompt


@pytest.fixture(scope="session")
def tiny_gemma(tmp_path_factory):
    return save_tiny_gemma3(tmp_path_factory.mktemp("tiny_gemma3"))


def test_tiny_medgemma_loads_streams_and_is_checked(tiny_gemma, tmp_path):
    info = HardwareInfo(cpu_cores=2)
    manager = ModelManager(info, choose_profile(info).settings, ModelStore(tmp_path))
    gen = medgemma_generator(manager, str(tiny_gemma), max_new_tokens=12, allow_download=False)
    assert manager.resident["narrative"].plan.precision == "fp32" and gen.static_cache is False
    facts = facts_from_dict(example_twin())
    streamed = []
    image = (np.random.default_rng(0).random((80, 80)) * 255).astype(np.uint8)
    prompt = build_prompt(facts, images=[image], count_tokens=gen.count_tokens, image_tokens=4)
    text = gen.generate(prompt, on_text=streamed.append)
    assert "".join(streamed).strip() == text.strip()
    assert prompt.token_count == gen.count_tokens(prompt.text) + 4
    # random weights write nonsense: it must be flagged and replaced by the grounded template
    result = narrate(facts, gen, images=[image])
    assert result.backend == "template" and result.attempts == 2 and result.grounding["ungrounded"] == []
    assert any("fell back" in f for f in result.flags)


def test_cancel_stops_generation_and_shows_the_template(tiny_gemma, tmp_path):
    info = HardwareInfo(cpu_cores=2)
    manager = ModelManager(info, choose_profile(info).settings, ModelStore(tmp_path))
    gen = medgemma_generator(manager, str(tiny_gemma), max_new_tokens=50, allow_download=False)
    cancel = threading.Event()
    cancel.set()
    result = narrate(facts_from_dict(example_twin()), gen, cancel=cancel)
    assert result.backend == "template" and any("cancelled" in f for f in result.flags)
    assert result.attempts == 1


def test_backend_choice_follows_the_profile_with_reasons():
    cpu = choose_profile(HardwareInfo(cpu_cores=2))
    assert choose_backend(None, cpu)[0] == "template"
    backend, why = choose_backend("medgemma", cpu)
    assert backend == "medgemma-4b" and "slow" in why
    gpu = choose_profile(HardwareInfo(gpu_available=True, gpu_count=1, vram_total_bytes=80 * 1024**3,
                                      compute_capability=(9, 0), bf16_supported=True))
    assert choose_backend("auto", gpu)[0] == "medgemma-27b"
