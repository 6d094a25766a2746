"""Spin tomography of the tau pair: helicity basis, decay-angle estimators, LO expectations.

Conventions (shared/reference/tomography.md): tau+ is the first qubit; in the tau-tau rest
frame k = tau- direction, p = beam axis (Collins-Soper by default), r = (p - cos(Theta) k) /
sin(Theta), n = r x k; each tau's rest frame is reached from the tau-tau frame by a
rotation-free boost.
"""

from ditau.tomography.basis import HelicityFrame, analyser_components, helicity_frame
from ditau.tomography.estimators import lo_expectation, spin_correlation

__all__ = ["HelicityFrame", "analyser_components", "helicity_frame", "lo_expectation",
           "spin_correlation"]
