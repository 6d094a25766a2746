"""Pythia 8 event record (an Awkward batch from ``Pythia.nextBatch``) -> schema truth columns.

Vectorised over all events of a batch: the jagged record is flattened into numpy arrays with
global indices, so no Python code runs per particle or per event.

Event-record conventions relied on (Pythia 8 manual, "The Event Record" and "Particle
Properties"): the hard-process taus have status -23; later copies (recoil or QED FSR) are
reached through daughter1/daughter2 carrying the same id; the tau that decays is the last copy
and its decay products have mother1 = that tau and status 91-99; decay products of decay
products again have status 91-99 and mother1 = their decaying parent. Vertices (``vProd``,
mm; Pythia 8 manual, "The Event Record": a particle's decay vertex is the production vertex
of its daughters; no vertex stored means the collision point): entry 0, the system, is at
the collision point (Pythia's own vertex spread, if switched on); the caller's
``vertex_shift`` (the beam spot) moves every vertex of the event alike.
"""

from __future__ import annotations

import awkward as ak
import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from ditau.physics import channel_of, charges, mass, pt_eta

_NEUTRINOS = (12, 14, 16)
#: Index of an absent tau leg (never a particle index nor the "no mother" value -1).
_ABSENT = -2
#: Decimals [mm] of the stored particle production vertices ``fs_v*``: 0.1 um.
FS_VERTEX_DECIMALS = 4


class TruthError(RuntimeError):
    """The event record does not have the expected tau-pair structure."""


def _checked_charges(pid: NDArray[np.int32]) -> NDArray[np.float64]:
    try:
        return charges(pid)
    except ValueError as err:
        raise TruthError(f"tau decay products: {err}") from err


def _follow_copies(idx: NDArray[np.int64], pid: NDArray[np.int32], d1: NDArray[np.int64],
                   d2: NDArray[np.int64]) -> NDArray[np.int64]:
    """Follow each particle to its last copy (a daughter with the same id), vectorised."""
    for _ in range(1000):
        a, b = d1[idx], d2[idx]
        same_a = (a >= 0) & (pid[np.maximum(a, 0)] == pid[idx])
        same_b = ~same_a & (b >= 0) & (pid[np.maximum(b, 0)] == pid[idx])
        nxt = np.where(same_a, a, np.where(same_b, b, idx))
        if np.array_equal(nxt, idx):
            return idx
        idx = nxt
    raise TruthError("tau copy chain longer than 1000 entries")


