"""The point-process posterior as a Laplace approximation at the MAP, its width chosen by leave-future-out
(``fit_events(method="laplace")``).

1. At the MAP (``fit_events``' MAP stage) the exact Hessian ``H`` of the potential (minus the log joint density
   in NumPyro's unconstrained space) over every latent, forward over reverse mode: ``FixedSteps`` is a scan,
   and an adaptive ``SolverConfig``'s adjoint is replaced by ``diffrax.DirectAdjoint`` for it (the default
   adjoint's custom VJP has no forward mode).
2. ``H``'s eigenvalues below a *floor* are raised to it, and the draws are ``Normal(MAP, H_floored^-1)``; a draw
   whose adaptive solve fails on the training sequences is redrawn (the posterior density is zero there). The
   draws are solved adaptively from then on (the fit's ``config`` is the reference solver): a fixed grid serves
   the MAP and its curvature, but far from the MAP it can be off by hundreds of nats (measured on the power-law
   Hawkes suite).
3. The floor is chosen by leave-future-out: at each origin (a fraction ``ORIGINS`` of every sequence's window)
   the MAP is refitted with the events after it held out (masked, the window ended there: the same shapes,
   so the compiled programs serve every origin), and every floor in ``FLOORS`` is scored by the held-out
   events' one-step predictive density (each event's term given the whole history before it, averaged over
   ``SCORED_DRAWS`` draws, solved by the adaptive reference solver: a fixed grid's likelihood can be gamed by
   draws far from the MAP). The floor with the best mean over the origins is used at the MAP of all events.

**Why a floor.** The MAP that Adam reaches is not an exact optimum: ``H`` has negative and near-zero eigenvalues
(directions the data leave loose), and a Gaussian with the prior's precision there sends draws where the
latent state drifts and the intensity blows up over hundreds of events. The floor is the precision given to
those directions, and the held-out future, which is what such draws forecast badly, sets it.

The draws are independent (no chains to mix): the fit's ``stats["laplace"]`` keeps the floor, the validation
table, ``H``'s negative eigenvalues and the redrawn count. Cost: one MAP fit per origin besides the fit's own
(run side by side on the CPU cores) and ``P`` Hessian columns per fit (``P`` latents; forward mode).
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.infer.util import get_potential_fn, get_transforms
from scipy.special import logsumexp

from ..errors import ConfigError, FitFailedError
from ..model import point_process_model
from ..model.point_process import SITE_EVENT_LOG_LIK, SITE_STATUS
from ..solving import FixedSteps, SolverConfig
from .event_draws import _training_status
from .event_map import fit_map, map_stage, start_points
from .laplace_members import FLOORS, REDRAW_ROUNDS, floored_draws, redraw_failed
from .programs import PROGRAMS, latents_model, shapes_key

ORIGINS = (0.6, 0.7, 0.8)  # leave-future-out origins, as fractions of each sequence's window
SCORED_DRAWS = 100  # draws per floor and origin in the validation
MIN_HELD_OUT_EVENTS = 5  # an origin must hold out at least this many events (all sequences) to score


def hessian_config(config):
    """The solver for the Hessian: ``FixedSteps`` as it is, a ``SolverConfig`` with ``DirectAdjoint``."""
    if isinstance(config, FixedSteps):
        return config
    if isinstance(config, SolverConfig):
        return dataclasses.replace(config, adjoint=diffrax.DirectAdjoint())
    raise ConfigError(f"`config` must be a SolverConfig or FixedSteps; got {type(config).__name__}.")


@dataclasses.dataclass(frozen=True)
class LaplacePoint:
    """A Gaussian at a MAP point, in NumPyro's unconstrained space: ``centre`` (P,), ``H``'s eigenvalues
    (P,) ascending and eigenvectors (P, P) as columns; ``unravel`` flat -> site -> unconstrained value."""

    centre: np.ndarray
    eigenvalues: np.ndarray
    vectors: np.ndarray
    unravel: object

    def draws(self, floor: float, normals: np.ndarray) -> np.ndarray:
        """(draw, P) unconstrained draws ``centre + V diag(max(w, floor))^-1/2 z`` of the normals (draw, P)."""
        return floored_draws(self.centre, self.eigenvalues, self.vectors, floor, normals)


class _Programs:
    """The compiled pieces for one model on data of given shapes (kept in ``PROGRAMS``): the potential's
    Hessian (through ``hessian_model``), site-value transforms, and the reference model's per-event terms."""

    def __init__(self, model, hessian_model, reference_model, values: dict, data: dict):
        transforms = get_transforms(handlers.seed(latents_model(model), 0), (), data, params={})
        self.names = list(values)
        self.to_unconstrained = lambda v: {k: transforms[k].inv(jnp.asarray(v[k])) for k in self.names}
        self.to_constrained = jax.jit(jax.vmap(lambda u: {k: transforms[k](u[k]) for k in self.names}))
        flat, self.unravel = ravel_pytree(self.to_unconstrained(values))
        potential_gen, _ = get_potential_fn(hessian_model, transforms, dynamic_args=True)

        def hessian(flat, data):
            return jax.jacfwd(jax.grad(lambda f: potential_gen(**data)(self.unravel(f))))(flat)

        self.hessian = jax.jit(hessian)

        def per_event(values, data):  # (sequence, event) one draw's terms, -inf where its solve failed
            tr = handlers.trace(handlers.substitute(handlers.seed(reference_model, 0), data=values)).get_trace(**data)
            ok = tr[SITE_STATUS]["value"] == 0
            return jnp.where(ok[:, None], tr[SITE_EVENT_LOG_LIK]["value"], -jnp.inf)

        self.per_event = jax.jit(jax.vmap(per_event, in_axes=(0, None)))


