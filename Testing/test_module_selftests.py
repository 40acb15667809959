"""Each Slicer module's own self-test passes on the real headless MRML scene."""

from __future__ import annotations

from pathlib import Path

import pytest
from slicer_module_harness import run_self_test

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", ["DigitalTwinTumor", "DTTSegmentation", "DTTNarrative"])
def test_module_self_test_passes(mrml, module):
    result = run_self_test(ROOT / module / f"{module}.py")
    problems = [text for _, text in result.errors + result.failures]
    assert result.testsRun == 1 and not problems, "\n".join(problems)
