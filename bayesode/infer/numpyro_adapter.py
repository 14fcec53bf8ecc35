"""The one place bayesode reads NumPyro state that NumPyro does not expose publicly.

Gap (as it would be reported upstream, NumPyro 0.22): an ``AutoGuide`` computes its initial
locations in unconstrained space when it sets itself up (``_setup_prototype``, from
``init_loc_fn``), and keeps them only as the private ``AutoGuide._init_locs``. There is no
public accessor. For ``AutoNormal`` they equal the initial ``{site}_auto_loc`` params, but for
``AutoContinuous`` guides they are raveled into ``auto_loc`` in an order that is itself private
(``_ravel_dict``), and ``median(params)`` returns them constrained (a round trip through the
transforms, not the same floats). ``run_svi`` needs them as they are, to test the whole model
at the guide's start with NumPyro's own criterion (finite potential energy and gradient), as
``find_valid_initial_params`` does, without NumPyro's eager set-up of the whole model. A
public ``AutoGuide.init_locs`` (or ``init_locs(params)``) would close the gap.

``tests/test_programs.py::test_numpyro_adapter_reads_the_guide_init_locs`` fails loudly when
NumPyro changes this.
"""

from __future__ import annotations


def guide_init_locs(guide) -> dict:
    """The set-up guide's initial locations in unconstrained space: site -> array.

    Raises ``RuntimeError`` naming the NumPyro version if the guide does not hold them where
    NumPyro 0.22 does (set up: after the guide was run once under a seed).
    """
    locs = getattr(guide, "_init_locs", None)
    if not isinstance(locs, dict):
        import numpyro

        raise RuntimeError(
            f"{type(guide).__name__} has no dict `_init_locs` after its set-up (numpyro {numpyro.__version__}): "
            "NumPyro changed how an AutoGuide keeps its initial locations; update "
            "bayesode/infer/numpyro_adapter.py."
        )
    return locs
