"""The starting states of bayesode's NUTS driver for the jump fits (:mod:`bayesode.infer.event_nuts`), in the form
NumPyro's ``MCMC.run(init_params=...)`` takes, checked against NumPyro's own start.

The driver computes each chain's start (log density and gradient at the start values) in one compiled
program; NumPyro's ``NUTS.init`` computes it op by op. The two agree to float32 tolerance but not bit for
bit, and a NUTS chain amplifies a last-bit difference into other draws within a few iterations. So a test
that the driver draws what ``MCMC`` draws gives ``MCMC`` the driver's start (``ParamInfo``), after checking
it is NumPyro's start to within ``RTOL``/``ATOL`` (float32 rounding, amplified through the ODE solve).
"""

import jax
import numpy as np
from numpyro.infer import NUTS, init_to_value
from numpyro.infer.util import ParamInfo

from bayesode.infer import event_nuts

RTOL, ATOL = 1e-4, 1e-4


def driver_start(model, init: dict, data: dict, key, *, num_chains: int, num_warmup: int, max_tree_depth: int,
                 check: bool = True):
    """``ParamInfo`` of the driver's start for each chain (stacked on a leading chain axis for several);
    ``check``: compare the first chain's with NumPyro's own start (an eager solve: seconds to a minute)."""
    programs = event_nuts._nuts_programs(model, init, data, key, num_warmup=num_warmup, max_tree_depth=max_tree_depth)
    keys = [key] if num_chains == 1 else list(jax.random.split(key, num_chains))
    states = [programs.init(k, init, data) for k in keys]
    info = [ParamInfo(s.z, s.potential_energy, s.z_grad) for s in states]
    info = info[0] if num_chains == 1 else jax.tree.map(lambda *xs: np.stack(xs), *info)
    if not check:
        return info
    # NumPyro's own start from the same values and the first chain's key: the same point.
    kernel = NUTS(model, init_strategy=init_to_value(values=init), max_tree_depth=max_tree_depth)
    theirs = kernel.init(keys[0], num_warmup, None, (), data)
    for ours, ref in ((states[0].z, theirs.z), (states[0].z_grad, theirs.z_grad)):
        for site in ref:
            np.testing.assert_allclose(ours[site], ref[site], rtol=RTOL, atol=ATOL, err_msg=site)
    np.testing.assert_allclose(states[0].potential_energy, theirs.potential_energy, rtol=RTOL, atol=ATOL)
    return info
