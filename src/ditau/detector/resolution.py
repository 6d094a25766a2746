"""Object resolutions and efficiencies of the ATLAS-like parametric detector.

Unless stated otherwise the numbers are those of the Delphes ATLAS card
(delphes/delphes, cards/delphes_card_ATLAS.tcl), which the reference study used. All
functions take numpy arrays of pT [GeV], |eta| or energy [GeV] and return relative
resolutions sigma(x)/x or efficiencies; the track impact-parameter resolutions
(:func:`d0_resolution`, :func:`z0_resolution`) are absolute, in mm.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Arr = NDArray[np.float64]


def _bins(abseta: Arr, edges: tuple[float, ...], values: list[Arr]) -> Arr:
    """values[i] where edges[i] <= |eta| < edges[i+1] (last bin open-ended), else NaN."""
    out = np.full(np.shape(abseta), np.nan)
    for i, v in enumerate(values):
        hi = edges[i + 1] if i + 1 < len(edges) else np.inf
        sel = (abseta >= edges[i]) & (abseta < hi)
        out = np.where(sel, v, out)
    return out


def track_resolution(pt: Arr, abseta: Arr) -> Arr:
    """Charged-hadron track sigma(pT)/pT (card: ChargedHadronMomentumSmearing)."""
    # 6% (+) 1.3e-3 pT for |eta| <= 0.5; 10% (+) 1.7e-3 pT to 1.5; 25% (+) 3.1e-3 pT to 2.5
    return _bins(abseta, (0.0, 0.5, 1.5), [np.hypot(0.06, 1.3e-3 * pt),
                                           np.hypot(0.10, 1.7e-3 * pt),
                                           np.hypot(0.25, 3.1e-3 * pt)])


def electron_resolution(pt: Arr, abseta: Arr) -> Arr:
    """Electron sigma(pT)/pT (card: ElectronMomentumSmearing)."""
    # 3% (+) 1.3e-3 pT for |eta| <= 0.5; 5% (+) 1.7e-3 pT to 1.5; 15% (+) 3.1e-3 pT to 2.5
    return _bins(abseta, (0.0, 0.5, 1.5), [np.hypot(0.03, 1.3e-3 * pt),
                                           np.hypot(0.05, 1.7e-3 * pt),
                                           np.hypot(0.15, 3.1e-3 * pt)])


def muon_resolution(pt: Arr, abseta: Arr) -> Arr:
    """Muon sigma(pT)/pT (card: MuonMomentumSmearing)."""
    # 1% (+) 1e-4 pT for |eta| <= 0.5; 1.5% (+) 1.5e-4 pT to 1.5; 2.5% (+) 3.5e-4 pT beyond
    return _bins(abseta, (0.0, 0.5, 1.5), [np.hypot(0.01, 1.0e-4 * pt),
                                           np.hypot(0.015, 1.5e-4 * pt),
                                           np.hypot(0.025, 3.5e-4 * pt)])


def ecal_resolution(energy: Arr, abseta: Arr) -> Arr:
    """EM calorimeter sigma(E)/E (card: ECal ResolutionFormula)."""
    e = np.maximum(energy, 1e-9)
    # sqrt(E^2 0.0017^2 + E 0.101^2) for |eta| <= 3.2; sqrt(E^2 0.035^2 + E 0.285^2) to 4.9
    return _bins(abseta, (0.0, 3.2), [np.hypot(0.0017, 0.101 / np.sqrt(e)),
                                      np.hypot(0.035, 0.285 / np.sqrt(e))])


def jet_resolution(pt: Arr, abseta: Arr) -> Arr:
    """Jet sigma(pT)/pT = N/pT (+) S/sqrt(pT) (+) C.

    Approximate ATLAS Run-2 values for EM+JES particle-flow jets at low pile-up, read off
    arXiv:2007.02645 (EPJC 81 (2021) 689), Fig. 22: N = 3 GeV, S = 0.75 GeV^1/2, C = 0.03;
    S grows to 1.0 beyond |eta| = 2.8 (forward calorimeter, same paper). Labelled approximate.
    """
    p = np.maximum(pt, 1e-9)
    s = np.where(abseta < 2.8, 0.75, 1.0)
    return np.sqrt((3.0 / p) ** 2 + s**2 / p + 0.03**2)


#: Track impact-parameter resolution, sigma(X) = a (+) b / (pT sqrt(sin theta)) [mm, GeV],
#: X = d0 or z0 sin(theta); (+) = sum in quadrature. Source of the form and the Run-1 scale:
#: ATLAS, JINST 3 (2008) S08003, Table 10.2 (expected inner-detector performance,
#: sigma_X = sigma_X(inf) (1 (+) p_X / pT); 0.25 < |eta| < 0.5: d0 10 um with p_X = 14 GeV,
#: z0 sin(theta) 91 um with p_X = 2.3 GeV; the 1 / sqrt(sin theta) growth of the
#: multiple-scattering term matches its 1.5 < |eta| < 1.75 values, 12 um / 20 GeV). Run 2
#: (ATLAS-like): the constant terms kept, the multiple-scattering terms scaled by 0.6 for the
#: Insertable B-Layer at r = 33 mm - an approximation of this project (labelled), giving
#: sigma(d0) = 80 um at pT = 1 GeV and 13 um at 10 GeV for |eta| = 0.
D0_RES_A_MM: float = 0.010
D0_RES_B_MM_GEV: float = 0.6 * 0.140 * 0.967  # 0.967 = sqrt(sin theta) at |eta| = 0.375
Z0SIN_RES_A_MM: float = 0.091
Z0SIN_RES_B_MM_GEV: float = 0.6 * 0.091 * 2.3 * 0.967


def _sin_theta(abseta: Arr) -> Arr:
    return 1.0 / np.cosh(abseta)


def d0_resolution(pt: Arr, abseta: Arr) -> Arr:
    """Transverse impact-parameter resolution sigma(d0) [mm] of a track of pT [GeV] and |eta|
    (see :data:`D0_RES_A_MM`): 0.010 (+) 0.081 / (pT sqrt(sin theta))."""
    p = np.maximum(pt, 1e-9)
    return np.hypot(D0_RES_A_MM, D0_RES_B_MM_GEV / (p * np.sqrt(_sin_theta(abseta))))


def z0_resolution(pt: Arr, abseta: Arr) -> Arr:
    """Longitudinal impact-parameter resolution sigma(z0) [mm]: sigma(z0 sin theta) / sin theta
    with sigma(z0 sin theta) = 0.091 (+) 0.121 / (pT sqrt(sin theta)) (see
    :data:`D0_RES_A_MM`)."""
    p = np.maximum(pt, 1e-9)
    st = _sin_theta(abseta)
    return np.hypot(Z0SIN_RES_A_MM, Z0SIN_RES_B_MM_GEV / (p * np.sqrt(st))) / st


def electron_efficiency(pt: Arr, abseta: Arr) -> Arr:
    """Tracking x identification efficiency (card: ElectronTrackingEfficiency x
    ElectronEfficiency): 0.95 x 0.95 for |eta| <= 1.5, 0.83 x 0.85 to 2.5, pT > 10 GeV."""
    trk = np.where(abseta <= 1.5, np.where(pt > 100.0, 0.99, 0.95),
                   np.where(pt > 100.0, 0.90, 0.83))
    idf = np.where(abseta <= 1.5, 0.95, 0.85)
    return np.where((pt > 10.0) & (abseta <= 2.5), trk * idf, 0.0)


def muon_efficiency(pt: Arr, abseta: Arr) -> Arr:
    """Tracking x identification efficiency (card: MuonTrackingEfficiency x MuonEfficiency):
    0.99 x 0.95 for |eta| <= 1.5, 0.98 x 0.85 to 2.5 (tracking ends at 2.5), pT > 10 GeV."""
    eff = np.where(abseta <= 1.5, 0.99 * 0.95, 0.98 * 0.85)
    return np.where((pt > 10.0) & (abseta <= 2.5), eff, 0.0)


def track_efficiency(pt: Arr, abseta: Arr) -> Arr:
    """Charged-hadron tracking efficiency (card: ChargedHadronTrackingEfficiency)."""
    # 0.70 / 0.95 (pT 0.1-1 / > 1 GeV) for |eta| <= 1.5; 0.60 / 0.85 to 2.5; 0 beyond
    central = np.where(pt > 1.0, 0.95, 0.70)
    forward = np.where(pt > 1.0, 0.85, 0.60)
    eff = np.where(abseta <= 1.5, central, forward)
    return np.where((pt > 0.1) & (abseta <= 2.5), eff, 0.0)


def tau_id_efficiency(n_tracks: NDArray[np.int64]) -> Arr:
    """Hadronic tau identification (card: TauTagging, ATL-PHYS-PUB-2015-045 medium working
    point): 0.70 for 1-prong, 0.60 for multi-prong."""
    return np.where(n_tracks == 1, 0.70, 0.60)


def jet_fake_rate(n_tracks: NDArray[np.int64]) -> Arr:
    """Jet -> tau_had misidentification per jet (card: TauTagging mistag rates,
    ATL-PHYS-PUB-2015-045): 0.02 for 1-track, 0.01 for multi-track jets."""
    return np.where(n_tracks == 1, 0.02, 0.01)


#: Lepton -> tau_had misidentification for a lepton not identified as a lepton. Approximate
#: order of magnitude after ATLAS's electron/muon vetoes (ATLAS, EPJC 76 (2016) 295, Sec. 6;
#: ATL-PHYS-PUB-2015-045): electrons 1 %, muons 0.2 %. Labelled approximate.
ELECTRON_FAKE_RATE: float = 0.01
MUON_FAKE_RATE: float = 0.002


def lognormal_factor(sigma: Arr, z: Arr) -> Arr:
    """Multiplicative smearing factor with mean 1 and standard deviation ``sigma``.

    Log-normal, as Delphes' MomentumSmearing (keeps momenta positive): ln r ~ N(mu, s^2) with
    s^2 = ln(1 + sigma^2), mu = -s^2/2 (moments of the log-normal distribution). ``z`` are
    standard-normal draws.
    """
    s2 = np.log1p(np.square(np.nan_to_num(sigma)))
    return np.exp(-0.5 * s2 + np.sqrt(s2) * z)
