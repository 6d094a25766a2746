"""Small synthetic detector-level event tables with a known answer (tests, smoke runs).

Z -> tau tau kinematics (Breit-Wigner-free: m = M_Z + Gaussian width, random Z momentum,
isotropic decay), each tau decayed *collinearly*: the visible system carries the fraction
x(mode) of the tau 3-momentum (``x_of_mode``; with ``x_spread`` > 0 a uniform spread around
it), so the invisible momentum is nu = (1 - x)/x * vis. With ``x_spread = 0`` the answer is a
known, channel-dependent function of the visible objects, which a model must learn exactly.
rho legs split their visible momentum into a charged and a neutral object; each event gets
0-3 random jets (pure noise objects); MET = sum of the neutrinos' pT (+ optional Gaussian
noise). All columns follow the event schema (``id`` group, the reco columns the methods read,
and the truth tau/nu momenta and m_tautau that the evaluation reads).

With ``impact_parameters`` the legs' tracks get impact parameters (``reco_{d0,z0}[_err]_*``,
mm): each tau flies an exponential distance (mean gamma beta c tau, :data:`CTAU_MM`) from a
primary vertex at the origin and the charged object starts there as a straight line,
d0 = (y px - x py)/pT, z0 = z - (x px + y py) pz/pT^2, smeared with fixed toy resolutions
(:data:`TOY_D0_ERR_MM`, :data:`TOY_Z0_ERR_MM`). The toy's taus decay collinearly, so these
carry no information on the neutrinos (the values are resolution-sized): they exercise the
input path only. Drawn from a generator of their own, so the other columns are those of the
same seed without them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from ditau.physics import (
    ANALYSIS_CHANNELS,
    M_PI,
    M_TAU,
    M_Z,
    boost_to_rest,
    channel_of,
    from_pt_eta_phi_m,
    mass,
    pt,
)
from ditau.provenance import RUN_ID, run_id
from ditau.schema import write_events

#: Visible momentum fraction per mode (default).
X_OF_MODE: dict[str, float] = {"pi": 0.5, "rho": 0.65, "e": 0.35, "mu": 0.4}
_LEG_MODES: dict[str, tuple[str, str]] = {
    "pipi": ("pi", "pi"), "pirho": ("pi", "rho"), "rhorho": ("rho", "rho"),
    "epi": ("e", "pi"), "erho": ("e", "rho"), "mupi": ("mu", "pi"), "murho": ("mu", "rho")}
# The draw order of the default channels (reproducible samples per seed) is this dict's.
assert set(_LEG_MODES) == set(ANALYSIS_CHANNELS)
_C = ("px", "py", "pz", "e")
#: tau mean proper decay length (mm; PDG 2024: 87.03 um).
CTAU_MM = 0.08703
#: Toy impact-parameter resolutions (mm): ATLAS-like d0 and z0 of a ~20 GeV central track.
TOY_D0_ERR_MM = 0.012
TOY_Z0_ERR_MM = 0.10


def _to_lab(p4: NDArray[np.float64], frame: NDArray[np.float64]) -> NDArray[np.float64]:
    """(n, 4) four-momenta given in the rest frame of ``frame`` (n, 4, lab) boosted to the lab:
    the lab is the rest frame of the system that moves with -p_frame in the frame's rest."""
    mirror = np.column_stack([-frame[:, :3], frame[:, 3:]])
    return boost_to_rest(p4, mirror)


