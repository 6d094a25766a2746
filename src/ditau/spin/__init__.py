"""Spin of the tau pair: production density matrix, polarimeters, spin weights.

Layer: used by ``generate`` (spin weights of unpolarised samples) and ``tomography``
(calibration, closure tests). Conventions are those of :mod:`ditau.tomography`
(shared/reference/tomography.md): helicity basis {k, r, n} in the tau-tau rest frame, k = tau-
direction, one basis for both taus, tau+ the first qubit; polarimeters are relative to each
tau's own spin (dGamma ~ 1 + h.s).

* :mod:`.density`: q qbar -> gamma*/Z -> tau tau at LO with the tau mass
  (:func:`production_state`, :class:`SpinState`).
* :mod:`.polarimeters`: pi, rho (optimal), e/mu (exact, needs the lepton-flavour neutrino).
* :mod:`.weights`: w = 1 + B+.h+ + B-.h- + h+ C h- and w_target / w_generated; the
  weights of a ``spin: weights`` sample from its truth (:func:`truth_weights`).
"""

from ditau.spin.density import (
    GAMMA_Z,
    SpinState,
    chiral_couplings,
    production_state,
    quark_type,
    state_from_truth,
)
from ditau.spin.polarimeters import (
    Polarimeters,
    from_analysers,
    from_truth,
    lepton_polarimeter,
    pion_polarimeter,
    polarimeters,
    rho_polarimeter,
)
from ditau.spin.weights import (
    TargetState,
    decay_density,
    spin_weight,
    target_state,
    truth_weights,
)

__all__ = [
    "GAMMA_Z", "Polarimeters", "SpinState", "TargetState", "chiral_couplings",
    "decay_density", "from_analysers", "from_truth", "lepton_polarimeter", "pion_polarimeter",
    "polarimeters", "production_state", "quark_type", "rho_polarimeter", "spin_weight",
    "state_from_truth", "target_state", "truth_weights",
]
