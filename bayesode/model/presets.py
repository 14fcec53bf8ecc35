"""Ready-made models: the everyday choices, each rebuildable from a JSON recipe.

- :func:`lotka_volterra`: the Stan case study "Predator-Prey Population Dynamics"
  (Carpenter 2018) exactly: ``alpha, gamma ~ N(1, 0.5)``, ``beta, delta ~ N(0.05, 0.05)``
  (all truncated at 0), ``y0 ~ LogNormal(log 10, 1)``, ``sigma ~ LogNormal(-1, 1)`` per
  species, log-normal likelihood, the first observation a noisy reading of ``y0``.
- :func:`neural`: a Bayesian neural ODE (multiplicative MLP field for positive data).
- :func:`hybrid`: Lotka-Volterra plus a small neural correction (universal ODE).

A recipe (``model.spec.recipe``) is stored in saved fits so ``Posterior.load``
and ``bayesode predict`` can rebuild the model without user code.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import numpyro.distributions as dist

from ..datasets.data import Data
from ..errors import ConfigError
from ..fields.basic import HybridField, MLPField, lotka_volterra_field
from ..solving.diffeq import ForwardSensitivity, SolverConfig
from ..solving.precision import check_precision
from .assembly import make_model
from .likelihoods import LogNormalNoise, NormalNoise, StudentTNoise
from .priors import HierarchicalNormal, Normal

__all__ = ["DEFAULT_PRECISION", "MODEL_KINDS", "for_data", "freeze_hidden", "from_recipe", "hybrid", "lotka_volterra", "lotka_volterra_priors", "neural"]

MODEL_KINDS = ("neural", "lotka-volterra", "hybrid")
# Each kind's default precision (``precision=None``), chosen by measurement: float32 against
# float64 on each kind (benchmarks/precision.py; the table and the reasons in docs/decisions.md,
# 2026-12-03). make_model's own default (any other model) is "float32".
DEFAULT_PRECISION = {"lotka-volterra": "float32", "neural": "float32", "hybrid": "float32"}
_LIKELIHOODS = {"lognormal": LogNormalNoise, "normal": NormalNoise, "student-t": StudentTNoise}


def lotka_volterra_priors() -> dict:
    """The Stan case study's priors on the four rates (positive-truncated normals)."""
    return {
        "alpha": dist.TruncatedNormal(1.0, 0.5, low=0.0),
        "beta": dist.TruncatedNormal(0.05, 0.05, low=0.0),
        "gamma": dist.TruncatedNormal(1.0, 0.5, low=0.0),
        "delta": dist.TruncatedNormal(0.05, 0.05, low=0.0),
    }


def _precision(kind: str, precision: str | None) -> str:
    """``precision``, or ``kind``'s default when None."""
    return check_precision(precision, allow_none=True) or DEFAULT_PRECISION[kind]


def _solver(adjoint: str, rtol: float, atol: float, max_steps: int) -> SolverConfig:
    adjoints = {
        "forward": diffrax.ForwardMode,
        "checkpoint": diffrax.RecursiveCheckpointAdjoint,
        "backsolve": diffrax.BacksolveAdjoint,
        "direct": diffrax.DirectAdjoint,
        "sensitivity": ForwardSensitivity,
    }
    if adjoint not in adjoints:
        raise ConfigError(f"`adjoint`={adjoint!r} is unknown; choose one of {list(adjoints)}.")
    return SolverConfig(rtol=rtol, atol=atol, max_steps=max_steps, adjoint=adjoints[adjoint]())


