"""Spin tomography of the tau pair: helicity basis, analysers, estimators, quantum observables.

Conventions (shared/reference/tomography.md): tau+ is the first qubit; in the tau-tau rest
frame k = tau- direction, p = beam axis (Collins-Soper by default), r = (p - cos(Theta) k) /
sin(Theta), n = r x k; each tau's rest frame is reached from the tau-tau frame by a
rotation-free boost. Analysing powers are relative to each tau's own spin (tau+: the sign of
the tau- value flips). Pauli mapping of the density matrix: (x, y, z) = (n, r, k).
"""

from ditau.physics.helicity import HelicityFrame, analyser_components, helicity_frame
from ditau.spin.polarimeters import optimal_rho_polarimeter, polarimeter_four_vector
from ditau.tomography.analysers import (
    KAPPA,
    Analysers,
    VisibleLegs,
    analysers,
    from_reco,
    from_truth,
    kappa,
)
from ditau.tomography.estimators import (
    PARAMETER_NAMES,
    SpinObservables,
    lo_expectation,
    lo_inclusive,
    measure,
    spin_correlation,
    z_couplings,
)
from ditau.tomography.quantum import (
    QuantumResult,
    bell_b,
    chsh_max,
    concurrence,
    concurrence_diagonal,
    density_matrix,
    horodecki_m12,
    is_physical,
    nearest_physical,
    quantum_observables,
    spin_parameters,
    witness_d,
)

__all__ = [
    "KAPPA", "PARAMETER_NAMES", "Analysers", "HelicityFrame", "QuantumResult", "SpinObservables",
    "VisibleLegs", "analyser_components", "analysers", "bell_b", "chsh_max", "concurrence",
    "concurrence_diagonal", "density_matrix", "from_reco", "from_truth", "helicity_frame",
    "horodecki_m12", "is_physical", "kappa", "lo_expectation", "lo_inclusive", "measure",
    "nearest_physical", "optimal_rho_polarimeter", "polarimeter_four_vector",
    "quantum_observables", "spin_correlation", "spin_parameters", "witness_d", "z_couplings",
]
