"""fit_events(method="laplace"): the Gaussian at the MAP, its exact Hessian, the held-out scoring that picks its
floor, and the fit end to end (bayesode/infer/event_laplace.py)."""

import re

import jax
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from numpyro.infer.util import potential_energy

from bayesode.datasets import make_event_sequences
from bayesode.errors import ConfigError, FitFailedError
from bayesode.infer import (
    EVENT_SOLVER,
    LAPLACE_DECAYS,
    fit_events,
    intensity_bands,
    make_event_process,
    to_inference_data,
)
from bayesode.infer.event_draws import _training_status
from bayesode.infer.event_laplace import (
    FLOORS,
    LaplacePoint,
    _programs,
    held_out_after,
    hessian_config,
    laplace_point,
    solvable_draws,
    validation_scores,
)
from bayesode.infer.laplace_members import redraw_failed
from bayesode.infer.point_process import _initial_values
from bayesode.model import Normal, event_arrays, point_process_model
from bayesode.solving import FixedSteps, per_event_log_likelihood, solve_event_jumps

EVENTS = make_event_sequences([[0.4, 1.1, 1.3, 2.8, 3.5, 3.9], [0.9, 2.0, 2.2, 2.7]], t_end=[4.0, 3.0])


def test_draws_have_the_floored_inverse_hessian_as_covariance():
    # H with negative, small and large eigenvalues: the draws' covariance must be V diag(1 / max(w, floor)) V^T.
    # 40,000 draws: the sample covariance's entries are within a few % of the largest (tolerance 5%).
    rng = np.random.default_rng(0)
    vectors, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    eigenvalues = np.array([-5.0, 0.5, 20.0, 400.0])
    point = LaplacePoint(np.arange(4.0), eigenvalues, vectors, None)
    draws = point.draws(10.0, rng.standard_normal((40_000, 4)))
    expected = vectors @ np.diag(1 / np.array([10.0, 10.0, 20.0, 400.0])) @ vectors.T
    np.testing.assert_allclose(np.cov(draws.T), expected, atol=0.05 * np.abs(expected).max())
    np.testing.assert_allclose(draws.mean(0), np.arange(4.0), atol=0.01)


def test_held_out_after_masks_the_future_and_ends_the_window():
    data = event_arrays(EVENTS)
    train, held = held_out_after(data, 0.6)
    cut = np.asarray(data["t0"]) + 0.6 * (np.asarray(data["t_end"]) - np.asarray(data["t0"]))
    np.testing.assert_allclose(train["t_end"], cut)
    times, mask = np.asarray(data["times"]), np.asarray(data["mask"])
    np.testing.assert_array_equal(np.asarray(train["mask"]), mask & (times < cut[:, None]))
    np.testing.assert_array_equal(held, mask & (times >= cut[:, None]))
    assert train["times"].shape == data["times"].shape and held.sum() == 6  # cuts 2.4 and 1.8: 2.8, 3.5, 3.9; 2.0, 2.2, 2.7


@pytest.mark.parametrize("config", [FixedSteps(), EVENT_SOLVER], ids=["fixed-steps", "adaptive-direct-adjoint"])
def test_hessian_matches_differences_of_the_gradient(config):
    # Forward over reverse mode through the solve (an adaptive config's adjoint swapped for DirectAdjoint) against
    # central differences of the reverse-mode gradient. float32, step 1e-2: the differences carry ~1e-4 relative
    # error from the gradient's rounding and O(h^2) truncation, so the tolerance is 2% of the largest entry; a
    # wrong program (prior left out, a site's transform, the wrong solver) is off by far more.
    process = make_event_process(EVENTS, key=jax.random.key(1), width=3, decay=0.1)
    prior = Normal(1.0)
    model = point_process_model(process, weight_prior=prior, config=config)
    twin = point_process_model(process, weight_prior=prior, config=hessian_config(config))
    data = event_arrays(EVENTS)
    values = _initial_values(process, prior)
    programs = _programs(model, twin, model, values, data)
    point = laplace_point(programs, values, data)
    hessian = point.vectors @ np.diag(point.eigenvalues) @ point.vectors.T
    flat, unravel = ravel_pytree(values)
    grad = jax.jit(jax.grad(lambda f: potential_energy(model, (), data, unravel(f))))
    h = 1e-2
    steps = np.eye(flat.size) * h
    columns = [(np.asarray(grad(flat + s)) - np.asarray(grad(flat - s))) / (2 * h) for s in steps]
    differences = np.stack(columns, axis=1)
    np.testing.assert_allclose(hessian, (differences + differences.T) / 2, atol=0.02 * np.abs(hessian).max())