def lotka_volterra(*, adjoint: str = "sensitivity", rtol: float = 1e-6, atol: float = 1e-6, max_steps: int = 2048,
                   precision: str | None = None):
    """The Stan predator-prey model (states: prey, predator).

    ``adjoint="sensitivity"`` (:class:`bayesode.ForwardSensitivity`): the
    derivatives with respect to the 4 rates and the initial states are integrated
    with the state, and the log density is differentiated in reverse mode over
    them. The cheapest here (one chain, 2-core CPU, lynx-hare near the posterior:
    239 us per gradient vs 345 us with ``"forward"``, diffrax's ``ForwardMode``,
    and about 2 ms with ``"checkpoint"``), and its cost does not grow with the
    number of series. ``"forward"``, ``"checkpoint"``, ``"backsolve"`` and
    ``"direct"`` choose diffrax's adjoints.

    ``precision``: ``"float32"`` or ``"float64"``; None (default) is this kind's
    (``DEFAULT_PRECISION``), as for every preset.
    """
    precision = _precision("lotka-volterra", precision)
    recipe = {"kind": "lotka-volterra", "adjoint": adjoint, "rtol": rtol, "atol": atol, "max_steps": max_steps,
              "precision": precision}
    return make_model(
        lotka_volterra_field(),
        param_priors=lotka_volterra_priors(),
        y0_prior=dist.LogNormal(np.log(10.0), 1.0),
        likelihood=LogNormalNoise(),
        solver=_solver(adjoint, rtol, atol, max_steps),
        recipe=recipe,
        precision=precision,
    )


def _scales(data: Data | None, y_scale, t_scale):
    if data is not None:
        if y_scale is None:
            y_scale = [float(np.nanmedian(np.abs(data.ys[..., k]))) or 1.0 for k in range(data.num_observed)]
        if t_scale is None:
            span = float(np.max(data.ts) - np.min(data.t0))
            t_scale = span / 10 if span > 0 else 1.0
    return (1.0 if y_scale is None else y_scale), (1.0 if t_scale is None else t_scale)


def neural(
    state_dim: int | None = None,
    *,
    data: Data | None = None,
    width: int = 8,
    depth: int = 1,
    activation: str = "tanh",
    form: str = "multiplicative",
    weight_scale: float = 1.0,
    hierarchical: bool = False,
    likelihood: str = "lognormal",
    y_scale=None,
    t_scale=None,
    adjoint: str = "checkpoint",
    rtol: float = 1e-4,
    atol: float = 1e-4,
    max_steps: int = 2048,
    seed: int = 0,
    fixed_layers: list | None = None,
    precision: str | None = None,
):
    """A Bayesian neural ODE ``dy/dt = y * MLP(log(y / y_scale)) / t_scale``.

    With ``data``, ``y_scale`` defaults to each column's median and ``t_scale``
    to a tenth of the time span, so the network sees O(1) inputs and a
    ``Normal(weight_scale)`` weight prior means "rates of order 1/t_scale".

    Tolerances default to 1e-4 (the mechanistic preset uses 1e-6): a neural
    field is fitted to noisy data (population counts carry >= 1% noise), the
    solve's error is then 100x below the noise, and each gradient needs about
    2.5x fewer steps than at 1e-6 (Tsit5's steps grow as tol^(-1/5)), which is
    most of NUTS's cost. Tighten them for precise data.

    ``fixed_layers``: weights for the leading layers, ``[{"weight": (out, in),
    "bias": (out,)}, ...]``, held fixed (no prior) so only the later layers,
    ``y0`` and the noise are random. Usually set by :func:`freeze_hidden`.

    ``precision``: ``"float32"`` or ``"float64"``; None (default) is this kind's.
    """
    precision = _precision("neural", precision)
    if state_dim is None:
        if data is None:
            raise ConfigError("give `state_dim` or `data` to size the neural field.")
        state_dim = data.num_observed
    y_scale, t_scale = _scales(data, y_scale, t_scale)
    if likelihood not in _LIKELIHOODS:
        raise ConfigError(f"`likelihood`={likelihood!r} is unknown; choose one of {list(_LIKELIHOODS)}.")
    field = MLPField(
        state_dim,
        width,
        depth,
        activation,
        key=jr.key(seed),
        form=form,
        y_scale=y_scale,
        t_scale=float(t_scale),
        fixed_layers=len(fixed_layers or ()),
    )
    field = _set_layers(field, fixed_layers or [])
    recipe = {
        "kind": "neural",
        "state_dim": state_dim,
        "width": width,
        "depth": depth,
        "activation": activation,
        "form": form,
        "weight_scale": weight_scale,
        "hierarchical": hierarchical,
        "likelihood": likelihood,
        "y_scale": list(field.y_scale),
        "t_scale": field.t_scale,
        "adjoint": adjoint,
        "rtol": rtol,
        "atol": atol,
        "max_steps": max_steps,
        "seed": seed,
        "precision": precision,
    }
    if fixed_layers:
        recipe["fixed_layers"] = [
            {"weight": np.asarray(layer.weight).tolist(), "bias": np.asarray(layer.bias).tolist()}
            for layer in field.layers[: len(fixed_layers)]
        ]
    prior = HierarchicalNormal(weight_scale) if hierarchical else Normal(weight_scale)
    return make_model(
        field,
        weight_prior=prior,
        likelihood=_LIKELIHOODS[likelihood](),
        solver=_solver(adjoint, rtol, atol, max_steps),
        recipe=recipe,
        precision=precision,
    )


