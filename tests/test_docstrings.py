"""Every ``Examples`` section in the package runs as printed (doctest), so a docstring cannot
drift from the code (``load_events`` imported a module that had been renamed, and only its
docstring example called it that way).

A few examples compile a sampler or a jump solve and take 10 s to minutes on 2 cores; they are
left out here (``SLOW``), and the same calls are made by the tests named beside them.
"""

import doctest
import importlib
import pkgutil

import pytest

import bayesode

SLOW = {
    "bayesode.infer.point_process.fit_events": "test_event_fit",
    "bayesode.model.jump_filter.make_jump_filter_model": "test_observation_jumps",
    "bayesode.solving.thinning.simulate_events": "test_event_jumps",
    "bayesode.model.point_process.point_process_model": "test_event_fit",
    "bayesode.solving.events.StateEvent": "test_jumps",
    "bayesode.solving.observation_jumps.filter_observations": "test_observation_jumps",
    "bayesode.model.assembly.make_model": "test_model",
    "bayesode.solving.jump_solve.solve_with_jumps": "test_jumps",
    "bayesode.solving.event_jumps.solve_event_jumps": "test_event_jumps",
}


def _all_examples():
    finder = doctest.DocTestFinder(exclude_empty=True)
    found = {}
    for info in pkgutil.walk_packages(bayesode.__path__, "bayesode."):
        module = importlib.import_module(info.name)
        found.update({t.name: t for t in finder.find(module, module=module) if t.examples})
    return found


ALL = _all_examples()
EXAMPLES = [ALL[name] for name in sorted(ALL) if name not in SLOW]


def test_examples_are_found_and_the_slow_list_is_current():
    assert len(EXAMPLES) > 30  # the package has some 50 examples; a broken walk would find none
    gone = sorted(set(SLOW) - set(ALL))  # a renamed function must not leave its example silently unrun
    assert not gone, f"SLOW names examples that no longer exist: {gone}"


@pytest.mark.parametrize("test", EXAMPLES, ids=lambda t: t.name)
def test_docstring_example_runs_as_printed(test):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    out = []
    result = runner.run(test, out=out.append)
    assert result.failed == 0, "".join(out)