def test_validation_scores_are_the_held_out_events_terms_at_a_narrow_floor():
    # At a floor of 1e10 every draw is the centre: the score is the mean of the held-out events' one-step terms
    # log lambda(t_i-) - (Lambda(t_i) - Lambda(t_{i-1})) at the centre, solved by the reference solver on the whole
    # sequence (history included), recomputed here from solve_event_jumps. Tolerance 1e-4 relative (float32).
    process = make_event_process(EVENTS, key=jax.random.key(2), width=3)
    prior = Normal(1.0)
    model = point_process_model(process, weight_prior=prior, config=FixedSteps())
    reference = point_process_model(process, weight_prior=prior, config=EVENT_SOLVER)
    data = event_arrays(EVENTS)
    values = _initial_values(process, prior)
    programs = _programs(model, model, reference, values, data)
    point = laplace_point(programs, values, data)
    _, held = held_out_after(data, 0.6)
    (score,) = validation_scores(programs, point, data, held, [1e10], jax.random.key(0))
    terms = [np.asarray(per_event_log_likelihood(sol, data["mask"][i]))
             for i, sol in enumerate(solve_event_jumps(process, data["times"][i], data["marks"][i], data["mask"][i],
                                                       data["t_end"][i], t0=data["t0"][i], config=EVENT_SOLVER)
                                     for i in range(2))]  # fmt: skip
    expected = np.mean(np.stack(terms)[held])
    np.testing.assert_allclose(score, expected, rtol=1e-4)


def test_laplace_fit_end_to_end_and_resumes(tmp_path):
    # Two Poisson sequences, rate 5 on [0, 24] and [0, 16] (about 200 events): the fit chooses the floor with the
    # best mean held-out score, every draw solves on the training data, and its 90% band covers the true rate 5 at
    # most times: >= 0.7 of 40 (a correctly specified model's band covers one realisation well under 90% when
    # the rate itself is off by its posterior sd; 0.7 fails a band narrowed to the MAP's own noise). A second
    # run on the checkpoint folder returns the same draws.
    rng = np.random.default_rng(4)
    seqs = [np.sort(rng.uniform(0.0, t, rng.poisson(5 * t))) for t in (24.0, 16.0)]
    ev = make_event_sequences(seqs, t_end=[24.0, 16.0])
    kwargs = dict(key=3, method="laplace", map_steps=300, num_samples=60, num_chains=2, width=4,
                  checkpoint_dir=str(tmp_path / "ck"))  # fmt: skip
    fit = fit_events(ev, **kwargs)
    info = fit.stats["laplace"]
    assert info["scores"].shape == (3, len(FLOORS))
    assert info["floor"] == FLOORS[int(np.argmax(info["scores"].mean(axis=0)))]
    assert fit.samples["field.z0"].shape == (2, 60, 2)
    # Both decays fitted, the one with the best validation score (its mean over origins at its floor) kept.
    decays, scores = info["decay_scores"].T
    assert decays.tolist() == list(LAPLACE_DECAYS) and np.isclose(scores.max(), info["scores"].mean(axis=0).max())
    assert fit.process.decay == info["decay"] == decays[np.argmax(scores)]
    assert fit.config == EVENT_SOLVER  # the draws are solved adaptively (the grid served the MAP and Hessian)
    assert np.all(_training_status(fit.process, fit.weight_prior, fit.config, ev, fit.flat_samples()) == 0)
    ts = np.linspace(0.5, 15.5, 40)
    bands = intensity_bands(fit, ts)
    covered = (bands["lower"][:, :, 0] <= 5.0) & (5.0 <= bands["upper"][:, :, 0])
    assert covered.mean() >= 0.7, covered.mean()
    idata = to_inference_data(fit, ts)
    assert idata.attrs["method"] == "laplace" and np.all(np.isfinite(idata.log_likelihood["events"].values))
    again = fit_events(ev, **kwargs)
    for name, value in fit.samples.items():
        np.testing.assert_array_equal(again.samples[name], value)


def test_laplace_settings_are_checked_before_any_fit():
    with pytest.raises(ConfigError, match="`map_steps` must be positive"):
        fit_events(EVENTS, key=0, method="laplace", map_steps=0)
    with pytest.raises(ConfigError, match="`decay`"):
        fit_events(EVENTS, key=0, decay=-1.0)
    with pytest.raises(ConfigError, match="with your own `process`"):
        fit_events(EVENTS, key=0, decay=0.1, process=make_event_process(EVENTS, key=jax.random.key(0)))
    with pytest.raises(ConfigError, match="does not take a delayed process"):
        fit_events(EVENTS, key=0, method="laplace", delayed=True)
    with pytest.raises(ConfigError, match="holds out at least"):
        fit_events(make_event_sequences([[0.5, 1.0, 1.5]], t_end=2.0), key=0, method="laplace", map_steps=2, width=2)


