"""The worker thread the Slicer modules poll: progress, cancel, result, and errors kept for the GUI."""

from __future__ import annotations

import threading

from DTTLib.background import BackgroundJob


def test_result_and_progress_reach_the_polling_side():
    steps = threading.Event()

    def compute(progress, should_cancel):
        progress(1, 3, "registering")
        steps.wait(10)
        progress(3, 3)
        return "twin"

    job = BackgroundJob(compute).start()
    while job.step is None:  # the worker reports before the GUI side sees anything else
        pass
    assert job.running and (job.done, job.total, job.step) == (1, 3, "registering")
    steps.set()
    assert job.wait(10) and not job.running
    assert (job.result, job.error, job.done, job.step) == ("twin", None, 3, None)


def test_cancel_is_seen_by_the_computation_and_ignore_is_kept():
    started = threading.Event()
    seen = []

    def compute(progress, should_cancel):
        started.set()
        while not should_cancel():
            pass
        seen.append(True)
        return "partial"

    job = BackgroundJob(compute).start()
    started.wait(10)
    job.cancel()
    assert job.wait(10) and seen == [True] and job.cancel_requested and not job.ignored
    job.cancel(ignore_result=True)
    job.cancel()  # a later plain cancel does not un-ignore it
    assert job.ignored and job.result == "partial"


def test_an_error_is_kept_with_its_traceback_not_raised():
    def compute(progress, should_cancel):
        raise ValueError("box outside the scan")

    job = BackgroundJob(compute).start()
    assert job.wait(10)
    assert isinstance(job.error, ValueError) and "box outside the scan" in job.traceback
    assert "Traceback" in job.traceback and job.result is None
    assert BackgroundJob(compute).wait(0)  # never started: nothing to wait for
