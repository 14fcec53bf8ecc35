"""The members of a Laplace mixture: MAP fits, the exact Hessian at each, Gaussian draws around them.

What :mod:`bayesode.infer.laplace_mixture` builds its posterior from. The Hessian of the potential
(minus the log joint density in NumPyro's unconstrained space, every latent) is exact: forward over
forward mode through a twin of the model whose solves use ``diffrax.ForwardMode`` (the default
adjoint's custom VJP has no forward mode; central differences of the gradient are far off where
the curvature is steep: docs/decisions.md, 2026-12-06 (late)).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.distributions.transforms import biject_to
from numpyro.infer.util import constrain_fn, potential_energy, unconstrain_fn

from ..caching import ProgramCache
from ..errors import ConfigError
from .map_fits import _why_failed, map_points
from .programs import latents_model

__all__ = ["FLOORS", "MAX_LATENTS", "REDRAW_ROUNDS", "forward_twin"]

# The exact Hessian costs P**2 forward-mode solves per member, batched: past this many latents the time and
# memory grow out of proportion (1,000 latents: a million solves a member), so such a model is refused.
MAX_LATENTS = 1000

# Shared with the point-process Laplace fit (event_laplace.py): the precision floors tried (half decades), and the
# rejection rounds for draws where the model fails (each round replaces the failed ones).
FLOORS = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1e3, 3e3, 1e4)
REDRAW_ROUNDS = 20

# Per model: its ForwardMode twin (so the compiled Hessian is reused), and the compiled Hessian and constrain programs.
TWINS = ProgramCache()
LAPLACE_PROGRAMS = ProgramCache()


def forward_twin(model):
    """``model`` with its solves in ``diffrax.ForwardMode`` (what the exact Hessian differentiates).

    A model that already solves in forward mode is its own twin; a preset model (``bayesode.models``)
    is rebuilt from its recipe with ``adjoint="forward"``. Other models raise: pass
    ``forward_model=`` (the same model built with ``SolverConfig(adjoint=diffrax.ForwardMode())``).
    """
    from ..model.presets import MODEL_KINDS, from_recipe

    if model.spec.solver.forward_mode:
        return model
    recipe = model.spec.recipe or {}
    if recipe.get("kind") not in MODEL_KINDS:
        raise ConfigError(
            "the Laplace mixture needs the model's Hessian, by forward-mode differentiation through its solves, "
            "and this model's solver uses a reverse adjoint and has no recipe to rebuild it from; pass "
            "`forward_model=`: the same model built with SolverConfig(adjoint=diffrax.ForwardMode())."
        )
    return TWINS.get(model, "forward_twin", (), lambda: from_recipe({**recipe, "adjoint": "forward"}))


def _num_latents(model, md) -> int:
    """How many unconstrained values the model's latent sites hold (a trace of its latent sites only)."""
    tr = handlers.trace(handlers.seed(latents_model(model), 0)).get_trace(md)
    return int(sum(np.size(biject_to(v["fn"].support).inv(v["value"])) for v in tr.values()
                   if v["type"] == "sample" and not v["is_observed"]))  # fmt: skip


def _hessians(twin, shapes, unravel):
    """Compiled ``(us (member, P), md) -> (member, P, P)``: the potential's Hessian at each ``u``.

    Cached per twin and data shapes; ``unravel`` (the latents' flat order) is fixed by both, so the
    first call's is every later call's."""

    def build():
        def one(u, md):
            return jax.jacfwd(jax.jacfwd(lambda v: potential_energy(twin, (md,), {}, unravel(v))))(u)

        return jax.jit(jax.vmap(one, in_axes=(0, None)))

    return LAPLACE_PROGRAMS.get(twin, "hessian", shapes, build)


@dataclasses.dataclass
class _Members:
    """The kept members: ``centres`` (member, P) float64 unconstrained points in ``unravel``'s order,
    their Hessians' ``eigenvalues`` (member, P) and ``vectors`` (member, P, P); ``records`` of
    every start, kept or dropped (with the reason)."""

    centres: np.ndarray
    eigenvalues: np.ndarray
    vectors: np.ndarray
    unravel: object
    records: list
    dtype: object = None  # the model's float type, the draws' when constrained

    @property
    def num_kept(self) -> int:
        return int(self.centres.shape[0])


