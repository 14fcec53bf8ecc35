"""Property tests: random malformed input never gets past validation, and ``solve`` never raises.

``make_data`` gets random series (lengths 0-6, 1-3 columns, one or two series)
with NaN/inf placed anywhere and times drawn from a small pool so that
duplicates and disorder are common. An oracle states which inputs are valid:
valid input must give a ``Data`` with the documented invariants, invalid input
a ``DataError`` (no other exception type). ``solve`` gets random linear fields
and initial states (including NaN, inf and states that grow past the blow-up
bound) through one compiled function.
"""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from scipy.linalg import expm

import bayesode as bo
from bayesode.solving.diffeq import FAILURE_CAUSES, STATUS_NONFINITE, STATUS_OK

# Function-scoped autouse fixtures (strict promotion) are fine to share across examples.
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

TIME_POOL = [0.0, 0.5, 1.0, 1.0, 2.0, 3.5, np.nan, np.inf, -np.inf]
VALUE_POOL = st.one_of(
    *[st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)] * 3,
    st.sampled_from([np.nan, np.nan, np.nan, np.inf, -np.inf]),
)


@st.composite
def series(draw, num_columns):
    n = draw(st.integers(0, 6))
    if draw(st.booleans()):  # usually well-formed times, so valid inputs are common too
        ts = np.sort(draw(st.lists(st.floats(-10, 10, allow_nan=False), min_size=n, max_size=n, unique=True)))
    else:
        ts = np.array(draw(st.lists(st.sampled_from(TIME_POOL), min_size=n, max_size=n)), dtype=float)
    rows = n + draw(st.sampled_from([0, 0, 0, 0, -1, 1]))  # sometimes the wrong number of rows
    cols = num_columns + draw(st.sampled_from([0, 0, 0, 0, 0, 1]))  # sometimes a different number of columns
    ys = np.array(draw(st.lists(VALUE_POOL, min_size=max(rows, 0) * cols, max_size=max(rows, 0) * cols)))
    return np.asarray(ts, dtype=float), ys.reshape(max(rows, 0), cols)


def is_valid(all_series) -> bool:
    cols = all_series[0][1].shape[1]
    for ts, ys in all_series:
        if ts.size == 0 or not np.all(np.isfinite(ts)) or not np.all(np.diff(ts) > 0):
            return False
        if ys.shape != (ts.size, cols) or np.isinf(ys).any() or not np.isfinite(ys).any():
            return False
    return True


@settings(max_examples=300, **SETTINGS)
@given(data=st.data())
def test_make_data_accepts_exactly_the_valid_inputs(data):
    k = data.draw(st.integers(1, 3))
    many = data.draw(st.booleans())
    all_series = [data.draw(series(k)) for _ in range(data.draw(st.integers(1, 2)) if many else 1)]
    ts_arg = [s[0] for s in all_series] if many else all_series[0][0]
    ys_arg = [s[1] for s in all_series] if many else all_series[0][1]
    try:
        d = bo.make_data(ts_arg, ys_arg)
    except bo.DataError:
        event("rejected")
        assert not is_valid(all_series)
        return
    event("accepted")
    assert is_valid(all_series)
    num_series, longest, cols = len(all_series), max(s[0].size for s in all_series), all_series[0][1].shape[1]
    assert d.ts.shape == (num_series, longest) and d.ys.shape == (num_series, longest, cols)
    np.testing.assert_array_equal(d.mask, np.isfinite(d.ys))
    for i, (ts, ys) in enumerate(all_series):
        got_ts, got_ys = d.series(i)
        np.testing.assert_array_equal(got_ts, ts)
        np.testing.assert_array_equal(got_ys, ys)  # NaN where missing, in the same places
        assert np.all(d.ts[i, ts.size :] == ts[-1]) and np.all(np.isnan(d.ys[i, ts.size :]))
        assert d.t0[i] == ts[0]
    md = d.model_data()
    assert bool(jnp.all(jnp.isfinite(md.ys))) and bool(jnp.all(md.mask == jnp.asarray(d.mask)))
    assert bool(jnp.all(jnp.diff(md.ts, axis=1) >= 0))


CONFIG = bo.SolverConfig(max_steps=512)
TS = jnp.linspace(0.0, 4.0, 6)


@jax.jit
def solve_linear(a, y0):
    return bo.solve(lambda t, y, args: args @ y, y0, TS, args=a, config=CONFIG)


ENTRY = st.floats(-1.0, 1.0, allow_nan=False, width=32)
STATE = st.one_of(
    st.floats(-10.0, 10.0, allow_nan=False, width=32),
    st.sampled_from([np.nan, np.inf, -np.inf, 1e7, -3e7]),  # non-finite, or grows past max_abs_state=1e8
)


@settings(max_examples=60, **SETTINGS)
@given(a=st.lists(ENTRY, min_size=4, max_size=4), y0=st.lists(STATE, min_size=2, max_size=2))
def test_solve_never_raises_and_reports_consistent_status(a, y0):
    a = np.array(a, dtype=np.float32).reshape(2, 2)
    y0 = np.array(y0, dtype=np.float32)
    sol = jax.device_get(solve_linear(jnp.asarray(a), jnp.asarray(y0)))
    status = int(sol.status)
    event(FAILURE_CAUSES.get(status, "ok"))
    assert status == STATUS_OK or status in FAILURE_CAUSES
    assert np.all(np.isfinite(sol.ys))  # a finite placeholder where the solve failed
    assert 0 <= int(sol.num_steps) <= CONFIG.max_steps
    if not np.all(np.isfinite(y0)):
        assert status == STATUS_NONFINITE and int(sol.num_steps) == 0
        return
    exact = np.stack([expm(a.astype(np.float64) * float(t)) @ y0.astype(np.float64) for t in np.asarray(TS)])
    if status == STATUS_OK:
        # float32, rtol = atol = 1e-6 per step: global error well under 1e-3 of the trajectory's size.
        np.testing.assert_allclose(sol.ys, exact, atol=1e-3 * (1.0 + np.abs(exact).max()))
    else:
        assert np.abs(exact).max() > 1e7, (status, exact)  # the only finite-start failure here is growth