def _set_layers(field: MLPField, values: list) -> MLPField:
    """``field`` with its leading layers' weights and biases replaced by ``values``."""
    if not isinstance(values, (list, tuple)):
        raise ConfigError(f"`fixed_layers` must be a list of {{'weight', 'bias'}} dicts; got {type(values).__name__}.")
    for i, v in enumerate(values):
        layer = field.layers[i]
        if not isinstance(v, dict) or set(v) != {"weight", "bias"}:
            raise ConfigError(f"`fixed_layers[{i}]` must be a dict with keys 'weight' and 'bias'; got {v!r:.80}.")
        w = np.asarray(v["weight"], dtype=layer.weight.dtype)
        b = np.asarray(v["bias"], dtype=layer.bias.dtype)
        if w.shape != layer.weight.shape or b.shape != layer.bias.shape:
            raise ConfigError(
                f"`fixed_layers[{i}]` has weight {w.shape} and bias {b.shape}; layer {i} of this network has "
                f"weight {layer.weight.shape} and bias {layer.bias.shape}."
            )
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
            raise ConfigError(f"`fixed_layers[{i}]` contains non-finite values.")
        field = eqx.tree_at(lambda f: (f.layers[i].weight, f.layers[i].bias), field, (jnp.asarray(w), jnp.asarray(b)))
    return field


def freeze_hidden(model, fit, *, statistic: str = "median"):
    """The neural model ``model`` with its hidden layers fixed at a point estimate from ``fit``.

    A neural-linear model (Snoek et al. 2015; "Bayesian last layer"): the
    hidden layers become fixed features taken from ``fit`` (usually a MAP or
    SVI fit of ``model``), and only the output layer, ``y0`` and the noise
    keep their priors. NUTS then mixes on problems where sampling every weight
    does not: on lynx-hare with width 8, four chains over all 42 weights
    disagree (R-hat of the trajectories 1.9 after 300 + 300 draws), while the
    neural-linear posterior reaches R-hat 1.01 in the same time. The price:
    uncertainty about the features themselves is left out, so bands can be
    narrower than a full posterior's.

    Parameters
    ----------
    model : a model from :func:`neural` (its recipe is rebuilt).
    fit : Posterior whose samples hold the hidden layers' sites
        (``field.layers[i].weight``, ``field.layers[i].bias``).
    statistic : ``"median"`` or ``"mean"`` over all draws.
    """
    recipe = getattr(getattr(model, "spec", None), "recipe", None) or {}
    if recipe.get("kind") != "neural":
        raise ConfigError("`model` must come from bayesode.models.neural (freeze_hidden rebuilds it from its recipe).")
    if statistic not in ("median", "mean"):
        raise ConfigError(f"`statistic` must be 'median' or 'mean'; got {statistic!r}.")
    reduce = np.median if statistic == "median" else np.mean
    values = []
    for i in range(recipe["depth"]):
        names = [f"field.layers[{i}].weight", f"field.layers[{i}].bias"]
        missing = [n for n in names if n not in fit.samples]
        if missing:
            raise ConfigError(f"`fit` has no samples of {missing}; fit the same neural model with every weight random.")
        w, b = (np.asarray(fit.samples[n]) for n in names)
        values.append({"weight": reduce(w.reshape(-1, *w.shape[2:]), axis=0), "bias": reduce(b.reshape(-1, *b.shape[2:]), axis=0)})
    kw = {k: v for k, v in recipe.items() if k not in ("kind", "fixed_layers")}
    return neural(**kw, fixed_layers=values)


