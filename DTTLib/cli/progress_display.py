"""Progress of ``dtt run`` / ``dtt demo`` on the terminal: a bar for countable steps.

On a terminal, a step that reports counts (segmentations) gets a tqdm bar with the current
item beside it; other events are printed as lines above it. Piped into a file or a CI log,
every event is one plain line (no carriage-return noise). Events may come from worker
threads (background registration), so printing is serialised.
"""

from __future__ import annotations

import shutil
import sys
import threading
from typing import Any, TextIO

from DTTLib.pipeline.progress import ProgressEvent


class TerminalProgress:
    def __init__(self, stream: TextIO | None = None, bars: bool | None = None) -> None:
        self.stream = stream or sys.stdout  # stderr stays for the one-line error of a failed run
        self.bars = self.stream.isatty() if bars is None else bars
        self._lock = threading.Lock()
        self._bar: Any = None
        self._bar_step = ""

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            if self._bar is not None and event.step != self._bar_step:
                self._close_bar()
            if self.bars and event.total and self._start_bar(event):
                self._bar.n = event.done or 0
                self._bar.set_postfix_str(event.message, refresh=False)
                self._bar.refresh()
            elif self._bar is not None:
                self._bar.write(f"… {event}", file=self.stream)
            else:
                print(f"… {event}", file=self.stream, flush=True)

    def _start_bar(self, event: ProgressEvent) -> bool:
        if self._bar is not None:
            return True
        try:
            from tqdm import tqdm  # noqa: PLC0415
        except ImportError:  # plain lines instead
            self.bars = False
            return False
        width = shutil.get_terminal_size((100, 20)).columns  # a pty of width 0 (script, CI) → 100
        self._bar = tqdm(total=event.total, desc=event.step, unit="lesion·scan", file=self.stream,
                         ncols=min(width, 140), leave=True)
        self._bar_step = event.step
        return True

    def _close_bar(self) -> None:
        self._bar.n = self._bar.total
        self._bar.refresh()
        self._bar.close()
        self._bar = None

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._close_bar()
