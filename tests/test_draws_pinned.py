"""The same seed gives bit-identical draws as before the inference code was restructured.

``tests/reference/draws_reference.json`` holds the sha256 of the draws and NUTS statistics of
two short fits (Lotka-Volterra by ``run_nuts``; the main job's neural-linear fit, as
``bayesode fit`` runs it), made by ``tests/reference/make_draws_reference.py`` from commit
54bbd31, before the layout change. The test reruns the same script's fits with this code: any
change to a key's use, a start, a compiled program's operations or the chunking shows as a
different hash. Tolerance: none (bit-identical), on the machine and JAX build the reference
was made with; the script's docstring says when to regenerate it.
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
    REFERENCE = json.load(fh)


@pytest.mark.slow  # two short fits, but each compiles its programs (about 3 min each on the busy 2-core machine)
@pytest.mark.parametrize("name", sorted(make.FITS))
def test_same_seed_gives_the_draws_of_the_reference_bit_for_bit(name):
    got = make.fingerprint(make.FITS[name](bo))
    want = REFERENCE[name]
    assert got["shapes"] == want["shapes"]
    # The values first: on a mismatch they show how far apart the runs are.
    for site, values in want["first_values"].items():
        np.testing.assert_array_equal(np.float32(got["first_values"][site]), np.float32(values), err_msg=site)
    assert got["svi_final_loss"] == want["svi_final_loss"]
    assert got["divergences"] == want["divergences"]
    assert got["draws_sha256"] == want["draws_sha256"]
    assert got["stats_sha256"] == want["stats_sha256"]