def synthetic_events(n: int, seed: int = 0, *, channels: tuple[str, ...] | None = None,
                     x_of_mode: dict[str, float] | None = None, x_spread: float = 0.0,
                     met_noise: float = 0.0, jet_rate: float = 1.0,
                     event_id_offset: int = 0, impact_parameters: bool = False) -> pa.Table:
    """``n`` synthetic events (see the module doc) as a schema-conforming pyarrow table;
    ``impact_parameters``: with the legs' track impact parameters."""
    rng = np.random.default_rng(seed)
    ip_rng = np.random.default_rng([seed, 0x1B])  # impact parameters: their own draws
    xm = {**X_OF_MODE, **(x_of_mode or {})}
    chans = tuple(channels or _LEG_MODES)
    ch = np.asarray(chans)[rng.integers(0, len(chans), n)]
    swap = rng.random(n) < 0.5
    modes = np.array([_LEG_MODES[c] for c in ch]).reshape(n, 2)
    modes = np.where(swap[:, None], modes[:, ::-1], modes)
    m = M_Z + rng.normal(0.0, 3.0, n)
    mom = np.column_stack([rng.normal(0, 10, (n, 2)), rng.normal(0, 80, n)])
    z4 = np.column_stack([mom, np.sqrt(m**2 + np.sum(mom**2, 1))])  # the Z in the lab
    cth, ph = rng.uniform(-1, 1, n), rng.uniform(0, 2 * np.pi, n)
    sth = np.sqrt(1 - cth**2)
    pst = np.sqrt(m**2 / 4 - M_TAU**2)
    d = np.column_stack([sth * np.cos(ph), sth * np.sin(ph), cth]) * pst[:, None]
    out: dict[str, Any] = {"event_id": np.arange(n, dtype=np.int64) + event_id_offset,
                           "sample": np.full(n, "synthetic"), "weight": np.ones(n),
                           "gen_weight": np.ones(n)}
    met = np.zeros((n, 2))
    for k, (leg, sign) in enumerate((("p", 1.0), ("m", -1.0))):
        tau = _to_lab(np.column_stack([sign * d, m / 2]), z4)
        mode = modes[:, k]
        x = np.vectorize(xm.__getitem__, otypes=[float])(mode)
        x = x + rng.uniform(-x_spread, x_spread, n)
        vis = tau[:, :3] * x[:, None]
        nu = tau[:, :3] - vis  # collinear decay: nu = (1 - x) p_tau
        f = np.where(mode == "rho", rng.uniform(0.3, 0.9, n), 1.0)
        chg, neu = vis * f[:, None], vis * (1 - f)[:, None]
        chg_e = np.sqrt(np.sum(chg**2, 1) + M_PI**2)
        neu_e = np.where(mode == "rho", np.linalg.norm(neu, axis=1), np.nan)
        neu = np.where((mode == "rho")[:, None], neu, np.nan)
        for j, c in enumerate(_C[:3]):
            out[f"reco_chg_{c}_{leg}"] = chg[:, j]
            out[f"reco_neu_{c}_{leg}"] = neu[:, j]
            out[f"nu_{c}_{leg}"] = nu[:, j]
            out[f"tau_{c}_{leg}"] = tau[:, j]
        out[f"reco_chg_e_{leg}"] = chg_e
        out[f"reco_neu_e_{leg}"] = neu_e
        out[f"nu_e_{leg}"] = np.linalg.norm(nu, axis=1)
        out[f"tau_e_{leg}"] = tau[:, 3]
        out[f"reco_mode_{leg}"] = mode.astype(object)
        out[f"reco_charge_{leg}"] = np.full(n, int(sign), np.int8)
        met += nu[:, :2]
        if impact_parameters:
            out.update(_toy_impact_parameters(tau, chg, leg, ip_rng))
    met += rng.normal(0.0, met_noise, (n, 2)) if met_noise > 0 else 0.0
    n_jets = rng.poisson(jet_rate, n).clip(0, 3).astype(np.int8)
    for j in (1, 2, 3):
        pt = rng.uniform(20, 60, n)
        eta, phi = rng.uniform(-2.5, 2.5, n), rng.uniform(-np.pi, np.pi, n)
        p = from_pt_eta_phi_m(pt, eta, phi, np.zeros(n))  # massless jets
        p[n_jets < j] = np.nan
        for k, c in enumerate(_C):
            out[f"jet{j}_{c}"] = p[:, k]
    out["n_jets"] = n_jets
    out["met_x"], out["met_y"] = met[:, 0], met[:, 1]
    out["met_sumet"] = np.full(n, 200.0)
    out["met_cov_xx"] = out["met_cov_yy"] = np.full(n, max(met_noise, 1.0) ** 2)
    out["met_cov_xy"] = np.zeros(n)
    taus = [np.column_stack([out[f"tau_{c}_{leg}"] for c in _C]) for leg in ("p", "m")]
    s = taus[0] + taus[1]
    out["m_tautau"] = mass(s)
    out["reco_channel"] = channel_of(out["reco_mode_p"], out["reco_mode_m"]).astype(object)
    out["in_sr"] = np.ones(n, bool)
    _complete(out, n, s)
    return pa.table(out)


