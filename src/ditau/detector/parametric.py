"""The parametric ATLAS-like detector: visible final state -> leptons, tau_had, jets, MET.

Input: the schema's ``particles`` group (visible final-state particles with |eta| < 5, each
tagged with the tau leg it comes from) plus a few truth columns. Output:
:class:`~ditau.objects.Candidates`. Vectorised over flat particle arrays; jets
from the ``fastjet`` package (anti-kt, multi-event interface).

Model (every number in :mod:`ditau.detector.resolution` / :class:`DetectorConfig`):

* electrons/muons: isolated final-state leptons with tracking x ID efficiency and log-normal
  momentum smearing; unidentified muons leave no calorimeter energy (lost to MET).
* tau_had: the visible products of a true hadronic tau leg. Tracks (charged products with
  pT > 1 GeV inside the tracker, tracking efficiency) with track resolution form the charged
  part; the leg's photons, each smeared with the ECAL resolution, form one neutral (pi0)
  cluster sum when its E_T exceeds a threshold, and the number of clusters is then the true
  number of pi0s (at least 1). ID efficiency by prong count. Simplification (labelled): no
  spurious pi0 clusters from charged-pion showers, so pi -> rho migration comes only from
  radiated photons, rho -> pi from soft pi0s.
* jets: anti-kt on the particles not used by identified leptons and taus (|eta| < 4.9,
  muons excluded), jet-level resolution and scale.
* fakes (backgrounds): every jet with |eta| < 2.5 is a tau candidate built from its core
  (dR < 0.2) tracks and photons, and every unselected lepton that dominates its isolation
  cone a 1-track candidate (a jet made mostly of such a lepton is not also a jet fake); each
  carries its misidentification probability as ``fake_weight``.

Jets: FastJet (M. Cacciari, G.P. Salam, G. Soyez, EPJC 72 (2012) 1896, arXiv:1111.6097).
* MET = -(identified leptons + identified taus + jets above 20 GeV + soft term); the soft
  term is the true pT sum of everything else in the calorimeter, scaled and smeared by a
  Gaussian of width k sqrt(sum E_T^soft) per component. The covariance adds each hard object's
  sigma(pT)^2 along its direction and the soft term's sigma^2 on the diagonal.
* track impact parameters (:mod:`ditau.detector.impact`): every charged particle's d0 and z0
  w.r.t. the primary vertex from its production vertex (``fs_v*``) and momentum on a helix in
  the 2 T field, smeared with the ATLAS-like resolution; leptons carry their own track's,
  tau_had candidates their leading (highest measured pT) track's (jet fakes: of the core
  tracks). Inputs without vertices (schema < 1.3.0) give NaN.

Random numbers (:func:`stream_seed`): each chunk of events draws from five
``numpy.random.SeedSequence`` streams keyed by the detector seed and a digest of the chunk's
events (their event ids and particle lists: counts, four-momenta, PDG ids and tau-leg tags).
Files of different generation runs (each numbering its events from 0) thus get independent
detector noise for events of equal row index, also when they are merged afterwards; a merged
file, a user's ntuple and a file without provenance metadata are keyed the same way, from what
they contain. The same input and detector seed give the same bytes: the key depends neither on
the number of workers nor on the back-end, nor on the file's metadata, schema version or
particle vertices (a schema 1.2 copy of a file gets the same noise), only on the events of the
chunk, so on ``chunk_size`` too. Systematic variations reuse the nominal's random numbers.
``DetectorConfig(seeding="event_id")`` restores the earlier key (detector seed, first event id
of the chunk) to reproduce the reco columns of files written before the ``seeding`` setting
existed (their ``detector_config`` metadata has no ``seeding``); its noise repeats across
inputs that number their events alike.
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import Any

import awkward as ak
import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from ditau.detector import impact
from ditau.detector import resolution as res
from ditau.detector.config import DetectorConfig
from ditau.objects import (
    ORIGIN_E,
    ORIGIN_JET,
    ORIGIN_MU,
    ORIGIN_REAL,
    Candidates,
    records,
    sort_by_pt,
)
from ditau.physics import charges, delta_r, eta

#: Columns the detector reads (besides the particles group).
INPUT_COLUMNS: tuple[str, ...] = (
    "event_id", "sample", "n_pi0_p", "n_pi0_m",
    "fs_px", "fs_py", "fs_pz", "fs_e", "fs_pid", "fs_tau",
)
#: Columns the detector reads when the input has them (schema >= 1.3.0): the particles'
#: production vertices relative to the primary vertex, for the impact parameters.
VERTEX_COLUMNS: tuple[str, ...] = ("fs_vx", "fs_vy", "fs_vz")
_C = ("px", "py", "pz", "e")


class _Flat:
    """The chunk's particles as flat arrays with their event index."""

    def __init__(self, table: pa.Table) -> None:
        col = table.column("fs_px").combine_chunks()
        self.offsets = np.asarray(col.offsets, dtype=np.int64)
        self.offsets = self.offsets - self.offsets[0]
        self.n = len(self.offsets) - 1
        counts = np.diff(self.offsets)
        self.evt = np.repeat(np.arange(self.n), counts)

        def flat(name: str, dtype: type) -> NDArray[Any]:
            c = table.column(name).combine_chunks()
            return np.asarray(c.flatten(), dtype=dtype)

        self.p = np.stack([flat(f"fs_{c}", np.float64) for c in _C], axis=1)
        names = set(table.column_names)
        #: production vertex relative to the primary vertex [mm], (N, 3); NaN if unknown
        self.v = (np.stack([flat(c, np.float64) for c in VERTEX_COLUMNS], axis=1)
                  if names.issuperset(VERTEX_COLUMNS)
                  else np.full((len(self.p), 3), np.nan))
        self.pid = flat("fs_pid", np.int64)
        self.tag = flat("fs_tau", np.int64)
        self.pt = np.hypot(self.p[:, 0], self.p[:, 1])
        with np.errstate(divide="ignore", invalid="ignore"):
            self.abseta = np.abs(eta(self.p[:, 0], self.p[:, 1], self.p[:, 2]))
        self.abseta = np.nan_to_num(self.abseta, nan=np.inf, posinf=np.inf)
        self.q = charges(self.pid) if len(self.pid) else np.zeros(0)

    def esum(self, mask: NDArray[np.bool_], p: NDArray[np.float64] | None = None
             ) -> NDArray[np.float64]:
        """Per-event four-momentum sum of the masked particles (``p`` overrides momenta)."""
        mom = self.p if p is None else p
        return np.stack([np.bincount(self.evt[mask], mom[mask, c], minlength=self.n)
                         for c in range(4)], axis=1)


