"""The terminal progress display: bars on a terminal, plain lines in logs, safe across threads."""

from __future__ import annotations

import io
import threading

from DTTLib.cli.progress_display import TerminalProgress
from DTTLib.pipeline.progress import ProgressEvent


def _events() -> list[ProgressEvent]:
    return [ProgressEvent("load"), ProgressEvent("segment"),
            *[ProgressEvent("segment", f"segmenting L{i} at t0", i, 3) for i in range(3)],
            ProgressEvent("segment", "registering t1 to t0"), ProgressEvent("render")]


def _shown(bars: bool) -> str:
    stream = io.StringIO()
    display = TerminalProgress(stream, bars=bars)
    for event in _events():
        display(event)
    display.close()
    return stream.getvalue()


def test_a_log_gets_one_plain_line_per_event():
    text = _shown(bars=False)
    lines = text.splitlines()
    assert lines == ["… load", "… segment", "… segment: segmenting L0 at t0 (1/3)", "… segment: segmenting L1 at t0 (2/3)",
                     "… segment: segmenting L2 at t0 (3/3)", "… segment: registering t1 to t0", "… render"]
    assert "\r" not in text


def test_a_terminal_gets_a_bar_that_ends_full_and_lines_for_the_rest():
    text = _shown(bars=True)
    assert "segment: 100%" in text and "3/3" in text  # closed when the next step began
    assert "segmenting L2 at t0" in text  # the current item beside the bar
    assert "… segment: registering t1 to t0" in text and "… render" in text


def test_events_from_several_threads_are_all_shown():
    stream = io.StringIO()
    display = TerminalProgress(stream, bars=False)
    threads = [threading.Thread(target=lambda n=n: [display(ProgressEvent("segment", f"w{n} {i}")) for i in range(50)])
               for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 200 and all(line.startswith("… segment: w") for line in lines)