def _toy_impact_parameters(tau: NDArray[np.float64], chg: NDArray[np.float64], leg: str,
                           rng: np.random.Generator) -> dict[str, NDArray[np.float64]]:
    """The ``reco_{d0,z0}[_err]_{leg}`` columns (mm) of straight tracks along ``chg`` (n, 3)
    from the decay vertex of taus ``tau`` (n, 4), PV at the origin (module doc)."""
    p = np.linalg.norm(tau[:, :3], axis=1)
    flight = CTAU_MM * p / M_TAU * rng.exponential(1.0, len(tau))  # L = gamma beta c tau x
    x, y, z = (tau[:, :3] * (flight / p)[:, None]).T
    px, py, pz = chg.T
    pt2 = px**2 + py**2
    d0 = (y * px - x * py) / np.sqrt(pt2)  # d0 = (y px - x py) / pT
    z0 = z - (x * px + y * py) * pz / pt2  # z at the transverse point of closest approach
    smear = rng.normal(0.0, 1.0, (2, len(tau)))
    return {f"reco_d0_{leg}": d0 + TOY_D0_ERR_MM * smear[0],
            f"reco_z0_{leg}": z0 + TOY_Z0_ERR_MM * smear[1],
            f"reco_d0_err_{leg}": np.full(len(tau), TOY_D0_ERR_MM),
            f"reco_z0_err_{leg}": np.full(len(tau), TOY_Z0_ERR_MM)}


#: PDG id of the single charged product of a tau+ leg per mode (the tau- leg has the opposite).
_CHG_PDG_TAUP: dict[str, int] = {"pi": 211, "rho": 211, "e": -11, "mu": -13}


def _complete(out: dict[str, Any], n: int, pair: NDArray[np.float64]) -> None:
    """The remaining truth and reco columns of a complete detector-level file, derived from
    the toy without new random numbers (so a seed gives the same events as before): the
    truth visible parts are the reco ones (no smearing), a u ubar -> Z hard process along +z,
    no other neutrinos, every leg a real tau product, the channel's trigger fired; no
    lepton-flavour neutrino (NaN) and spin_weight 1. ``pair``: the (n, 4) tau+ + tau-."""
    out["hard_id1"], out["hard_id2"] = np.full(n, 2, np.int32), np.full(n, -2, np.int32)
    out["quark_pz_sign"] = np.ones(n, np.int8)
    out["m_hat"] = out["m_tautau"]
    out["pt_tautau"] = pt(pair[:, 0], pair[:, 1])
    for leg, sign in (("p", 1), ("m", -1)):
        mode = np.asarray(out[f"reco_mode_{leg}"], dtype=str)
        rho, lep = mode == "rho", np.isin(mode, ("e", "mu"))
        for c in _C:
            out[f"chg_{c}_{leg}"] = out[f"reco_chg_{c}_{leg}"]
            out[f"neu_{c}_{leg}"] = np.nan_to_num(out[f"reco_neu_{c}_{leg}"])
        out[f"n_nu_{leg}"] = np.where(lep, 2, 1).astype(np.int8)
        out[f"n_charged_{leg}"] = np.ones(n, np.int8)
        out[f"n_pi0_{leg}"] = rho.astype(np.int8)
        out[f"n_neutral_{leg}"] = rho.astype(np.int8)
        out[f"chg_pdg_{leg}"] = (sign * np.vectorize(_CHG_PDG_TAUP.__getitem__, otypes=[int])(
            mode)).astype(np.int32)
        out[f"decay_mode_{leg}"] = mode.astype(object)
        out[f"reco_n_neu_{leg}"] = rho.astype(np.int8)
        out[f"reco_origin_{leg}"] = np.zeros(n, np.int8)  # a real tau product
        for c in _C:  # the toy does not split a leptonic leg's neutrinos: unknown
            out[f"nul_{c}_{leg}"] = np.full(n, np.nan)
    out["truth_channel"] = out["reco_channel"]
    out["spin_weight"] = np.ones(n)  # the toy's spin state is not an LO one: no reweighting
    for c in ("px", "py"):
        out[f"nu_other_{c}"] = np.zeros(n)
        out[f"vis_out_{c}"] = np.zeros(n)
    ch = np.asarray(out["reco_channel"], dtype=str)
    out["trig_ditau"] = np.isin(ch, ("pipi", "pirho", "rhorho"))
    out["trig_etau"] = np.char.startswith(ch, "e")
    out["trig_mutau"] = np.char.startswith(ch, "mu")
    out["trig_single_e"] = np.zeros(n, bool)
    out["trig_single_mu"] = np.zeros(n, bool)
    out["reco_weight"] = np.ones(n)


def write_synthetic(path: str | os.PathLike[str], n: int, seed: int = 0,
                    **kwargs: Any) -> Path:
    """Write :func:`synthetic_events` to a validated ditau Parquet file."""
    table = synthetic_events(n, seed, **kwargs)
    settings = {"n": n, "seed": seed, **kwargs}
    return write_events(table, path, {"stage": "detector", "sample": "synthetic",
                                      "synthetic": settings,
                                      RUN_ID: run_id("synthetic", settings)})