def _programs(model, hessian_model, reference_model, values, data) -> _Programs:
    settings = (shapes_key(data), shapes_key(values), id(hessian_model), id(reference_model))
    return PROGRAMS.get(model, "event_laplace", settings, lambda: _Programs(model, hessian_model, reference_model,
                                                                            values, data))  # fmt: skip


def laplace_point(programs: _Programs, values: dict, data: dict) -> LaplacePoint:
    """The Gaussian at the MAP ``values`` (site -> constrained value) of the model on ``data``."""
    centre, _ = ravel_pytree(programs.to_unconstrained(values))
    h = np.asarray(programs.hessian(centre, data), np.float64)
    if not np.all(np.isfinite(h)):
        raise FitFailedError("fit_events (laplace): the Hessian of the log density at the MAP is not finite; "
                             "try more `map_steps`, a smaller `learning_rate`, or method='svi'.")  # fmt: skip
    eigenvalues, vectors = np.linalg.eigh((h + h.T) / 2)
    return LaplacePoint(np.asarray(centre, np.float64), eigenvalues, vectors, programs.unravel)


def held_out_after(data: dict, fraction: float) -> tuple[dict, np.ndarray]:
    """``data`` (the model's keyword arrays) with each sequence's window ended at ``t0 + fraction (t_end - t0)``
    and the events after it masked out (the same shapes), and the (sequence, event) mask of those events."""
    cut = data["t0"] + fraction * (data["t_end"] - data["t0"])
    before = data["times"] < cut[:, None]
    held = np.asarray(data["mask"] & ~before)
    return {**data, "mask": data["mask"] & before, "t_end": cut}, held


def validation_splits(data: dict, origins=ORIGINS) -> list[tuple[float, dict, np.ndarray]]:
    """``(fraction, training data, held-out mask)`` per origin (:func:`held_out_after`) that keeps events before it and
    holds out at least ``MIN_HELD_OUT_EVENTS``; ConfigError when none does (called before any fit)."""
    splits = [(f, *held_out_after(data, f)) for f in origins]
    splits = [(f, d, held) for f, d, held in splits if held.sum() >= MIN_HELD_OUT_EVENTS and np.any(d["mask"])]
    if not splits:
        raise ConfigError(f"fit_events (laplace): no origin in {tuple(origins)} holds out at least {MIN_HELD_OUT_EVENTS} "
                          "events with events before it; the floor cannot be chosen (more events are needed).")  # fmt: skip
    return splits


def validation_scores(programs: _Programs, point: LaplacePoint, data: dict, held: np.ndarray, floors, key) -> list[float]:
    """Mean one-step log predictive density of the ``held`` events (sequence, event) under the draws at each floor."""
    normals = np.asarray(jax.random.normal(key, (SCORED_DRAWS, point.centre.size)))
    scores = []
    for floor in floors:
        draws = _values(programs, point, point.draws(floor, normals))
        terms = np.asarray(programs.per_event(draws, data), np.float64)[:, held]  # (draw, held event)
        terms = np.where(np.isnan(terms), -np.inf, terms)
        scores.append(float(np.mean(logsumexp(terms, axis=0) - np.log(SCORED_DRAWS))))
    return scores


