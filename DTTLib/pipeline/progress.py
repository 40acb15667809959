"""What a long run reports while it works: one event per step and per unit of work inside it.

Events carry counts where the work is countable (``done`` of ``total`` segmentations), so a
terminal can draw a bar and a GUI a progress value; ``str(event)`` is the plain log line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    step: str                 # the pipeline step ("segment", "render", …)
    message: str = ""         # what is happening inside it ("segmenting L2 at t5")
    done: int | None = None   # units finished before this one started
    total: int | None = None  # units in the step, when countable

    def __str__(self) -> str:
        text = f"{self.step}: {self.message}" if self.message else self.step
        if self.total:
            text += f" ({(self.done or 0) + 1}/{self.total})"
        return text


Progress = Callable[[ProgressEvent], None]


def ignore_progress(event: ProgressEvent) -> None:
    """The default: nobody is watching."""
