"""Console output of fits: progress lines with ETA (tqdm), phases, and no ``\\r`` off a terminal (fast)."""

import io
import re

from bayesode.infer.console import Progress, phase


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_off_a_terminal_is_plain_lines_with_elapsed_time_and_eta():
    out = io.StringIO()  # a log file or a pipe: not a terminal
    bar = Progress(200, 100, True, stream=out)
    for done in (100, 200):
        bar.update(done, diverging=3, step_size=[0.1, 0.3], failures=2)
    bar.close()
    text = out.getvalue()
    assert "\r" not in text
    first, second = text.splitlines()
    assert re.match(r"nuts: +50%\|.*\| 100/200 \[\d\d:\d\d<\d\d:\d\d", first), first  # elapsed < ETA
    assert "phase=warmup, step=0.2, divergences=3, solver failures=2" in first
    assert "200/200" in second and "phase=sample" in second


def test_progress_on_a_terminal_is_a_tqdm_bar_and_off_when_disabled():
    term = Terminal()
    bar = Progress(10, 0, True, desc="svi", stream=term)
    bar.update(5, loss="1.5")
    bar.update(10, loss="1.2")  # the last update closes the bar
    text = term.getvalue()
    assert "\r" in text and "svi: 100%" in text and "10/10" in text and "loss=1.2" in text
    assert "phase=" not in text  # no warmup: no phase figure
    quiet = io.StringIO()
    Progress(10, 0, False, stream=quiet).update(5)
    assert quiet.getvalue() == ""


def test_a_resumed_run_counts_its_rate_from_where_it_resumed():
    out = io.StringIO()
    Progress(200, 100, True, initial=150, stream=out).update(175)
    assert "175/200" in out.getvalue()


def test_phase_prints_a_line_before_and_the_seconds_after():
    out = io.StringIO()
    with phase("compiling the sampler", True, stream=out):
        out.write("work\n")
    lines = out.getvalue().splitlines()
    assert lines[0] == "compiling the sampler ..." and lines[1] == "work"
    assert re.fullmatch(r"compiling the sampler: \d+\.\d s", lines[2]), lines[2]
    quiet = io.StringIO()
    with phase("x", False, stream=quiet):
        pass
    assert quiet.getvalue() == ""


def test_a_message_during_progress_is_its_own_line_and_keeps_the_bar_whole():
    out = io.StringIO()
    bar = Progress(10, 0, True, stream=out)
    bar.update(5)
    bar.write("stuck chains: chain 1")
    assert out.getvalue().splitlines()[-1] == "stuck chains: chain 1"
    term = Terminal()
    bar = Progress(10, 0, True, stream=term)
    bar.update(5)
    bar.write("stuck chains: chain 1")
    bar.close()
    assert "stuck chains: chain 1\n" in term.getvalue() and "5/10" in term.getvalue()
    quiet = io.StringIO()
    Progress(10, 0, False, stream=quiet).write("x")
    assert quiet.getvalue() == ""
