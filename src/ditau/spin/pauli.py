"""The two-qubit spin state of the tau pair as a 4 x 4 density matrix and back.

rho = 1/4 (I x I + sum_i B+_i sigma_i x I + sum_j B-_j I x sigma_j + sum_ij C_ij sigma_i x
sigma_j) (shared/reference/tomography.md "Density matrix"), tau+ the first qubit, i, j in
(k, r, n) of :mod:`ditau.physics.helicity`, with the Pauli mapping sigma_k = sigma_z,
sigma_r = sigma_y, sigma_n = sigma_x (right-handed: n = r x k; :mod:`ditau.tomography.quantum`
explains the choice). Inputs may be stacked: ``(..., 3)``, ``(..., 3, 3)``, ``(..., 4, 4)``.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

_I2 = np.eye(2, dtype=complex)
_SX = np.array([[0, 1], [1, 0]], dtype=complex)
_SY = np.array([[0, -1j], [1j, 0]], dtype=complex)
_SZ = np.array([[1, 0], [0, -1]], dtype=complex)
#: Pauli matrices in (k, r, n) order: sigma_k = sigma_z, sigma_r = sigma_y, sigma_n = sigma_x.
PAULI_KRN: Final[NDArray[np.complex128]] = np.stack([_SZ, _SY, _SX])
_SI = np.stack([np.kron(s, _I2) for s in PAULI_KRN])  # sigma_i x I, (3, 4, 4)
_IS = np.stack([np.kron(_I2, s) for s in PAULI_KRN])  # I x sigma_j
_SS = np.stack([[np.kron(a, b) for b in PAULI_KRN] for a in PAULI_KRN])  # (3, 3, 4, 4)


def density_matrix(B_p: ArrayLike, B_m: ArrayLike, C: ArrayLike) -> NDArray[np.complex128]:
    """4 x 4 density matrix from (B+, B-, C) in the (k, r, n) basis (tomography.md "Density
    matrix"; Pauli mapping in the module docstring). Not necessarily positive: see
    :func:`ditau.tomography.quantum.is_physical` /
    :func:`~ditau.tomography.quantum.nearest_physical`."""
    bp = np.asarray(B_p, dtype=np.float64)
    bm = np.asarray(B_m, dtype=np.float64)
    c = np.asarray(C, dtype=np.float64)
    # rho = 1/4 (I + B+.sigma x I + B-. I x sigma + C_ij sigma_i x sigma_j) (tomography.md)
    rho = (np.eye(4) + np.einsum("...i,iab->...ab", bp, _SI)
           + np.einsum("...j,jab->...ab", bm, _IS) + np.einsum("...ij,ijab->...ab", c, _SS))
    return rho / 4.0


def spin_parameters(rho: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64],
                                              NDArray[np.float64]]:
    """Inverse of :func:`density_matrix`: B+_i = Tr[rho sigma_i x I], B-_j = Tr[rho I x sigma_j],
    C_ij = Tr[rho sigma_i x sigma_j] (orthogonality of the Pauli products, Tr = 4 delta)."""
    r = np.asarray(rho, dtype=complex)
    bp = np.einsum("...ab,iba->...i", r, _SI).real
    bm = np.einsum("...ab,jba->...j", r, _IS).real
    c = np.einsum("...ab,ijba->...ij", r, _SS).real
    return bp, bm, c