def _fit_members(model, twin, data, key, num_members: int, map_steps: int) -> _Members:
    md = data.model_data()
    params, pe, losses = map_points(model, data, key=key, num_points=num_members, num_steps=map_steps)
    records = [{"start": m, "final_potential": float(pe[m]), "kept": False, "failed_steps": int(np.isnan(losses[m]).sum()),
                "reason": _why_failed(float(pe[m]))} for m in range(num_members)]  # fmt: skip
    fitted = [m for m in range(num_members) if records[m]["reason"] is None]
    empty = _Members(np.zeros((0, 0)), np.zeros((0, 0)), np.zeros((0, 0, 0)), None, records)
    if not fitted:
        return empty
    lm = latents_model(model)
    zs = [unconstrain_fn(lm, (md,), {}, {k: jnp.asarray(v[m]) for k, v in params.items()}) for m in fitted]
    unravel = ravel_pytree(zs[0])[1]
    flat = jnp.stack([ravel_pytree(z)[0] for z in zs])
    hess = np.asarray(_hessians(twin, md.shapes(), unravel)(flat, md), np.float64)
    centres, values, vectors = [], [], []
    for i, m in enumerate(fitted):
        if not np.all(np.isfinite(hess[i])):
            records[m]["reason"] = "the Hessian at the fitted point is not finite (a solve fails nearby)"
            continue
        w, v = np.linalg.eigh((hess[i] + hess[i].T) / 2)
        records[m].update(kept=True, member=len(centres), reason=None, negative_eigenvalues=int(np.sum(w < 0)),
                          min_eigenvalue=float(w[0]), max_eigenvalue=float(w[-1]))  # fmt: skip
        centres.append(np.asarray(flat[i], np.float64))
        values.append(w)
        vectors.append(v)
    if not centres:
        return empty
    return _Members(np.stack(centres), np.stack(values), np.stack(vectors), unravel, records, flat.dtype)


def floored_draws(centre, eigenvalues, vectors, floor: float, normals: np.ndarray) -> np.ndarray:
    """Draws ``centre + V diag(max(w, floor))^-1/2 z`` of a Gaussian given by its precision's eigenvalues ``w``
    (..., P) and eigenvectors ``V`` (..., P, P) as columns, from ``normals`` (..., draw, P); ``...`` a batch of
    Gaussians (e.g. the mixture's members) or none. Returns (..., draw, P)."""
    scale = 1.0 / np.sqrt(np.maximum(eigenvalues, floor))  # (..., P)
    return centre[..., None, :] + np.einsum("...dp,...p,...qp->...dq", normals, scale, vectors)


def redraw_failed(make_samples, failed, normals: np.ndarray, rng) -> tuple[object, np.ndarray, np.ndarray]:
    """A Gaussian restricted to where the model solves (the posterior density is zero elsewhere), by rejection.

    ``make_samples(normals) -> samples`` turns standard normals (..., P) into draws; ``failed(samples)`` says which
    draws fail, shaped ``normals.shape[:-1]``. Each round replaces the failed draws' normals with fresh ones, up to
    ``REDRAW_ROUNDS`` rounds. Returns ``(samples, replaced, still_failed)``: the last round's samples, how many times
    each batch entry (normals' leading axis) had a draw replaced, and which draws still fail (all False on success;
    the caller says what failing means for it)."""
    normals = np.array(normals, np.float64)  # a writable copy
    replaced = np.zeros(normals.shape[0], dtype=int)
    for _ in range(REDRAW_ROUNDS):
        samples = make_samples(normals)
        bad = np.asarray(failed(samples), bool)
        if not bad.any():
            break
        replaced += bad.reshape(normals.shape[0], -1).sum(axis=1)
        normals[bad] = rng.standard_normal((int(bad.sum()), normals.shape[-1]))
    return samples, replaced, bad


def _draws(members: _Members, floor: float, normals: np.ndarray) -> np.ndarray:
    """``(member, draw, P)`` unconstrained draws of each member's floored Gaussian."""
    return floored_draws(members.centres, members.eigenvalues, members.vectors, floor, normals)


def _constrained(model, md, members: _Members, us: np.ndarray) -> dict:
    """site -> (..., site shape) constrained values of the flat unconstrained draws ``us`` (..., P)."""
    lead = us.shape[:-1]
    flat = jnp.asarray(us.reshape(-1, us.shape[-1]), members.dtype)
    unravel = members.unravel

    def build():  # the latent sites only: no solve is traced
        return jax.jit(jax.vmap(lambda u, md: constrain_fn(latents_model(model), (md,), {}, unravel(u)), in_axes=(0, None)))

    out = LAPLACE_PROGRAMS.get(model, "constrain", md.shapes(), build)(flat, md)
    return {k: np.asarray(v).reshape(lead + v.shape[1:]) for k, v in out.items()}
