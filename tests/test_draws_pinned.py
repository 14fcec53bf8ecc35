"""The same seed gives bit-identical draws as before the inference code was restructured.

``tests/reference/draws_reference.json`` holds the sha256 of the draws and NUTS statistics of
two short fits (Lotka-Volterra by ``run_nuts``; the main job's neural-linear fit, as
``bayesode fit`` runs it), made by ``tests/reference/make_draws_reference.py`` from commit
54bbd31, before the layout change. The test reruns the same script's fits with this code: any
change to a key's use, a start, a compiled program's operations or the chunking shows as a
different hash. Tolerance: none (bit-identical), so a reference holds only on the kind of
machine and the JAX build it was made with (XLA compiles for the host's instruction set): the
file keeps one per machine, and the test compares with this machine's. The first reference's
machine was not recorded: on a machine with no reference of its own the test passes only if
the draws equal that one, and is skipped otherwise, saying how to make this machine's.
"""

import importlib.util
import json
import os

import numpy as np
import pytest

import bayesode as bo

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference")
spec = importlib.util.spec_from_file_location("make_draws_reference", os.path.join(HERE, "make_draws_reference.py"))
make = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make)

with open(os.path.join(HERE, "draws_reference.json")) as fh:
    REFERENCES = json.load(fh)  # [{"machine": make.machine_key() or None, "made_from": commit, name: fingerprint}]


def _reference(name: str, got: dict) -> dict:
    mine = [r for r in REFERENCES if r["machine"] == make.machine_key()]
    if mine:
        return mine[0][name]
    for r in REFERENCES:  # the unrecorded machine: a sha256 match cannot be by chance
        if r["machine"] is None and r[name]["draws_sha256"] == got["draws_sha256"]:
            return r[name]
    pytest.skip(f"no reference draws for this machine ({make.machine_key()}); make them from the pre-change commit "
                f"as tests/reference/make_draws_reference.py says")


@pytest.mark.slow  # two short fits, but each compiles its programs (about 3 min each on the busy 2-core machine)
@pytest.mark.parametrize("name", sorted(make.FITS))
def test_same_seed_gives_the_draws_of_the_reference_bit_for_bit(name):
    got = make.fingerprint(make.FITS[name](bo))
    want = _reference(name, got)
    assert got["shapes"] == want["shapes"]
    # The values first: on a mismatch they show how far apart the runs are.
    for site, values in want["first_values"].items():
        np.testing.assert_array_equal(np.float32(got["first_values"][site]), np.float32(values), err_msg=site)
    assert got["svi_final_loss"] == want["svi_final_loss"]
    assert got["divergences"] == want["divergences"]
    assert got["draws_sha256"] == want["draws_sha256"]
    assert got["stats_sha256"] == want["stats_sha256"]
