"""A user at the keyboard, for tests of Ctrl-C: a progress display that presses it at a given iteration."""

import os
import signal

from bayesode.infer.console import Progress


def press_ctrl_c_at(done_at):
    """A :class:`Progress` that sends this process SIGINT when ``done_at`` iterations are reported."""

    class PressCtrlC(Progress):
        def update(self, done, *args, **kwargs):
            super().update(done, *args, **kwargs)
            if done == done_at:
                os.kill(os.getpid(), signal.SIGINT)

    return PressCtrlC