def test_hessian_config_swaps_the_adjoint_only():
    import diffrax

    swapped = hessian_config(EVENT_SOLVER)
    assert isinstance(swapped.adjoint, diffrax.DirectAdjoint) and swapped.rtol == EVENT_SOLVER.rtol
    assert hessian_config(FixedSteps()) == FixedSteps()
    with pytest.raises(ConfigError, match="`config`"):
        hessian_config("tsit5")


def test_cli_events_laplace_writes_the_fit_and_says_its_floor(tmp_path, capsys):
    import arviz as az

    from bayesode.cli.main import main as cli_main

    out = tmp_path / "coal"
    status = cli_main(["events", "--dataset", "coal_explosions", "--method", "laplace", "--map-steps", "100", "--samples", "20",
                       "--chains", "1", "--width", "4", "--points", "30", "--no-progress", "--out", str(out)])  # fmt: skip
    assert status == 0
    said = capsys.readouterr().out
    floor = re.search(r"Laplace at the MAP: 20 independent draws; precision floor ([0-9.e+]+), latent decay 0(?:\.1)?, chosen by leave-future-out "
                      r"at 60%, 70%, 80% of the window", said)  # fmt: skip
    assert floor is not None, said
    idata = az.from_netcdf(out / "posterior.nc")
    assert idata.attrs["method"] == "laplace" and float(floor.group(1)) in FLOORS
    assert idata.posterior_predictive["intensity"].shape == (1, 20, 1, 30, 1)


def test_draws_that_fail_are_redrawn_and_the_others_kept():
    # A stand-in for a failed solve: draws whose z0[0] is above the centre's by more than 0.5 "fail". They must be
    # replaced (the count returned), every returned draw must pass, and draws that passed at first stay as drawn.
    process = make_event_process(EVENTS, key=jax.random.key(2), width=3)
    prior = Normal(1.0)
    model = point_process_model(process, weight_prior=prior, config=FixedSteps())
    data = event_arrays(EVENTS)
    values = _initial_values(process, prior)
    programs = _programs(model, model, model, values, data)
    point = laplace_point(programs, values, data)
    centre = float(values["field.z0"][0])

    def status(samples):
        return (samples["field.z0"][:, 0] > centre + 0.5).astype(int)

    normals = np.asarray(jax.random.normal(jax.random.key(1), (200, point.centre.size)))  # read-only, as in the fit
    first, _ = solvable_draws(programs, point, 1.0, normals, lambda s: np.zeros(200, int), np.random.default_rng(0))
    samples, redrawn = solvable_draws(programs, point, 1.0, normals, status, np.random.default_rng(0))
    passed = status(first) == 0
    assert redrawn >= (~passed).sum() > 0 and np.all(status(samples) == 0)
    np.testing.assert_array_equal(samples["field.z0"][passed], first["field.z0"][passed])
    with pytest.raises(FitFailedError, match="still fail"):
        solvable_draws(programs, point, 1.0, normals, lambda s: np.ones(200, int), np.random.default_rng(0))


def test_redraw_failed_keeps_passing_draws_and_counts_replacements_per_member():
    # The rejection both Laplace fits use, on a batch of Gaussians (member, draw, P) as the mixture draws them:
    # draws whose first coordinate is above 1 "fail". Every returned draw passes, draws that passed at first are
    # kept as drawn, each member's count is at least its first-round failures, and a check that always fails is
    # reported as still failing (not returned as a result).
    normals = np.random.default_rng(3).standard_normal((2, 300, 4))

    def failed(samples):
        return samples[..., 0] > 1.0

    samples, replaced, still = redraw_failed(lambda z: 2.0 * z, failed, normals, np.random.default_rng(0))
    kept = ~failed(2.0 * normals)
    assert not still.any() and not failed(samples).any()
    np.testing.assert_array_equal(samples[kept], 2.0 * normals[kept])
    assert (~kept).any(axis=1).all() and replaced.shape == (2,) and np.all(replaced >= (~kept).sum(axis=1))
    _, _, still = redraw_failed(lambda z: z, lambda s: np.ones(s.shape[:-1], bool), normals, np.random.default_rng(0))
    assert still.all()