def leg_columns(leg: str, dp: NDArray[np.int64], evt: NDArray[np.int64],
                p: NDArray[np.float64], pid: NDArray[np.int64], charge: NDArray[np.float64],
                present: NDArray[np.bool_], tau: NDArray[np.float64]) -> dict[str, NDArray]:
    """The schema's truth columns of one tau leg from its direct decay products.

    ``dp``: flat indices of the leg's direct decay products (all events); ``evt``, ``p``,
    ``pid``: event index, four-momentum (px, py, pz, e) and PDG id of every flat particle;
    ``charge``: the charges of ``dp``; ``present``: per event, whether the leg exists (absent
    legs get NaN momenta); ``tau``: the leg's (n, 4) tau four-momenta. Shared by the Pythia
    and the Delphes truth readers, so decay-mode labels mean the same in both.

    ``nul_*``: for legs of mode e or mu, the one direct decay product that is the lepton's
    own-flavour neutrino with the leg's sign (tau+ -> l+ nu_l nubar_tau: PDG +12/+14;
    tau- -> l- nubar_l nu_tau: -12/-14; PDG numbering scheme, "Monte Carlo particle
    numbering" review); NaN for other legs (or a record without exactly one such neutrino).
    """
    n = len(present)
    ev = evt[dp]
    abspid = np.abs(pid[dp])
    nu = np.isin(abspid, _NEUTRINOS)
    chg = ~nu & (charge != 0)
    neu = ~nu & (charge == 0)

    def count(mask: NDArray[np.bool_]) -> NDArray[np.int64]:
        return np.bincount(ev[mask], minlength=n)

    def total(mask: NDArray[np.bool_]) -> NDArray[np.float64]:
        sums = np.stack([np.bincount(ev[mask], p[dp[mask], c], minlength=n) for c in range(4)],
                        axis=1)
        return np.where(present[:, None], sums, np.nan)

    n_chg, n_neu, n_pi0 = count(chg), count(neu), count(pid[dp] == 111)
    n_pic, n_e, n_mu = count(abspid == 211), count(abspid == 11), count(abspid == 13)
    one = n_chg == 1
    mode = np.full(n, "other", dtype=object)
    mode[one & (n_pic == 1) & (n_neu == 0)] = "pi"
    mode[one & (n_pic == 1) & (n_neu == 1) & (n_pi0 == 1)] = "rho"
    mode[one & (n_e == 1) & (n_neu == 0)] = "e"
    mode[one & (n_mu == 1) & (n_neu == 0)] = "mu"
    # the lepton-flavour neutrino of leptonic legs: nu_e (12) with an e, nu_mu (14) with a mu,
    # positive PDG id for the tau+ leg (nu_l), negative for the tau- leg (nubar_l)
    sign = 1 if leg == "p" else -1
    lep_mode = np.isin(mode, ("e", "mu"))
    want = np.where(mode == "e", 12, 14) * sign
    nul = (pid[dp] == want[ev]) & lep_mode[ev]
    one_nul = lep_mode & (count(nul) == 1) & present
    nul_p4 = np.where(one_nul[:, None], total(nul), np.nan)
    cols: dict[str, NDArray] = {}
    for name, vec in (("tau", tau), ("nu", total(nu)), ("chg", total(chg)),
                      ("neu", total(neu)), ("nul", nul_p4)):
        for c, comp in enumerate(("px", "py", "pz", "e")):
            cols[f"{name}_{comp}_{leg}"] = vec[:, c]
    cols[f"n_nu_{leg}"] = count(nu).astype(np.int8)
    cols[f"n_charged_{leg}"] = n_chg.astype(np.int8)
    cols[f"n_pi0_{leg}"] = n_pi0.astype(np.int8)
    cols[f"n_neutral_{leg}"] = n_neu.astype(np.int8)
    pid_sum = np.bincount(ev[chg], pid[dp[chg]].astype(np.float64), minlength=n)
    cols[f"chg_pdg_{leg}"] = np.where(one, pid_sum, 0).astype(np.int32)
    cols[f"decay_mode_{leg}"] = mode
    return cols


def _decaying_taus(pid: NDArray[np.int32], status: NDArray[np.int32], m1: NDArray[np.int64],
                   p: NDArray[np.float64], evt: NDArray[np.int64], n: int,
                   sign: int) -> NDArray[np.int64]:
    """Per event, the most energetic decaying tau with PDG id ``sign`` (-1 where none).

    A decaying tau is the mother of a nu_tau decay product (its last copy).
    """
    nut = (np.abs(pid) == 16) & (np.abs(status) >= 91) & (np.abs(status) <= 99) & (m1 >= 0)
    mothers = np.unique(m1[nut])
    taus = mothers[pid[mothers] == sign]
    out = np.full(n, _ABSENT, dtype=np.int64)
    order = np.lexsort((p[taus, 3], evt[taus]))  # by event, then energy: last one wins
    out[evt[taus[order]]] = taus[order]
    return out


