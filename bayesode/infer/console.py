"""What a run shows on the console: progress lines, and Ctrl-C handling."""

from __future__ import annotations

import signal
import sys
import threading
import time

import numpy as np


class StopOnSigint:
    """Ctrl-C while sampling: finish the chunk in progress (and its checkpoint), then return the draws.

    A second Ctrl-C raises KeyboardInterrupt at once (losing that chunk). Why a
    flag: Python raises KeyboardInterrupt wherever the main thread happens to be,
    and it can land inside library code that swallows it (seen here: a run that
    kept sampling after Ctrl-C); a flag read between chunks is never lost. Only
    the main thread may install signal handlers; elsewhere this does nothing.
    """

    def __init__(self):
        self.requested, self._previous = False, None

    def __bool__(self) -> bool:
        return self.requested

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)  # the next Ctrl-C interrupts at once
        print("\nCtrl-C: stopping after this chunk; press Ctrl-C again to stop now", file=sys.stderr, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            self._previous = previous if previous is not None else signal.default_int_handler
            signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None and signal.getsignal(signal.SIGINT) == self._handle:
            signal.signal(signal.SIGINT, self._previous)


def bar_text(done: int, total: int, width: int = 30) -> str:
    """``[#####.....]``: ``done`` of ``total`` as a text bar (the NUTS and SVI progress lines)."""
    fill = width * done // total
    return f"[{'#' * fill}{'.' * (width - fill)}]"


class Progress:
    def __init__(self, total, num_warmup, enabled):
        self.total, self.num_warmup, self.enabled, self.t0 = total, num_warmup, enabled, time.time()

    def update(self, done, diverging, step_size, failures):
        if not self.enabled:
            return
        phase = "warmup" if done <= self.num_warmup else "sample"
        msg = (
            f"\r{phase} {bar_text(done, self.total)} {done}/{self.total} "
            f"| {time.time() - self.t0:5.0f}s | step {float(np.mean(step_size)):.2g} "
            f"| divergences {int(diverging)} | solver failures {int(failures)}"
        )
        print(msg, end="", file=sys.stderr, flush=True)
        if done >= self.total:
            print(file=sys.stderr, flush=True)

