"""A computation in a daemon thread that a GUI polls: progress, cancel, then a result or an error.

Why one class: the Slicer modules run long work off the GUI thread (a model run, a twin build,
slices prepared while a box is drawn). The Qt timer that polls stays in each module; the thread,
the progress and cancel state shared with it, and the error with its traceback are this class —
pure Python, so it is tested headless. The computation must not touch MRML (read the scene on the
GUI thread first).
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any

#: progress(done, total, step=None); step is an optional label of the current stage
Progress = Callable[..., None]


class BackgroundJob:
    """``compute(progress, should_cancel)`` in a daemon thread, started by :meth:`start`.

    ``done``/``total``/``step`` follow its progress calls; ``cancel_requested`` is what
    ``should_cancel()`` answers; ``ignored`` marks a result nobody will use (its scene closed).
    After the thread ends, ``result`` holds the return value or ``error``/``traceback`` what it
    raised."""

    def __init__(self, compute: Callable[[Progress, Callable[[], bool]], Any], name: str = "DTT background job") -> None:
        self.done, self.total, self.step = 0, 1, None
        self.cancel_requested = False
        self.ignored = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.traceback = ""
        self._compute = compute
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)

    def start(self) -> BackgroundJob:
        self._thread.start()
        return self

    def _work(self) -> None:
        try:
            self.result = self._compute(self._progress, lambda: self.cancel_requested)
        except Exception as error:  # noqa: BLE001 - handed to the GUI thread, never lost
            self.error, self.traceback = error, traceback.format_exc()

    def _progress(self, done: int, total: int, step: Any = None) -> None:
        self.done, self.total, self.step = done, total, step

    def cancel(self, ignore_result: bool = False) -> None:
        """Ask the computation to stop at its next check; ``ignore_result`` also drops what it returns."""
        self.cancel_requested = True
        self.ignored = self.ignored or ignore_result

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the thread ends (tests, shutdown); True when it has."""
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self._thread.is_alive()
