"""What a run shows on the console: progress (``tqdm``), phases such as compiling, and Ctrl-C."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time

import numpy as np
from tqdm import tqdm


class StopOnSigint:
    """Ctrl-C while sampling: finish the chunk in progress (and its checkpoint), then return the draws.

    A second Ctrl-C raises KeyboardInterrupt at once (losing that chunk). Why a
    flag: Python raises KeyboardInterrupt wherever the main thread happens to be,
    and it can land inside library code that swallows it (seen here: a run that
    kept sampling after Ctrl-C); a flag read between chunks is never lost. Only
    the main thread may install signal handlers; elsewhere this does nothing.
    """

    def __init__(self, what: str = "chunk"):
        self.requested, self._previous, self.what = False, None, what

    def __bool__(self) -> bool:
        return self.requested

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)  # the next Ctrl-C interrupts at once
        print(f"\nCtrl-C: stopping after this {self.what}; press Ctrl-C again to stop now", file=sys.stderr, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            self._previous = previous if previous is not None else signal.default_int_handler
            signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None and signal.getsignal(signal.SIGINT) == self._handle:
            signal.signal(signal.SIGINT, self._previous)


def is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class Progress:
    """Progress of an iterative fit on ``stream`` (default stderr): a ``tqdm`` bar with ETA on a
    terminal; elsewhere (a log file, a pipe, a notebook's captured output) plain lines in the
    same format, one per update, never ``\r``.

    ``update(done, **postfix)`` reports ``done`` of ``total`` iterations and named figures
    (e.g. divergences); ``close()`` ends the bar. ``num_warmup`` > 0 names the phase
    (warmup/sample) in the figures.
    """

    def __init__(self, total: int, num_warmup: int, enabled: bool, *, desc: str = "nuts", initial: int = 0,
                 stream=None):  # fmt: skip
        self.total, self.num_warmup, self.enabled, self.desc = total, num_warmup, enabled, desc
        self.initial = initial  # a resumed run starts part-way: its rate counts from there
        self.stream = sys.stderr if stream is None else stream
        self.t0 = time.time()
        self._bar = None
        if enabled and is_terminal(self.stream):
            self._bar = tqdm(total=total, initial=initial, desc=desc, file=self.stream, dynamic_ncols=True)

    def update(self, done: int, diverging=None, step_size=None, failures=None, **figures):
        """``done`` iterations so far; NUTS passes divergences (after warmup), step size and solver failures."""
        if not self.enabled:
            return
        shown = {}
        if self.num_warmup:
            shown["phase"] = "warmup" if done <= self.num_warmup else "sample"
        if step_size is not None:
            shown["step"] = f"{float(np.mean(step_size)):.2g}"
        if diverging is not None:
            shown["divergences"] = int(diverging)
        if failures is not None:
            shown["solver failures"] = int(failures)
        shown.update(figures)
        if self._bar is not None:
            self._bar.set_postfix(shown, refresh=False)
            self._bar.update(done - self._bar.n)
            if done >= self.total:
                self.close()
            return
        postfix = ", ".join(f"{k}={v}" for k, v in shown.items())
        line = tqdm.format_meter(done, self.total, time.time() - self.t0, prefix=self.desc, ascii=True,
                                 postfix=postfix, initial=self.initial)  # fmt: skip
        print(line, file=self.stream, flush=True)

    def write(self, line: str) -> None:
        """A message between updates (above the bar on a terminal, so the bar is not broken)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@contextlib.contextmanager
def phase(what: str, enabled: bool, stream=None):
    """A step with no progress of its own (compiling, collecting draws) as two lines: ``what...``
    before, ``what: 12.3 s`` after, so a long step is never a silent gap."""
    stream = sys.stderr if stream is None else stream
    t0 = time.time()
    if enabled:
        print(f"{what} ...", file=stream, flush=True)
    yield
    if enabled:
        print(f"{what}: {time.time() - t0:.1f} s", file=stream, flush=True)