def _delta_r(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Delta R between rows of two (N, 4) momentum arrays."""
    return delta_r(a[:, 0], a[:, 1], a[:, 2], b[:, 0], b[:, 1], b[:, 2])


def _isolation(f: _Flat, cand: NDArray[np.int64], cfg: DetectorConfig) -> NDArray[np.float64]:
    """Relative isolation of the candidate particles: sum pT of other visible particles with
    pT > iso_pt_min within iso_dr, over the candidate's pT (card: Isolation module)."""
    if len(cand) == 0:
        return np.zeros(0)
    ev = f.evt[cand]
    start, size = f.offsets[ev], np.diff(f.offsets)[ev]
    owner = np.repeat(np.arange(len(cand)), size)
    other = np.repeat(start - np.cumsum(np.concatenate([[0], size[:-1]])), size) \
        + np.arange(size.sum())
    keep = (other != cand[owner]) & (f.pt[other] > cfg.iso_pt_min)
    owner, other = owner[keep], other[keep]
    near = _delta_r(f.p[cand[owner]], f.p[other]) < cfg.iso_dr
    iso = np.bincount(owner[near], f.pt[other[near]], minlength=len(cand))
    return iso / f.pt[cand]


def _events_digest(f: _Flat, event_id: NDArray[np.int64]) -> bytes:
    """128-bit BLAKE2b digest of a chunk's events: event ids, particle counts, four-momenta,
    PDG ids and tau-leg tags, as little-endian bytes (the same on every platform)."""
    h = hashlib.blake2b(digest_size=16, person=b"ditau-detector")
    for a, dtype in ((np.array([f.n, len(f.pid)]), "<i8"), (event_id, "<i8"),
                     (np.diff(f.offsets), "<i8"), (f.p, "<f8"), (f.pid, "<i8"),
                     (f.tag, "<i8")):
        h.update(np.ascontiguousarray(a, dtype=dtype).tobytes())
    return h.digest()


def stream_seed(table: pa.Table, config: DetectorConfig | None = None) -> np.random.SeedSequence:
    """The root of a chunk's random streams (module doc, *Random numbers*).

    ``config.seeding == "content"`` (default): ``SeedSequence([seed, k0, k1, k2, k3])`` with
    ``k`` the four 32-bit words of a digest of the chunk's events (event ids and particle
    lists), so chunks of different inputs get independent streams and the same chunk always
    the same. ``"event_id"``: ``SeedSequence([seed, first event id])`` (the earlier key).

    Args:
        table: the chunk (columns ``event_id`` and the particles group, as :func:`simulate`).
        config: the detector configuration (its ``seed`` and ``seeding``).

    Returns:
        The ``SeedSequence`` whose ``spawn(5)`` children feed :func:`simulate`.
    """
    return _stream_seed(_Flat(table), np.asarray(table.column("event_id"), dtype=np.int64),
                        config or DetectorConfig())


def _stream_seed(f: _Flat, event_id: NDArray[np.int64],
                 cfg: DetectorConfig) -> np.random.SeedSequence:
    if cfg.seeding == "event_id":
        return np.random.SeedSequence([cfg.seed, int(event_id[0]) if f.n else 0])
    key = np.frombuffer(_events_digest(f, event_id), dtype="<u4")
    return np.random.SeedSequence([cfg.seed, *(int(k) for k in key)])


def simulate(table: pa.Table, config: DetectorConfig | None = None,
             fake_taus: bool = False) -> Candidates:
    """Detector-level objects for one chunk of events (schema columns in ``INPUT_COLUMNS``).

    The random streams are seeded by the detector seed and a digest of the chunk's events
    (:func:`stream_seed`; module doc, *Random numbers*) and drawn in a fixed order that does
    not depend on the scale factors, so systematic variations reuse the same random numbers.
    Leptons and tau_had candidates carry their track's impact parameters
    (:data:`ditau.detector.impact.IP_FIELDS`, mm; NaN without vertices).
    """
    cfg = config or DetectorConfig()
    f = _Flat(table)
    n, npart = f.n, len(f.pid)
    event_id = np.asarray(table.column("event_id"), dtype=np.int64)
    # a fifth stream for the impact parameters: spawn(5) keeps the first four as spawn(4)
    streams = _stream_seed(f, event_id, cfg).spawn(5)
    r_part, r_eff, r_evt, r_jet, r_ip = (np.random.default_rng(s) for s in streams)
    z_part = r_part.standard_normal(npart)  # momentum smearing per particle
    u_part = r_eff.random(npart)  # efficiency per particle (tracking, lepton ID)
    u_tau = r_evt.random((n, 2))  # tau ID per leg
    z_soft = r_evt.standard_normal((n, 2))  # soft-term noise
    z_ip = r_ip.standard_normal((npart, 2))  # d0, z0 smearing per particle
    smear = 1.0 if cfg.smear else 0.0
    eff_on = cfg.efficiencies
    # impact parameters of every charged particle (NaN for neutrals)
    charged = np.flatnonzero(f.q != 0)
    ip_c = impact.smeared(f.v[charged], f.p[charged], f.q[charged], z_ip[charged], cfg.bz,
                          cfg.ip_resolution, smear)
    ip: dict[str, NDArray[np.float64]] = {}
    for k, v in ip_c.items():
        ip[k] = np.full(npart, np.nan)
        ip[k][charged] = v

    abspid = np.abs(f.pid)
    in_calo = f.abseta < cfg.calo_eta_max
    used = np.zeros(npart, dtype=bool)  # measured as part of a hard object (not soft)
    invisible = abspid == 13  # muons leave no calorimeter energy unless identified
    hard = np.zeros((n, 2))  # sum px, py of hard objects (MET)
    sumet = np.zeros(n)
    cov = np.zeros((n, 3))  # xx, xy, yy

    def add_cov(evt: NDArray[np.int64], p4: NDArray[np.float64],
                sigma_pt: NDArray[np.float64]) -> None:
        pt = np.hypot(p4[:, 0], p4[:, 1])
        with np.errstate(invalid="ignore", divide="ignore"):
            cx, cy = np.nan_to_num(p4[:, 0] / pt), np.nan_to_num(p4[:, 1] / pt)
        s2 = np.square(np.nan_to_num(sigma_pt))
        for k, w in enumerate((cx * cx, cx * cy, cy * cy)):
            cov[:, k] += np.bincount(evt, s2 * w, minlength=n)

    # --- leptons -------------------------------------------------------------------------
    is_lep = ((abspid == 11) | (abspid == 13)) & (f.pt > 10.0) & (f.abseta < cfg.track_eta_max)
    lep_idx = np.flatnonzero(is_lep)
    iso = _isolation(f, lep_idx, cfg)
    is_e = abspid[lep_idx] == 11
    iso_ok = iso < np.where(is_e, cfg.e_iso_max, cfg.mu_iso_max)
    pt_l, eta_l = f.pt[lep_idx], f.abseta[lep_idx]
    eff = np.where(is_e, res.electron_efficiency(pt_l, eta_l), res.muon_efficiency(pt_l, eta_l))
    id_ok = u_part[lep_idx] < eff if eff_on else np.ones(len(lep_idx), dtype=bool)
    sig_l = np.where(is_e, res.electron_resolution(pt_l, eta_l),
                     res.muon_resolution(pt_l, eta_l))
    p_l = f.p[lep_idx] * res.lognormal_factor(sig_l * smear, z_part[lep_idx])[:, None]
    sel_l = iso_ok & id_ok
    good = lep_idx[sel_l]
    used[good] = True
    invisible[good] = False
    ev_l = f.evt[good]
    hard += np.stack([np.bincount(ev_l, p_l[sel_l, c], minlength=n) for c in (0, 1)], axis=1)
    sumet += np.bincount(ev_l, np.hypot(p_l[sel_l, 0], p_l[sel_l, 1]), minlength=n)
    add_cov(ev_l, p_l[sel_l], sig_l[sel_l] * np.hypot(p_l[sel_l, 0], p_l[sel_l, 1]))
    leptons = records(np.bincount(ev_l, minlength=n), {
        **{c: p_l[sel_l, k] for k, c in enumerate(_C)},
        "charge": np.sign(f.q[good]).astype(np.int64),
        "flavour": abspid[good],
        **impact.take(ip, good),
    })

    # --- real tau_had legs ------------------------------------------------------------------
    is_trk_p = (f.q != 0) & (f.pt > cfg.track_pt_min) & (f.abseta < cfg.track_eta_max)
    trk_eff = res.track_efficiency(f.pt, f.abseta)
    is_trk = is_trk_p & ((u_part < trk_eff) if eff_on else True)
    sig_trk = res.track_resolution(f.pt, f.abseta)
    p_trk = f.p * res.lognormal_factor(sig_trk * smear, z_part)[:, None]
    is_gam = (f.pid == 22) & (f.abseta < cfg.track_eta_max)
    sig_gam = res.ecal_resolution(f.p[:, 3], f.abseta)
    p_gam = f.p * res.lognormal_factor(sig_gam * smear, z_part)[:, None]
    hadron = (f.q != 0) & (abspid != 11) & (abspid != 13)
    tau_rows: list[dict[str, NDArray[Any]]] = []
    for k, (tag, leg) in enumerate(((1, "p"), (-1, "m"))):
        on_leg = f.tag == tag
        hadronic = np.bincount(f.evt[on_leg & hadron], minlength=n) > 0
        trk = on_leg & is_trk
        n_trk = np.bincount(f.evt[trk], minlength=n)
        chg = f.esum(trk, p_trk) * cfg.tes
        i_trk = np.flatnonzero(trk)  # the leading (measured pT) track of each leg
        lead = impact.leading(f.evt[i_trk], i_trk, np.hypot(p_trk[i_trk, 0], p_trk[i_trk, 1]),
                              n)
        gam = on_leg & is_gam
        neu = f.esum(gam, p_gam)
        # the cluster threshold acts on the raw cluster, before the tau energy calibration
        cluster = np.hypot(neu[:, 0], neu[:, 1]) > cfg.pi0_et_min
        neu = neu * cfg.tes
        n_pi0 = np.asarray(table.column(f"n_pi0_{leg}"), dtype=np.int64)
        n_neu = np.where(cluster, np.maximum(n_pi0, 1), 0)
        neu = np.where(cluster[:, None], neu, 0.0)
        charge = np.bincount(f.evt[trk], f.q[trk], minlength=n)
        eff_id = res.tau_id_efficiency(n_trk)
        ident = hadronic & (n_trk > 0) & ((u_tau[:, k] < eff_id) if eff_on else True)
        # The identified tau's measured particles; its other products (lost tracks,
        # sub-threshold photons, neutral hadrons) stay unclustered and join the soft term.
        mine = ident[f.evt] & on_leg
        used |= mine & (is_trk | (is_gam & cluster[f.evt]))
        # A failed-ID tau is an ordinary jet: its particles are left to the jet finder.
        sel = np.flatnonzero(ident)
        vis = chg[sel] + neu[sel]
        hard[sel] += vis[:, :2]
        sumet[sel] += np.hypot(vis[:, 0], vis[:, 1])
        pt_chg = np.hypot(chg[sel, 0], chg[sel, 1])
        sig_c = res.track_resolution(pt_chg, np.abs(eta(chg[sel, 0], chg[sel, 1], chg[sel, 2])))
        add_cov(sel, chg[sel], sig_c * pt_chg)
        pt_neu = np.hypot(neu[sel, 0], neu[sel, 1])
        with np.errstate(divide="ignore", invalid="ignore"):
            eta_neu = np.nan_to_num(np.abs(eta(neu[sel, 0], neu[sel, 1], neu[sel, 2])))
        add_cov(sel, neu[sel], res.ecal_resolution(neu[sel, 3], eta_neu) * pt_neu)
        tau_rows.append({
            "evt": sel,
            **{f"chg_{c}": chg[sel, j] for j, c in enumerate(_C)},
            **{f"neu_{c}": neu[sel, j] for j, c in enumerate(_C)},
            "n_tracks": n_trk[sel], "n_neu": n_neu[sel], "charge": charge[sel],
            "fake_weight": np.ones(len(sel)), "origin": np.full(len(sel), ORIGIN_REAL),
            **impact.take(ip, lead[sel]),
        })

    lost_lepton = np.zeros(npart, dtype=bool)
    if fake_taus:
        # Unselected leptons (failed ID or the tight isolation) that still dominate their
        # surroundings (cone pT below their own): 1-track tau candidates.
        lost_sel = ~sel_l & (iso < cfg.fake_lepton_iso_max)
        lost = lep_idx[lost_sel]
        lost_lepton[lost] = True
        lost_p = p_l[lost_sel] * cfg.tes
        is_el = abspid[lost] == 11
        tau_rows.append({
            "evt": f.evt[lost],
            **{f"chg_{c}": lost_p[:, j] for j, c in enumerate(_C)},
            **{f"neu_{c}": np.zeros(len(lost)) for c in _C},
            "n_tracks": np.ones(len(lost), dtype=np.int64),
            "n_neu": np.zeros(len(lost), dtype=np.int64),
            "charge": f.q[lost],
            "fake_weight": np.where(is_el, res.ELECTRON_FAKE_RATE, res.MUON_FAKE_RATE),
            "origin": np.where(is_el, ORIGIN_E, ORIGIN_MU),
            **impact.take(ip, lost),
        })

    # --- jets ----------------------------------------------------------------------------
    jet_in = in_calo & ~used & ~(abspid == 13)
    jets, jet_rows = _jets(f, jet_in, cfg, r_jet, smear, u_part, eff_on, is_trk_p, p_trk,
                           is_gam, p_gam, fake_taus, lost_lepton, ip)
    jet_pt = np.hypot(jets["p"][:, 0], jets["p"][:, 1])
    hard_jet = jet_pt > cfg.jet_met_pt_min
    used[jets["constituents"][hard_jet[jets["owner"]]]] = True
    jev = jets["evt"][hard_jet]
    hard += np.stack([np.bincount(jev, jets["p"][hard_jet, c], minlength=n) for c in (0, 1)],
                     axis=1)
    sumet += np.bincount(jev, jet_pt[hard_jet], minlength=n)
    add_cov(jev, jets["p"][hard_jet], jets["sigma"][hard_jet] * jet_pt[hard_jet])
    tau_rows += jet_rows

    # --- soft term and MET -------------------------------------------------------------------
    soft_mask = in_calo & ~used & ~invisible
    soft = f.esum(soft_mask)[:, :2] * cfg.soft_met_scale
    soft_et = np.bincount(f.evt[soft_mask], f.pt[soft_mask], minlength=n) * cfg.soft_met_scale
    sigma_soft = cfg.soft_met_k * np.sqrt(soft_et) * cfg.soft_met_resolution
    soft = soft + smear * sigma_soft[:, None] * z_soft
    met = -(hard + soft)
    cov[:, 0] += sigma_soft**2
    cov[:, 2] += sigma_soft**2
    met_cols = {"met_x": met[:, 0], "met_y": met[:, 1], "met_sumet": sumet + soft_et,
                "met_cov_xx": cov[:, 0], "met_cov_xy": cov[:, 1], "met_cov_yy": cov[:, 2]}

    taus = _tau_records(tau_rows, n)
    jet_list = records(np.bincount(jets["evt"], minlength=n),
                       {c: jets["p"][:, k] for k, c in enumerate(_C)})
    return Candidates(leptons=sort_by_pt(leptons), taus=sort_by_pt(taus, "vis_px", "vis_py"),
                      jets=sort_by_pt(jet_list), met=met_cols, event_id=event_id)


def _tau_records(rows: list[dict[str, NDArray[Any]]], n: int) -> ak.Array:
    """Merge the tau candidate blocks into per-event record lists (with vis_px/py)."""
    cat = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    order = np.argsort(cat["evt"], kind="stable")
    fields = {k: v[order] for k, v in cat.items() if k != "evt"}
    for k in ("n_tracks", "n_neu", "charge", "origin"):
        fields[k] = fields[k].astype(np.int64)
    fields["vis_px"] = fields["chg_px"] + fields["neu_px"]
    fields["vis_py"] = fields["chg_py"] + fields["neu_py"]
    return records(np.bincount(cat["evt"][order], minlength=n), fields)


_BANNER_SHOWN = False


def _cluster(parts: ak.Array, r: float) -> Any:
    """fastjet anti-kt clustering; FastJet's one-time C++ banner is kept off stdout (it would
    corrupt command output such as ``ditau yields``); the citation is in the module docs."""
    global _BANNER_SHOWN
    import fastjet

    jet_def = fastjet.JetDefinition(fastjet.antikt_algorithm, r)
    if _BANNER_SHOWN:
        return fastjet.ClusterSequence(parts, jet_def)
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            seq = fastjet.ClusterSequence(parts, jet_def)
            seq.inclusive_jets()  # the banner is printed at the first clustering
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    _BANNER_SHOWN = True
    return seq


def _jets(f: _Flat, mask: NDArray[np.bool_], cfg: DetectorConfig, rng: np.random.Generator,
          smear: float, u_part: NDArray[np.float64], eff_on: bool,
          is_trk_p: NDArray[np.bool_], p_trk: NDArray[np.float64],
          is_gam: NDArray[np.bool_], p_gam: NDArray[np.float64], fake_taus: bool,
          lost_lepton: NDArray[np.bool_], ip: dict[str, NDArray[np.float64]],
          ) -> tuple[dict[str, NDArray[Any]], list[dict[str, NDArray[Any]]]]:
    """anti-kt jets (fastjet) of the masked particles, smeared; fake tau candidates (with the
    impact parameters ``ip`` of their leading core track).

    A jet carried mostly (> 50 % of its pT) by an unidentified lepton is not a jet -> tau
    candidate: that lepton already is a lepton -> tau candidate (no double counting).
    """
    idx = np.flatnonzero(mask)
    counts = np.bincount(f.evt[idx], minlength=f.n)
    parts = ak.unflatten(ak.zip({c: f.p[idx, k] for k, c in
                                 enumerate(("px", "py", "pz", "E"))}), counts)
    seq = _cluster(parts, cfg.jet_r)
    jets = seq.inclusive_jets(min_pt=cfg.jet_cluster_pt_min)
    cons = seq.constituent_index(min_pt=cfg.jet_cluster_pt_min)
    njet = ak.to_numpy(ak.num(jets)).astype(np.int64)
    jevt = np.repeat(np.arange(f.n), njet)
    p = np.stack([ak.to_numpy(ak.flatten(jets[c])) for c in ("px", "py", "pz", "E")], axis=1) \
        if len(jevt) else np.zeros((0, 4))
    # constituents: local index within the event's masked list -> global particle index
    ncons = ak.to_numpy(ak.flatten(ak.num(cons, axis=2))).astype(np.int64) \
        if len(jevt) else np.zeros(0, np.int64)
    local = ak.to_numpy(ak.flatten(cons, axis=None)).astype(np.int64)
    owner = np.repeat(np.arange(len(jevt)), ncons)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    constituents = idx[first[jevt[owner]] + local]
    pt = np.hypot(p[:, 0], p[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        abseta = np.nan_to_num(np.abs(eta(p[:, 0], p[:, 1], p[:, 2])))
    sigma = res.jet_resolution(pt, abseta)
    z = rng.standard_normal(len(jevt))
    p = p * (res.lognormal_factor(sigma * smear, z) * cfg.jes)[:, None]
    out = {"p": p, "evt": jevt, "sigma": sigma, "constituents": constituents, "owner": owner}
    if not fake_taus:
        return out, []
    # Fake tau candidates from the jet cores (dR < 0.2, card: TauTagging DeltaRTrack).
    pt = np.hypot(p[:, 0], p[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        abseta = np.nan_to_num(np.abs(eta(p[:, 0], p[:, 1], p[:, 2])), nan=np.inf)
    core = _delta_r(f.p[constituents], p[owner]) < 0.2
    trk = core & is_trk_p[constituents] & ((u_part[constituents] < res.track_efficiency(
        f.pt[constituents], f.abseta[constituents])) if eff_on else True)
    gam = core & is_gam[constituents]
    nj = len(jevt)

    def jsum(sel: NDArray[np.bool_], mom: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.stack([np.bincount(owner[sel], mom[constituents[sel], c], minlength=nj)
                         for c in range(4)], axis=1)

    chg = jsum(trk, p_trk) * cfg.tes
    neu = jsum(gam, p_gam)
    cluster = np.hypot(neu[:, 0], neu[:, 1]) > cfg.pi0_et_min
    neu = neu * cfg.tes
    neu = np.where(cluster[:, None], neu, 0.0)
    n_trk = np.bincount(owner[trk], minlength=nj)
    charge = np.bincount(owner[trk], f.q[constituents[trk]], minlength=nj)
    c_trk = constituents[trk]
    lead = impact.leading(owner[trk], c_trk, np.hypot(p_trk[c_trk, 0], p_trk[c_trk, 1]), nj)
    lep = lost_lepton[constituents]
    lep_pt = np.bincount(owner[lep], f.pt[constituents[lep]], minlength=nj)
    ok = (abseta < cfg.track_eta_max) & (n_trk > 0) & (lep_pt < 0.5 * pt)
    row = {
        "evt": jevt[ok],
        **{f"chg_{c}": chg[ok, k] for k, c in enumerate(_C)},
        **{f"neu_{c}": neu[ok, k] for k, c in enumerate(_C)},
        "n_tracks": n_trk[ok], "n_neu": cluster[ok].astype(np.int64), "charge": charge[ok],
        "fake_weight": res.jet_fake_rate(n_trk[ok]), "origin": np.full(ok.sum(), ORIGIN_JET),
        **impact.take(ip, lead[ok]),
    }
    return out, [row]
