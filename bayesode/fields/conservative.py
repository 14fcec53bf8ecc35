"""Structured fields that conserve or bound growth: antisymmetric and Hamiltonian.

Antisymmetric: Haber & Ruthotto 2018, Chang et al. 2019; Hamiltonian: Greydanus et al. 2019. How every structured
field treats its weights and scales: :mod:`._structured_common`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from ..errors import ConfigError
from ._structured_common import (
    _MONOTONE_1LIP,
    _SMOOTH,
    _check_activation,
    _check_int,
    _check_nonneg,
    _mlp,
    _run_mlp,
    _scale_tuple,
    _scales,
)
from .basic import _ACTIVATIONS


class AntisymmetricField(eqx.Module):
    r"""Antisymmetric field: Jacobian eigenvalues in a closed left half-plane strip.

    With ``M = W - Wᵀ - γI`` (``W`` free, ``γ = gamma >= 0`` static) and
    ``x = y / y_scale``:

    - ``width=None`` (Chang et al. 2019, AntisymmetricRNN in continuous time):
      ``F(x) = act(M x + b)``, Jacobian ``∂F/∂x = D M`` with ``D = diag(act'(M x + b))``;
    - ``width=K`` (a lifted form): ``F(x) = M Kᵀ act(K x + b)`` with ``K`` of shape
      (width, state), Jacobian ``M P`` with ``P = Kᵀ diag(act'(K x + b)) K``.

    and ``dy/dt = y_scale * F(x) / t_scale``.

    **Guarantee.** Call ``P`` the positive semi-definite matrix above (``D``
    itself for ``width=None``). For ``act`` with ``act' ∈ [0, 1]`` every
    eigenvalue ``λ`` of the Jacobian ``∂f/∂y`` at every ``y``, for any ``W, b, K``, satisfies

    .. math:: -\gamma\,\lambda_{\max}(P) \le t_{scale}\,\mathrm{Re}\,\lambda \le -\gamma\,\lambda_{\min}(P) \le 0.

    For ``width=None``: ``-γ max_i act'_i ≤ t_scale Re λ ≤ -γ min_i act'_i``,
    so ``Re λ ∈ [-γ/t_scale, 0]``; with ``γ = 0`` the spectrum is purely
    imaginary (no local growth or decay).

    *Proof.* ``∂f/∂y = S (∂F/∂x) S⁻¹ / t_scale`` (``S = diag(y_scale)``) has
    the spectrum of ``∂F/∂x / t_scale``, and ``D M`` and ``M P`` have the
    spectrum of ``M P`` (``eig(DM) = eig(MD)``). For ``P ≻ 0``,
    ``P^{1/2} (M P) P^{-1/2} = P^{1/2} A P^{1/2} - γ P`` with ``A = W - Wᵀ``:
    a skew-symmetric plus a symmetric matrix ``N = -γP``, whose eigenvalues
    have ``Re λ = v*Nv / v*v ∈ [λ_min(N), λ_max(N)]`` (Bendixson). A singular
    ``P`` is the limit of ``P + εI``, and eigenvalues are continuous. ∎

    This is a statement about the linearisation (no exponentially growing
    mode at any point); it is not a global contraction bound.

    Parameters
    ----------
    state_dim : int
        Number of states ``D``.
    gamma : float
        Damping ``γ >= 0`` (static). Default 0.1.
    width : int or None
        ``None`` for the single-layer form (``D² + D`` weights); an int for the
        lifted form (``D² + width·D + width`` weights), more expressive.
    activation : str
        Monotone with ``act' <= 1``: ``tanh`` (default), ``relu``, ``softplus``, ``elu``.
        In the single-layer form only ``tanh`` lets states both rise and fall.
    key : PRNGKey
    y_scale, t_scale : float or sequence
        As in :class:`bayesode.MLPField`.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, jax.random as jr
    >>> f = AntisymmetricField(3, gamma=0.5, key=jr.key(0))
    >>> lam = jnp.linalg.eigvals(jax.jacfwd(lambda y: f(0.0, y, None))(jnp.ones(3)))
    >>> bool(jnp.all(lam.real <= 1e-6)), bool(jnp.all(lam.real >= -0.5 - 1e-6))
    (True, True)
    """

    weight: jax.Array
    bias: jax.Array
    lift: jax.Array | None
    state_dim: int = eqx.field(static=True)
    gamma: float = eqx.field(static=True)
    width: int | None = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    y_scale: tuple[float, ...] = eqx.field(static=True)
    t_scale: float = eqx.field(static=True)

    def __init__(
        self,
        state_dim: int,
        gamma: float = 0.1,
        width: int | None = None,
        activation: str = "tanh",
        *,
        key,
        y_scale=1.0,
        t_scale: float = 1.0,
    ):
        self.state_dim = _check_int("state_dim", state_dim, 1)
        self.gamma = _check_nonneg("gamma", gamma, strict=False)
        self.width = None if width is None else _check_int("width", width, 1)
        self.activation = _check_activation(activation, _MONOTONE_1LIP, "the eigenvalue bound needs 0 <= act' <= 1")
        self.y_scale = _scale_tuple("y_scale", y_scale, state_dim)
        self.t_scale = _check_nonneg("t_scale", t_scale, strict=True)
        kw, kb, kk = jr.split(key, 3)
        self.weight = jr.normal(kw, (state_dim, state_dim)) / jnp.sqrt(2.0 * state_dim)
        hidden = state_dim if width is None else width
        self.bias = 0.1 * jr.normal(kb, (hidden,))
        self.lift = None if width is None else jr.normal(kk, (width, state_dim)) / jnp.sqrt(float(state_dim))

    def matrix(self):
        """``M = W - Wᵀ - γI``, (state, state)."""
        eye = jnp.eye(self.state_dim, dtype=self.weight.dtype)
        return self.weight - self.weight.T - self.gamma * eye

    def __call__(self, t, y, args):
        y_scale, t_scale = _scales(self, y)
        x = y / y_scale
        act = _ACTIVATIONS[self.activation]
        m = self.matrix().astype(y.dtype)
        if self.lift is None:
            out = act(m @ x + self.bias)
        else:
            out = m @ (self.lift.T @ act(self.lift @ x + self.bias))
        return y_scale * out / t_scale


class HamiltonianField(eqx.Module):
    r"""Hamiltonian field ``dy/dt = J ∇H(y)``, ``y = (q, p)``: energy conserved by construction.

    ``J = [[0, I], [-I, 0]]`` (so ``dq/dt = ∂H/∂p``, ``dp/dt = -∂H/∂q``) and
    ``H`` is either

    - a neural scalar ``H(y) = mlp(y / y_scale)`` (default), with
      ``dy/dt = S J S ∇H(y) / t_scale``, ``S = diag(y_scale)`` (in
      ``x = y / y_scale`` this is the canonical system ``dx/dt = J ∇mlp(x) / t_scale``);
    - or a user function ``hamiltonian(q, p, params)`` whose parameters live in
      ``params`` (sample sites named after the keys, as in
      :class:`bayesode.MechanisticField`), with ``dy/dt = J ∇H``.

    **Guarantee.** ``B = S J S`` is skew-symmetric, so along every trajectory
    ``dH/dt = ∇Hᵀ B ∇H / t_scale = 0``: ``H`` is conserved for any weights.
    With ``dissipation=True`` the field is ``S (J - R) S ∇H / t_scale`` with
    ``R = diag(0, r)``, ``r = softplus(raw_dissipation) > 0`` (one rate per
    momentum, a free leaf), and

    .. math:: \frac{dH}{dt} = -\frac{1}{t_{scale}} \sum_i r_i\,(s_{p_i}\,\partial H/\partial p_i)^2 \le 0.

    A numerical solve conserves ``H`` only up to the solver's error (Tsit5
    is not symplectic: drift grows with tolerance and time).

    Parameters
    ----------
    state_dim : int
        Even number of states ``2n``: positions first, then momenta.
    width, depth : int
        Size of the neural ``H`` (``depth >= 1``; ignored with ``hamiltonian``).
    activation : str
        Smooth, so ``∇H`` is continuous: ``tanh`` (default), ``softplus``, ``gelu``, ``swish``, ``elu``.
    key : PRNGKey
        Initial weights (not needed with ``hamiltonian``).
    hamiltonian : callable ``(q, p, params) -> scalar``, optional
        A known energy instead of the network.
    params : mapping of str to float or array
        Initial values of ``hamiltonian``'s parameters (need ``param_priors``).
    dissipation : bool
        Add the learned damping ``R`` (default False).
    y_scale, t_scale : float or sequence
        As in :class:`bayesode.MLPField`; neural ``H`` only (write units into
        a user ``hamiltonian``).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> H = lambda q, p, prm: 0.5 * prm["k"] * jnp.sum(q**2) + 0.5 * jnp.sum(p**2)
    >>> f = HamiltonianField(2, hamiltonian=H, params={"k": 4.0})
    >>> f(0.0, jnp.array([1.0, 0.0]), None)
    Array([ 0., -4.], dtype=float32)
    """

    layers: tuple[eqx.nn.Linear, ...] | None
    params: dict | None
    raw_dissipation: jax.Array | None
    hamiltonian_fn: Callable | None = eqx.field(static=True)
    state_dim: int = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    y_scale: tuple[float, ...] = eqx.field(static=True)
    t_scale: float = eqx.field(static=True)

    def __init__(
        self,
        state_dim: int,
        width: int = 16,
        depth: int = 2,
        activation: str = "tanh",
        *,
        key=None,
        hamiltonian: Callable | None = None,
        params: Mapping | None = None,
        dissipation: bool = False,
        y_scale=1.0,
        t_scale: float = 1.0,
    ):
        _check_int("state_dim", state_dim, 1)
        if state_dim % 2:
            raise ConfigError(f"`state_dim` must be even (positions q then momenta p); got {state_dim}.")
        if not isinstance(dissipation, bool):
            raise ConfigError(f"`dissipation` must be True or False; got {dissipation!r}.")
        self.state_dim = state_dim
        self.activation = _check_activation(activation, _SMOOTH, "∇H must be continuous")
        self.y_scale = _scale_tuple("y_scale", y_scale, state_dim)
        self.t_scale = _check_nonneg("t_scale", t_scale, strict=True)
        self.hamiltonian_fn = hamiltonian
        if hamiltonian is None:
            if params:
                raise ConfigError("`params` is only used with `hamiltonian=`; drop it or pass your H function.")
            if key is None:
                raise ConfigError("the neural Hamiltonian needs `key=` (a jax.random key) for its initial weights.")
            _check_int("width", width, 1)
            _check_int("depth", depth, 1)
            self.layers = _mlp([state_dim] + [width] * depth + [1], key)
            self.params = None
        else:
            self._init_user_hamiltonian(hamiltonian, params or {})
        n = state_dim // 2
        # softplus(raw) = 0.1 as an initial (SVI start) value; the prior replaces it.
        self.raw_dissipation = jnp.full((n,), jnp.log(jnp.expm1(0.1))) if dissipation else None

    def _init_user_hamiltonian(self, hamiltonian, params):
        if not callable(hamiltonian):
            raise ConfigError(f"`hamiltonian` must be callable H(q, p, params); got {type(hamiltonian).__name__}.")
        if self.y_scale != (1.0,) * self.state_dim or self.t_scale != 1.0:
            raise ConfigError(
                "`y_scale`/`t_scale` apply to the neural Hamiltonian only; with `hamiltonian=` write the units "
                "into H and leave them at 1."
            )
        for name in params:
            if not isinstance(name, str) or not name.isidentifier():
                raise ConfigError(f"parameter name {name!r} in `params` must be a Python identifier.")
        self.layers = None
        self.params = {k: jnp.asarray(v, dtype=float) for k, v in params.items()}
        n = self.state_dim // 2
        q = jax.ShapeDtypeStruct((n,), jnp.result_type(float))
        try:
            out = jax.eval_shape(hamiltonian, q, q, self.params)
        except Exception as e:
            raise ConfigError(f"calling `hamiltonian(q, p, params)` with q, p of shape ({n},) failed: {e}") from e
        if getattr(out, "shape", None) != ():
            raise ConfigError(
                f"`hamiltonian(q, p, params)` must return a scalar energy; got shape {getattr(out, 'shape', out)}. "
                "Sum over components, e.g. jnp.sum(p**2) / 2."
            )

    def energy(self, y):
        """The conserved quantity ``H(y)``, a scalar, for ``y`` of shape (state,)."""
        n = self.state_dim // 2
        if self.hamiltonian_fn is not None:
            return self.hamiltonian_fn(y[:n], y[n:], self.params)
        x = y / jnp.asarray(self.y_scale, dtype=y.dtype)
        return _run_mlp(self.layers, _ACTIVATIONS[self.activation], x)[0]

    def dissipation_rate(self):
        """``r`` (n,) = ``softplus(raw_dissipation)``, or None without dissipation."""
        return None if self.raw_dissipation is None else jax.nn.softplus(self.raw_dissipation)

    def __call__(self, t, y, args):
        n = self.state_dim // 2
        y_scale, t_scale = _scales(self, y)
        u = y_scale * jax.grad(self.energy)(y)
        du = jnp.concatenate([u[n:], -u[:n]])
        if self.raw_dissipation is not None:
            du = du - jnp.concatenate([jnp.zeros_like(u[:n]), self.dissipation_rate().astype(y.dtype) * u[n:]])
        return y_scale * du / t_scale