def _values(programs: _Programs, point: LaplacePoint, flat_draws: np.ndarray) -> dict:
    """site -> (draw, ...) constrained values of the unconstrained flat draws (draw, P)."""
    flat = jnp.asarray(flat_draws, jnp.result_type(float))
    return programs.to_constrained(jax.vmap(point.unravel)(flat))


def solvable_draws(programs: _Programs, point: LaplacePoint, floor: float, normals: np.ndarray, training_status, rng):
    """The Gaussian at ``floor`` restricted to weights whose solve succeeds on the training sequences, by rejection
    (:func:`~bayesode.infer.laplace_members.redraw_failed`). Returns ``(samples site -> (draw, ...), redrawn count)``."""
    samples, replaced, bad = redraw_failed(
        lambda z: {k: np.asarray(v) for k, v in _values(programs, point, point.draws(floor, z)).items()},
        lambda s: np.asarray(training_status(s)) != 0, normals, rng)  # fmt: skip
    if bad.any():
        raise FitFailedError(f"fit_events (laplace): {int(bad.sum())} of {normals.shape[0]} draws at floor {floor:g} still "
                             f"fail to solve on the training sequences after {REDRAW_ROUNDS} rounds of redrawing; the "
                             "Gaussian reaches far into weights where the solve fails.")  # fmt: skip
    return samples, int(replaced.sum())


def event_laplace(model, hessian_model, reference_model, values: dict, data: dict, key, *, map_starts: list[dict],
                  map_key, map_steps: int, learning_rate: float, num_draws: int, training_status,
                  floors=FLOORS, origins=ORIGINS) -> tuple[dict, dict]:  # fmt: skip
    """The Laplace posterior at the MAP ``values`` of ``model`` on ``data``, its floor by leave-future-out.

    ``hessian_model``: the model with :func:`hessian_config`'s solver; ``reference_model``: with the adaptive
    solver that scores the held-out events; ``map_starts``, ``map_key``, ``map_steps``, ``learning_rate``: the
    MAP stage's, rerun at each origin; ``training_status(samples) -> (draw,)`` the solve status of draws
    (site -> (draw, ...)) on the training sequences.

    Returns ``(samples site -> (draw, ...), info)``; ``info``: ``floor``, ``floors``, ``origins`` (the fractions
    scored), ``scores`` (origin, floor), ``negative_eigenvalues``, ``min_eigenvalue``, ``redrawn``.
    """
    programs = _programs(model, hessian_model, reference_model, values, data)
    k_score, k_draw, k_redraw = jax.random.split(key, 3)
    splits = validation_splits(data, origins)

    def score(split):
        fraction, d, held = split
        found, _, _ = fit_map(model, map_starts, d, map_key, map_steps, learning_rate, workers=1,
                              caller="fit_events (laplace, leave-future-out)")  # fmt: skip
        point = laplace_point(programs, found, d)
        return validation_scores(programs, point, data, held, floors, jax.random.fold_in(k_score, int(fraction * 1000)))

    with ThreadPoolExecutor(max(1, min(len(splits), os.cpu_count() or 1))) as pool:
        table = np.array(list(pool.map(score, splits)))  # (origin, floor)
    mean = table.mean(axis=0)
    if not np.isfinite(mean).any():
        raise FitFailedError("fit_events (laplace): at every floor the held-out events' predictive density is zero "
                             "(the draws' solves failed); try more `map_steps` or method='svi'.")  # fmt: skip
    floor = float(floors[int(np.argmax(mean))])
    point = laplace_point(programs, values, data)
    normals = np.asarray(jax.random.normal(k_draw, (num_draws, point.centre.size)))
    rng = np.random.default_rng(np.asarray(jax.random.key_data(k_redraw)).ravel())
    samples, redrawn = solvable_draws(programs, point, floor, normals, training_status, rng)
    info = {"floor": floor, "floors": np.asarray(floors, float), "origins": np.array([s[0] for s in splits]),
            "scores": table, "negative_eigenvalues": int(np.sum(point.eigenvalues < 0)),
            "min_eigenvalue": float(point.eigenvalues[0]), "redrawn": redrawn}  # fmt: skip
    return samples, info