def hybrid(
    *,
    data: Data | None = None,
    width: int = 8,
    depth: int = 1,
    correction_scale: float = 0.1,
    y_scale=None,
    t_scale=None,
    adjoint: str = "checkpoint",
    rtol: float = 1e-6,
    atol: float = 1e-6,
    max_steps: int = 2048,
    seed: int = 0,
    precision: str | None = None,
):
    """Lotka-Volterra plus a neural correction ``y * MLP(log(y / y_scale)) / t_scale``.

    The correction's weights get ``Normal(correction_scale)`` (default 0.1) so
    the law explains what it can. Priors on the law, ``y0`` and noise are the
    Stan case study's. ``precision``: ``"float32"`` or ``"float64"``; None
    (default) is this kind's.
    """
    precision = _precision("hybrid", precision)
    y_scale, t_scale = _scales(data, y_scale, t_scale)
    correction = MLPField(2, width, depth, "tanh", key=jr.key(seed), form="multiplicative", y_scale=y_scale,
                          t_scale=float(t_scale))
    recipe = {
        "kind": "hybrid",
        "width": width,
        "depth": depth,
        "correction_scale": correction_scale,
        "y_scale": list(correction.y_scale),
        "t_scale": correction.t_scale,
        "adjoint": adjoint,
        "rtol": rtol,
        "atol": atol,
        "max_steps": max_steps,
        "seed": seed,
        "precision": precision,
    }
    return make_model(
        HybridField(lotka_volterra_field(), correction),
        weight_prior=Normal(correction_scale),
        param_priors=lotka_volterra_priors(),
        y0_prior=dist.LogNormal(np.log(10.0), 1.0),
        likelihood=LogNormalNoise(),
        solver=_solver(adjoint, rtol, atol, max_steps),
        recipe=recipe,
        precision=precision,
    )


def from_recipe(recipe: dict):
    """Rebuild a model from ``model.spec.recipe`` (as stored in a saved fit)."""
    kw = {k: v for k, v in recipe.items() if k != "kind"}
    kind = recipe.get("kind")
    if kind == "lotka-volterra":
        return lotka_volterra(**kw)
    if kind == "neural":
        return neural(**kw)
    if kind == "hybrid":
        return hybrid(**kw)
    raise ConfigError(f"recipe kind {kind!r} is unknown; expected one of {MODEL_KINDS}.")


def for_data(kind: str, data: Data, **kwargs):
    """The model ``kind`` (one of ``neural``, ``lotka-volterra``, ``hybrid``) scaled to ``data``."""
    if kind not in MODEL_KINDS:
        raise ConfigError(f"`--model`/kind {kind!r} is unknown; choose one of {list(MODEL_KINDS)}.")
    if kind in ("lotka-volterra", "hybrid") and data.num_observed != 2:
        raise ConfigError(
            f"the {kind} model has 2 states (prey, predator); the data have {data.num_observed} columns "
            f"{list(data.state_names)}. Use --model neural for other data."
        )
    if kind == "lotka-volterra":
        return lotka_volterra(**kwargs)
    if kind == "hybrid":
        return hybrid(data=data, **kwargs)
    return neural(data=data, **kwargs)