def extract(batch: ak.Array, first_event_id: int, sample: str, keep_particles: bool = True,
            eta_max: float = 5.0, tau_pair: bool = True,
            vertex_shift: NDArray[np.float64] | None = None) -> dict[str, NDArray | pa.Array]:
    """Truth (and optionally particle) columns for every event of ``batch``.

    ``tau_pair``: the hard process is a tau pair (signal; anything else is an error). Otherwise
    (backgrounds) each leg is the most energetic decaying tau of that charge if there is one;
    an absent leg has NaN momenta, zero counts and decay mode ``other``.

    ``vertex_shift``: (n, 3) [mm] added to every vertex of each event (the beam spot); the
    primary vertex ``pv_*`` is the event's collision point plus it, ``tau_dv_*`` the legs'
    decay vertices (NaN for absent legs), and ``fs_v*`` each stored particle's production
    vertex minus the primary vertex (so the shift cancels there), rounded to 0.1 um.

    Returns a mapping column name -> numpy array (or a pyarrow list array for the particle
    columns). ``weight`` is left to the caller, which knows the sample normalisation.
    """
    prt = batch.prt
    counts = ak.to_numpy(ak.num(prt.id)).astype(np.int64)
    n = len(counts)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    evt = np.repeat(np.arange(n), counts)

    def flat(x: ak.Array, dtype: type) -> NDArray:
        return ak.to_numpy(ak.flatten(x, axis=1)).astype(dtype, copy=False)

    pid = flat(prt.id, np.int32)
    status = flat(prt.status, np.int32)
    base = offsets[evt]
    # Global indices; -1 where the record says "none" (local index 0 is the system entry).
    m1l, d1l, d2l = (flat(prt[k], np.int64) for k in ("mother1", "daughter1", "daughter2"))
    m1 = np.where(m1l > 0, m1l + base, -1)
    d1 = np.where(d1l > 0, d1l + base, -1)
    d2 = np.where(d2l > 0, d2l + base, -1)
    p = np.stack([flat(prt.p[c], np.float64) for c in ("px", "py", "pz", "e")], axis=1)
    # production vertices [mm] (Pythia's Vec4 x, y, z as px, py, pz); none stored: the origin
    vtx = np.stack([ak.to_numpy(ak.fill_none(ak.flatten(prt.vProd[c], axis=1), 0.0))
                    .astype(np.float64) for c in ("px", "py", "pz")], axis=1)
    shift = np.zeros((n, 3)) if vertex_shift is None else np.asarray(vertex_shift, np.float64)
    if shift.shape != (n, 3):
        raise ValueError(f"vertex_shift: shape {shift.shape}, expected ({n}, 3)")
    collision = vtx[offsets[:-1]] if len(vtx) else np.zeros((n, 3))  # entry 0: the system

    tau_idx = {}
    if tau_pair:
        # --- the two hard-process taus -> their last copies -------------------------------
        hard = np.flatnonzero((status == -23) & (np.abs(pid) == 15))
        per_event = np.bincount(evt[hard], minlength=n)
        if np.any(per_event != 2):
            bad = int(np.flatnonzero(per_event != 2)[0])
            raise TruthError(f"event {first_event_id + bad}: {per_event[bad]} hard-process "
                             "taus (expected a tau+ tau- pair)")
        for leg, sign in (("p", -15), ("m", 15)):
            sel = hard[pid[hard] == sign]
            if len(sel) != n:
                raise TruthError(f"batch starting at event {first_event_id}: a hard-process "
                                 "pair is not tau+ tau-")
            idx = np.empty(n, dtype=np.int64)
            idx[evt[sel]] = sel
            tau_idx[leg] = _follow_copies(idx, pid, d1, d2)
    else:
        for leg, sign in (("p", -15), ("m", 15)):
            tau_idx[leg] = _decaying_taus(pid, status, m1, p, evt, n, sign)
    present = {leg: idx != _ABSENT for leg, idx in tau_idx.items()}

    cols: dict[str, NDArray | pa.Array] = {
        "event_id": first_event_id + np.arange(n, dtype=np.int64),
        "sample": np.full(n, sample, dtype=object),
    }
    pv = collision + shift
    for c, comp in enumerate("xyz"):
        cols[f"pv_{comp}"] = pv[:, c]
    info = batch.info
    weights = info.weights
    cols["gen_weight"] = np.where(ak.to_numpy(ak.num(weights)) > 0,
                                  ak.to_numpy(ak.fill_none(ak.firsts(weights), 1.0)), 1.0)
    id1 = ak.to_numpy(info.id1).astype(np.int32)
    id2 = ak.to_numpy(info.id2).astype(np.int32)
    cols["hard_id1"], cols["hard_id2"] = id1, id2
    is_q1 = (id1 >= 1) & (id1 <= 6)
    is_q2 = (id2 >= 1) & (id2 <= 6)
    cols["quark_pz_sign"] = np.where(is_q1, 1, np.where(is_q2, -1, 0)).astype(np.int8)
    cols["m_hat"] = ak.to_numpy(info.mHat).astype(np.float64)

    nan4 = np.full(4, np.nan)
    tau_p = np.where(present["p"][:, None], p[np.maximum(tau_idx["p"], 0)], nan4)
    tau_m = np.where(present["m"][:, None], p[np.maximum(tau_idx["m"], 0)], nan4)
    pair = tau_p + tau_m
    cols["m_tautau"] = mass(pair)
    cols["pt_tautau"] = np.hypot(pair[:, 0], pair[:, 1])

    # --- each leg's direct decay products ------------------------------------------------
    abspid = np.abs(pid)
    is_nu = np.isin(abspid, _NEUTRINOS)
    modes = {}
    for leg, t in (("p", tau_p), ("m", tau_m)):
        dp = np.flatnonzero(m1 == tau_idx[leg][evt])
        q = np.where(is_nu[dp], 0.0, _checked_charges(pid[dp])) if len(dp) else np.zeros(0)
        leg_cols = leg_columns(leg, dp, evt, p, pid, q, present[leg], t)
        bad = (leg_cols[f"n_nu_{leg}"] == 0) & present[leg]
        if np.any(bad):
            raise TruthError(f"event {first_event_id + int(np.flatnonzero(bad)[0])}: "
                             f"tau{'+' if leg == 'p' else '-'} has no neutrino among its "
                             "decay products (not decayed?)")
        cols.update(leg_cols)
        modes[leg] = leg_cols[f"decay_mode_{leg}"]
        # the tau's decay vertex = the production vertex of its decay products
        dv = np.full((n, 3), np.nan)
        dv[evt[dp]] = vtx[dp] + shift[evt[dp]]
        for c, comp in enumerate("xyz"):
            cols[f"tau_dv_{comp}_{leg}"] = np.where(present[leg], dv[:, c], np.nan)
    cols["truth_channel"] = channel_of(modes["p"], modes["m"]).astype(object)

    # --- final state: tag tau descendants, split visible/invisible, acceptance -------------
    tag = np.zeros(len(pid), dtype=np.int8)
    tag[tau_idx["p"][present["p"]]], tag[tau_idx["m"][present["m"]]] = 1, -1
    from_decay = (np.abs(status) >= 91) & (np.abs(status) <= 99) & (m1 >= 0)
    src = np.flatnonzero(from_decay)
    for _ in range(100):  # decay chains are a few generations deep
        new = tag[m1[src]]
        changed = (tag[src] == 0) & (new != 0)
        if not changed.any():
            break
        tag[src[changed]] = new[changed]
    final = status > 0
    nu_other = final & is_nu & (tag == 0)
    visible = final & ~is_nu
    eta = pt_eta(p[:, 0], p[:, 1], p[:, 2])[1]
    inside = visible & (np.abs(eta) < eta_max)
    outside = visible & ~inside
    for name, mask in (("nu_other", nu_other), ("vis_out", outside)):
        cols[f"{name}_px"] = np.bincount(evt[mask], p[mask, 0], minlength=n)
        cols[f"{name}_py"] = np.bincount(evt[mask], p[mask, 1], minlength=n)

    if keep_particles:
        sel = np.flatnonzero(inside)
        offs = np.concatenate([[0], np.cumsum(np.bincount(evt[sel], minlength=n))])
        offs_arr = pa.array(offs.astype(np.int32))

        def lst(values: NDArray, typ: pa.DataType) -> pa.Array:
            return pa.ListArray.from_arrays(offs_arr, pa.array(values, type=typ))

        for c, comp in enumerate(("px", "py", "pz", "e")):
            cols[f"fs_{comp}"] = lst(p[sel, c].astype(np.float32), pa.float32())
        cols["fs_pid"] = lst(pid[sel], pa.int32())
        cols["fs_tau"] = lst(tag[sel], pa.int8())
        # production vertex - primary vertex, to 0.1 um (FS_VERTEX_DECIMALS): pi0 -> gamma
        # gamma displacements (~ nm) become 0, which stores 3x smaller; 100x below the best
        # impact-parameter resolution
        rel = np.round(vtx[sel] - collision[evt[sel]], FS_VERTEX_DECIMALS)
        for c, comp in enumerate("xyz"):
            cols[f"fs_v{comp}"] = lst(rel[:, c].astype(np.float32), pa.float32())
    return cols