def laplace_fit(processes: dict, weight_prior, config, reference, events, data: dict, keys, settings: dict, checkpoint,
                progress: bool, *, initial_values) -> tuple:  # fmt: skip
    """``fit_events(method="laplace")``: for each process in ``processes`` (decay -> process: the default process at
    each of ``LAPLACE_DECAYS``, or the user's), the MAP stage and :func:`event_laplace`, each saved as a checkpoint
    stage; the process whose leave-future-out score (the mean over the origins at its chosen floor) is best is kept.
    ``reference``: the adaptive solver that scores the held-out events; ``keys``: the MAP stage's and the draws';
    ``initial_values(process, weight_prior)``: the template's weights (site -> value).

    Returns ``(process, samples site -> (chain, draw, ...), stats, notes)``: ``stats`` holds the kept MAP stage's
    ``map``, ``map_loss``, ``map_start_loss``; ``laplace`` (the floor, its validation table, the Hessian's negative
    eigenvalues, the redrawn count; with several processes ``decay`` and ``decay_scores`` (decay, score) rows);
    ``solve_status`` and ``fixed_steps_ll_error``; ``notes`` what the result must say."""
    map_key, key = keys
    num_chains, num_samples = settings["num_chains"], settings["num_samples"]
    k_start, k_fit = jax.random.split(map_key)  # as map_stage splits it
    tried = []
    for decay, process in processes.items():
        suffix = "" if len(processes) == 1 else f"-decay{decay:g}"
        model = point_process_model(process, weight_prior=weight_prior, config=config)
        template = initial_values(process, weight_prior)
        values, map_loss, start_loss = map_stage(
            model, template, data, map_key, steps=settings["map_steps"], starts=settings["map_starts"],
            learning_rate=settings["learning_rate"], checkpoint=checkpoint, progress=progress, caller="fit_events",
            stage="map" + suffix,
        )  # fmt: skip

        def run(process=process, model=model, template=template, values=values):
            samples, info = event_laplace(
                model, point_process_model(process, weight_prior=weight_prior, config=hessian_config(config)),
                point_process_model(process, weight_prior=weight_prior, config=reference), values, data, key,
                map_starts=start_points(template, settings["map_starts"], k_start), map_key=k_fit,
                map_steps=settings["map_steps"], learning_rate=settings["learning_rate"],
                num_draws=num_chains * num_samples,
                training_status=lambda s: _training_status(process, weight_prior, reference, events, s),
            )  # fmt: skip
            return {"samples": samples, "info": info}

        what = "Laplace at the MAP" + ("" if len(processes) == 1 else f" (decay {decay:g})")
        found = checkpoint.stage("laplace" + suffix, run, what=what + ", its floor by leave-future-out ({how})",
                                 progress=progress)  # fmt: skip
        info = {k: np.asarray(v) if np.ndim(v) else np.asarray(v).item() for k, v in found["info"].items()}
        score = float(np.max(np.mean(info["scores"], axis=0)))
        tried.append((decay, score, process, values, map_loss, start_loss, found["samples"], info))
    decay, _, process, values, map_loss, start_loss, flat, info = max(tried, key=lambda t: t[1])
    if len(tried) > 1:
        info["decay"], info["decay_scores"] = float(decay), np.array([[t[0], t[1]] for t in tried])
    flat = {k: np.asarray(v) for k, v in flat.items()}
    notes = []
    if info["redrawn"]:
        notes.append(f"fit_events (laplace): {info['redrawn']} draws failed to solve on the training sequences and "
                     "were redrawn (the posterior has no mass there).")  # fmt: skip
    if info["floor"] in (FLOORS[0], FLOORS[-1]):
        side = "wide" if info["floor"] == FLOORS[0] else "narrow"
        notes.append(f"fit_events (laplace): the leave-future-out validation chose the floor {info['floor']:g}, at the "
                     f"end of the range tried ({FLOORS[0]:g} to {FLOORS[-1]:g}); the bands may be too {side}.")  # fmt: skip
    stats = {"map": {k: np.asarray(v) for k, v in values.items()}, "map_loss": map_loss, "map_start_loss": start_loss,
             "laplace": info, "solve_status": np.zeros((num_chains, num_samples), np.int32),
             "fixed_steps_ll_error": float("nan")}  # fmt: skip
    samples = {k: v.reshape((num_chains, num_samples) + v.shape[1:]) for k, v in flat.items()}
    return process, samples, stats, notes
