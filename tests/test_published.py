"""Published ODE models (``tests/published_models.py``) against independent Stan references.

Fast (CI): bayesode's log density at three posterior points equals Stan's
(``tests/reference/published_reference.json``) up to a constant, so priors, the
observation operator, the likelihood and the solve agree term by term. Tolerance 0.02 on
differences of log densities of size ~50: Stan solves at 1e-8 in float64, bayesode at
rtol 1e-6 in float32, which moves the log density by about 1e-3 here (the stiff ``robertson``:
Stan's BDF at rtol 1e-10, bayesode's Kvaerno5 at rtol 1e-5, atol 1e-9 in float64, within 3e-4
of a solve at rtol 1e-11).

The posterior comparison (NUTS 4 x (1000 + 1000) against Stan's posterior: means within 4
combined MCSE, sd ratio in [0.85, 1.15]) is ``python benchmarks/published.py``, not a test:
one fit took over 20 minutes on the shared 2-core machine, past the ~2 minutes a slow test may take.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import log_density
from published_models import MODELS, reference, site_values


@pytest.mark.parametrize("name", sorted(MODELS))
def test_log_density_matches_stan_up_to_a_constant(name):
    model, data = MODELS[name]()
    x64 = model.spec.precision == "float64"
    ours, stans = [], []
    with jax.enable_x64(x64):  # the stiff model runs in float64, the others in float32
        md = data.model_data(jnp.float64 if x64 else jnp.float32)
        for point in reference(name)["points"]:
            lp, _ = log_density(model, (md,), {}, site_values(point["values"], md.ts.dtype))
            ours.append(float(lp))
            stans.append(point["log_density"])
    ours, stans = np.asarray(ours), np.asarray(stans)
    assert np.all(np.isfinite(ours))
    np.testing.assert_allclose(ours - ours[0], stans - stans[0], atol=0.02)
    assert np.ptp(stans) > 0.05  # the points differ enough for the check to mean something
