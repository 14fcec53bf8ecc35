"""Vector fields: MLP, mechanistic, hybrid and structured (antisymmetric, Hamiltonian, Lipschitz, stable)."""

from .basic import (
    HybridField,
    MechanisticField,
    MLPField,
    field_state_dim,
    lotka_volterra_field,
    lotka_volterra_rhs,
)
from .bounded import LipschitzField, StableField
from .conservative import AntisymmetricField, HamiltonianField

__all__ = ["AntisymmetricField", "HamiltonianField", "HybridField", "LipschitzField", "MLPField", "MechanisticField",
           "StableField", "field_state_dim", "lotka_volterra_field", "lotka_volterra_rhs"]
