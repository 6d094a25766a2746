"""Delphes ROOT files -> ditau events (``id``, ``reco`` and, with ``Particle``, ``truth``).

A Delphes file has one tree ``Delphes``; each collection ``X`` is a split TClonesArray with
leaves ``X/X.Field`` and a count ``X_size``. Branch names are resolved per file and per field,
in this order: ``X/X.Field`` (real Delphes, or a flat branch of that name), ``X.Field`` (what
``uproot`` writes with ``field_name=lambda c, f: f"{c}.{f}"``; uproot cannot write split
branches, only flat ones) and ``X_Field`` (uproot's default naming). Counts are not needed:
the jagged leaves carry them.

The files are streamed in chunks (``uproot.iterate``, one file after the other, so every
error names its file). Each chunk becomes a :class:`~ditau.detector.candidates.Candidates`
and :func:`ditau.select.select` makes the reco columns, exactly as for the parametric detector.

Objects
    * leptons: ``Electron`` and ``Muon`` (``PT, Eta, Phi, Charge``) with PDG masses, flavour
      11/13;
    * tau_had candidates: ``Jet`` entries with ``TauTag & 1``; charge ``Jet.Charge``; origin 0
      (unknown at Delphes level), fake weight 1 (Delphes' tagging already applied fake rates);
    * jets: the other ``Jet`` entries (``PT, Eta, Phi, Mass``);
    * MET: ``MissingET`` (``MET, Phi``); sum E_T: ``ScalarHT.HT``.

Documented fallbacks (each recorded per input file in the output metadata, key ``inputs``):

``tau_split``
    ``"constituents"`` when a track collection (``EFlowTrack``, else ``Track``) and
    ``EFlowPhoton`` exist: the charged part is the sum of tracks with pT > 1 GeV within
    Delta R < 0.2 of the jet axis (pion mass), ``n_tracks`` their number; the neutral part the
    sum of the EFlowPhotons within Delta R < 0.2, kept (``n_neu`` = 1) when its E_T exceeds
    1 GeV, else zero (``n_neu`` = 0). The visible tau is then the core-cone sum, not the jet.
    ``"jet"`` otherwise: charged part = the jet four-momentum, ``n_tracks = Jet.NCharged``,
    no neutral part: every 1-prong candidate is then a "pi", so rho/pi separation is lost.
``met``
    ``"MissingET"``; else ``"eflow"``: MET = -(vector sum of EFlowTrack, EFlowPhoton and
    EFlowNeutralHadron pT) (what Delphes' MissingET module computes from the EFlow inputs in the
    ATLAS card); with neither a :class:`DelphesError`.
``sumet``
    ``"ScalarHT"``; else ``"object_pt_sum"``: the scalar pT sum of Jet, Electron, Muon and
    Photon entries present (the inputs of Delphes' ScalarHT module in the ATLAS card).
``met_covariance``
    Delphes has none. The parametric soft-term model of the project: diagonal
    sigma^2 = k^2 sum E_T per component with k = 0.5 GeV^1/2 (ATLAS Run-1 MET resolution,
    EPJC 72 (2012) 1844), off-diagonal 0, applied to the whole ``met_sumet``.
``missing``
    ``Electron``/``Muon`` absent: an error naming them, unless ``allow_missing`` lists them
    (then those lepton lists are empty; recorded). ``Jet`` absent: always an error.
``gen_weight``
    ``Event.Weight`` (first entry) if present, else 1.
``truth``
    filled only when every input has a usable ``Particle`` collection (one output schema);
    otherwise omitted for all files, with the reason in the metadata. The ``particles`` group
    (visible final state) is never filled: Delphes output is not re-run through the detector.

Normalisation: with ``cross_section_pb`` the weight is sigma [fb] x gen_weight / sum of
gen_weight over all input events (= sigma x 1000 / N_total for unweighted files; the division
by the weight sum makes it right also for files whose weights carry a cross section, e.g.
LHE-based samples in pb). The weight sum is read before the events are (one small branch).
Without a cross section the weight is 1 and the metadata says ``"unnormalised"``.

Truth from ``Particle`` (indices M1/M2/D1/D2 are 0-based within the event, -1 = none;
daughters are the range D1..D2, or the two entries D1 and D2 when D2 < D1). Status codes are
those of the Pythia 8 HepMC record (1 final, 2 decayed, 21 incoming partons of the hardest
process): per event and charge the most energetic tau whose daughters include a nu_tau (the
last copy before its decay); its direct daughters give the neutrinos, charged (``Charge`` != 0)
and neutral visible products, counts and the decay mode (as :mod:`ditau.generate.truth`). Legs
without such a tau: NaN momenta, zero counts, mode "other". ``hard_id1/2``: the status-21
partons moving along +z / -z (0 when absent); ``m_hat``: their invariant mass (0 when
absent); ``quark_pz_sign`` as in :mod:`ditau.generate.truth`; ``nu_other``: final-state
neutrinos not descending (through M1) from the two taus; ``vis_out``: visible final particles
with |eta| >= 5 (the generate stage's default stored range).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final

import awkward as ak
import numpy as np
import pyarrow as pa
import uproot
from numpy.typing import NDArray
from particle import Particle as _PDG

from ditau.detector.candidates import LEPTON_FIELDS, Candidates, records
from ditau.generate.truth import leg_columns
from ditau.physics import M_PI, channel_of
from ditau.schema import EventWriter, arrow_schema, check_writable
from ditau.select import SelectConfig, select

TREE: Final[str] = "Delphes"
#: tau_had core cone and track threshold (ATLAS tau reconstruction, EPJC 76 (2016) 295,
#: Sec. 4: tracks with pT > 1 GeV within Delta R < 0.2 of the axis; card: TauTagging).
TAU_CONE_DR: Final[float] = 0.2
TRACK_PT_MIN: Final[float] = 1.0
#: Neutral (pi0) cluster kept when the photon sum in the core cone has E_T above this [GeV]
#: (threshold set by the project for the Delphes reader; labelled a choice).
NEUTRAL_ET_MIN: Final[float] = 1.0
#: MET resolution per component sigma = k sqrt(sum E_T), k = 0.5 GeV^1/2 (ATLAS Run-1 MET
#: performance, EPJC 72 (2012) 1844, Sec. 6; the project's parametric soft-term model).
MET_RESOLUTION_K: Final[float] = 0.5
#: |eta| range of the generate stage's stored final state (GenerateConfig.particle_eta_max).
TRUTH_ETA_MAX: Final[float] = 5.0
#: Collections that ``allow_missing`` may name.
ALLOWABLE_MISSING: Final[tuple[str, ...]] = ("Electron", "Muon")
#: PDG masses in GeV (the ``particle`` package stores MeV).
M_E: Final[float] = _PDG.from_pdgid(11).mass / 1000.0
M_MU: Final[float] = _PDG.from_pdgid(13).mass / 1000.0

_P4: Final[tuple[str, ...]] = ("px", "py", "pz", "e")
_NEUTRINOS: Final[tuple[int, ...]] = (12, 14, 16)

#: Fields read per collection.
_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "Jet": ("PT", "Eta", "Phi", "Mass", "TauTag", "Charge"),
    "Electron": ("PT", "Eta", "Phi", "Charge"),
    "Muon": ("PT", "Eta", "Phi", "Charge"),
    "MissingET": ("MET", "Phi"),
    "ScalarHT": ("HT",),
    "EFlowTrack": ("PT", "Eta", "Phi"),
    "Track": ("PT", "Eta", "Phi"),
    "EFlowPhoton": ("ET", "Eta", "Phi"),
    "EFlowNeutralHadron": ("ET", "Eta", "Phi"),
    "Photon": ("PT",),
    "Event": ("Weight",),
    "Particle": ("PID", "Status", "M1", "D1", "D2", "Charge", "Px", "Py", "Pz", "E"),
}


class DelphesError(ValueError):
    """A Delphes input cannot be read or lacks what the import needs; the message says which
    file and what."""


# --------------------------------------------------------------------------------------------
# Planning: open each file, resolve branch names, decide the fallbacks.


@dataclass
class _FilePlan:
    path: Path
    entries: int
    keys: dict[tuple[str, str], str]
    present: set[str]
    tracks: str | None
    tau_split: str
    met: str
    sumet: str
    missing_allowed: tuple[str, ...]
    truth: bool
    notes: list[str] = field(default_factory=list)

    def key(self, coll: str, fld: str) -> str:
        return self.keys[(coll, fld)]

    def info(self) -> dict[str, Any]:
        return {"file": str(self.path), "entries": self.entries, "tau_split": self.tau_split,
                "track_collection": self.tracks, "met": self.met, "sumet": self.sumet,
                "missing_allowed": list(self.missing_allowed),
                "gen_weight": "Event.Weight" if "Event" in self.present else "1",
                "particle_truth": self.truth, "notes": self.notes}


def _resolve(names: set[str], coll: str, fld: str) -> str | None:
    for cand in (f"{coll}/{coll}.{fld}", f"{coll}.{fld}", f"{coll}_{fld}"):
        if cand in names:
            return cand
    return None


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


@contextmanager
def _open_tree(path: Path) -> Iterator[Any]:
    """The file's ``Delphes`` TTree (the file is closed on exit)."""
    if not path.exists():
        raise DelphesError(f"{path}: no such file")
    if not path.is_file():
        raise DelphesError(f"{path}: not a file")
    try:
        f = uproot.open(path)
    except Exception as err:  # uproot raises OSError, ValueError, struct/deserialisation errors
        raise DelphesError(f"{path}: not a readable ROOT file (truncated or corrupt?): "
                           f"{type(err).__name__}: {_one_line(err)}") from err
    with f:
        try:
            names = f.keys(cycle=False)
            if TREE not in names:
                shown = ", ".join(sorted(set(names))[:10]) or "none: the file is empty"
                raise DelphesError(f"{path}: no '{TREE}' tree, so not a Delphes output file "
                                   f"(objects in the file: {shown})")
            tree = f[TREE]
        except DelphesError:
            raise
        except Exception as err:
            raise DelphesError(f"{path}: cannot read the '{TREE}' tree "
                               f"({type(err).__name__}: {_one_line(err)})") from err
        if not isinstance(tree, uproot.TTree):
            raise DelphesError(f"{path}: '{TREE}' is a {type(tree).__name__}, not a TTree")
        yield tree


def _plan(path: Path, allow_missing: tuple[str, ...]) -> tuple[_FilePlan | None, list[str]]:
    """The file's plan, or None and the list of problems (missing collections/branches)."""
    try:
        with _open_tree(path) as tree:
            names = set(tree.keys())
            entries = int(tree.num_entries)
    except DelphesError:
        raise
    except Exception as err:
        raise DelphesError(f"{path}: cannot list the branches of '{TREE}' "
                           f"({type(err).__name__}: {_one_line(err)})") from err
    keys: dict[tuple[str, str], str] = {}
    present: set[str] = set()
    incomplete: dict[str, list[str]] = {}
    for coll, fields in _FIELDS.items():
        found = {f: _resolve(names, coll, f) for f in fields}
        anything = any(found.values()) or coll in names or f"{coll}_size" in names
        if not anything:
            continue
        lacking = [f"{coll}.{f}" for f, k in found.items() if k is None]
        if lacking:
            incomplete[coll] = lacking
            continue
        present.add(coll)
        keys.update({(coll, f): k for f, k in found.items() if k is not None})
    ncharged = _resolve(names, "Jet", "NCharged")

    missing: list[str] = []
    # Required collections that exist but lack fields are errors; optional ones are dropped.
    problems = [f"{c} without {', '.join(incomplete[c])}" for c in ("Jet", "Electron", "Muon")
                if c in incomplete]
    if "Jet" not in present and "Jet" not in incomplete:
        missing.append("Jet")
    allowed = []
    for coll in ("Electron", "Muon"):
        if coll not in present and coll not in incomplete:
            if coll in allow_missing:
                allowed.append(coll)
            else:
                missing.append(coll)
    tracks = next((c for c in ("EFlowTrack", "Track") if c in present), None)
    tau_split = "constituents" if tracks and "EFlowPhoton" in present else "jet"
    if tau_split == "jet" and "Jet" in present:
        if ncharged is None:
            problems.append("Jet.NCharged (needed without EFlowTrack/Track + EFlowPhoton)")
        else:
            keys[("Jet", "NCharged")] = ncharged
    eflow = ("EFlowTrack", "EFlowPhoton", "EFlowNeutralHadron")
    if "MissingET" in present:
        met = "MissingET"
    elif all(c in present for c in eflow):
        met = "eflow"
    else:
        met = "none"
        lacking = [c for c in eflow if c not in present]
        what = (f"MissingET without {', '.join(incomplete['MissingET'])}"
                if "MissingET" in incomplete else "MissingET")
        missing.append(f"{what} (fallback from {', '.join(eflow)} impossible: "
                       f"{', '.join(lacking)} missing)")
    sumet = "ScalarHT" if "ScalarHT" in present else "object_pt_sum"
    if missing or problems:
        msgs = []
        if missing:
            msgs.append(f"missing Delphes collection(s) {', '.join(missing)}")
        if problems:
            msgs.append(f"missing branch(es): {'; '.join(problems)}")
        only_leptons = missing and all(m in ALLOWABLE_MISSING for m in missing) and not problems
        hint = (f" (pass allow_missing={tuple(m for m in missing)!r} to read it without "
                "them)") if only_leptons else ""
        return None, [f"{path}: {' and '.join(msgs)}{hint}"]
    notes = [f"{coll} ignored: lacks {', '.join(lacking)}" for coll, lacking in incomplete.items()
             if coll not in ("Jet", "Electron", "Muon")]
    return _FilePlan(path, entries, keys, present, tracks, tau_split, met, sumet,
                     tuple(allowed), "Particle" in present, notes), []


def _gen_weight_sum(plan: _FilePlan) -> float:
    """Sum of the file's generator weights (N when there are none)."""
    if "Event" not in plan.present:
        return float(plan.entries)
    try:
        with _open_tree(plan.path) as tree:
            arr = tree[plan.key("Event", "Weight")].array()
    except DelphesError:
        raise
    except Exception as err:
        raise DelphesError(f"{plan.path}: cannot read Event.Weight ({type(err).__name__}: "
                           f"{_one_line(err)})") from err
    return float(np.sum(_firsts(arr, 1.0)))


# --------------------------------------------------------------------------------------------
# Per-chunk conversion.


def _f64(x: ak.Array) -> ak.Array:
    return ak.values_astype(x, np.float64)


def _firsts(x: ak.Array, default: float) -> NDArray[np.float64]:
    """First entry of each event's list (``default`` where empty), e.g. MissingET.MET."""
    return ak.to_numpy(ak.fill_none(ak.firsts(_f64(x)), default)).astype(np.float64)


Flat = NDArray[np.float64]


def _p4(pt: Flat, eta: Flat, phi: Flat, mass: float | Flat) -> dict[str, Flat]:
    # px = pT cos phi, py = pT sin phi, pz = pT sinh eta, E = sqrt((pT cosh eta)^2 + m^2)
    return {"px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(eta),
            "e": np.hypot(pt * np.cosh(eta), mass)}


@dataclass
class _Coll:
    """One collection of a chunk as flat per-object arrays grouped by event."""

    counts: NDArray[np.int64]
    fields: dict[str, Flat]

    @property
    def evt(self) -> NDArray[np.int64]:
        return np.repeat(np.arange(len(self.counts)), self.counts)

    @property
    def offsets(self) -> NDArray[np.int64]:
        return np.concatenate([[0], np.cumsum(self.counts)])[:-1]

    def __getitem__(self, name: str) -> Flat:
        return self.fields[name]


class _Chunk:
    """One chunk's arrays with the file's branch names resolved."""

    def __init__(self, arrays: ak.Array, plan: _FilePlan) -> None:
        self.arrays = arrays
        self.plan = plan
        self.n = len(arrays)

    def get(self, coll: str, fld: str) -> ak.Array:
        return _f64(self.arrays[self.plan.key(coll, fld)])

    def coll(self, coll: str, fields: Sequence[str]) -> _Coll:
        counts = None
        flat: dict[str, Flat] = {}
        for f in fields:
            arr = self.arrays[self.plan.key(coll, f)]
            num = ak.to_numpy(ak.num(arr, axis=1)).astype(np.int64)
            if counts is None:
                counts = num
            elif not np.array_equal(num, counts):
                raise DelphesError(f"{self.plan.path}: collection {coll}: {coll}.{f} has other "
                                   f"per-event lengths than {coll}.{fields[0]}")
            flat[f] = ak.to_numpy(ak.flatten(arr, axis=1)).astype(np.float64)
        assert counts is not None
        return _Coll(counts, flat)


def _grouped(evt: NDArray[np.int64], pt: Flat, n: int, fields: dict[str, Flat]) -> ak.Array:
    """Per-event record lists from flat objects (event ``evt``), sorted by decreasing pT."""
    order = np.lexsort((-pt, evt))
    return records(np.bincount(evt, minlength=n), {k: v[order] for k, v in fields.items()})


def _leptons(ch: _Chunk) -> ak.Array:
    parts: list[tuple[NDArray[np.int64], dict[str, Flat]]] = []
    for coll, mass, flavour in (("Electron", M_E, 11.0), ("Muon", M_MU, 13.0)):
        if coll not in ch.plan.present:
            continue
        c = ch.coll(coll, ("PT", "Eta", "Phi", "Charge"))
        rec = _p4(c["PT"], c["Eta"], c["Phi"], mass)
        rec["charge"] = c["Charge"]
        rec["flavour"] = np.full(len(c["PT"]), flavour)
        parts.append((c.evt, rec))
    evt = np.concatenate([e for e, _ in parts] + [np.zeros(0, np.int64)])
    fields = {f: np.concatenate([r[f] for _, r in parts] + [np.zeros(0)])
              for f in LEPTON_FIELDS}
    return _grouped(evt, np.hypot(fields["px"], fields["py"]), ch.n, fields)


def _cone_sum(t_evt: NDArray[np.int64], t_eta: Flat, t_phi: Flat, objs: _Coll, pt: str,
              mass: float, pt_min: float) -> tuple[dict[str, Flat], NDArray[np.int64]]:
    """Per tau axis, the four-momentum sum (objects of mass ``mass``) and the number of the
    objects (fields ``pt``, Eta, Phi) of its event with pT > ``pt_min`` within Delta R <
    TAU_CONE_DR. Objects with pT = 0 (Delphes stores Eta = 999.9 for them) never count."""
    ntau = len(t_evt)
    k = objs.counts[t_evt]  # candidate objects per tau: all of its event
    pair_t = np.repeat(np.arange(ntau), k)
    start = np.cumsum(k) - k
    pair_o = objs.offsets[t_evt][pair_t] + np.arange(len(pair_t)) - start[pair_t]
    o_pt, o_eta, o_phi = objs[pt][pair_o], objs["Eta"][pair_o], objs["Phi"][pair_o]
    dphi = (o_phi - t_phi[pair_t] + np.pi) % (2 * np.pi) - np.pi  # wrapped to [-pi, pi)
    # Delta R^2 = Delta eta^2 + Delta phi^2
    inside = (o_pt > max(pt_min, 0.0)) & ((o_eta - t_eta[pair_t]) ** 2 + dphi**2
                                          < TAU_CONE_DR**2)
    t = pair_t[inside]
    p4 = _p4(o_pt[inside], o_eta[inside], o_phi[inside], mass)
    return ({c: np.bincount(t, p4[c], minlength=ntau) for c in _P4},
            np.bincount(t, minlength=ntau))


def _taus_and_jets(ch: _Chunk) -> tuple[ak.Array, ak.Array, Flat]:
    """tau_had candidates, other jets, and the per-event jet pT sum (for the sum E_T
    fallback)."""
    fields = ["PT", "Eta", "Phi", "Mass", "Charge", "TauTag"]
    if ch.plan.tau_split == "jet":
        fields.append("NCharged")
    jet = ch.coll("Jet", fields)
    evt = jet.evt
    tagged = (jet["TauTag"].astype(np.int64) & 1) != 0  # TauTag bit 0: tau-tagged
    p4 = _p4(jet["PT"], jet["Eta"], jet["Phi"], jet["Mass"])
    jets = _grouped(evt[~tagged], jet["PT"][~tagged], ch.n, {c: p4[c][~tagged] for c in _P4})
    t_evt = evt[tagged]
    ntau = len(t_evt)
    if ch.plan.tau_split == "constituents":
        trk = ch.coll(ch.plan.tracks or "EFlowTrack", ("PT", "Eta", "Phi"))
        pho = ch.coll("EFlowPhoton", ("ET", "Eta", "Phi"))
        t_eta, t_phi = jet["Eta"][tagged], jet["Phi"][tagged]
        # tracks: charged-pion mass hypothesis; photons: massless
        chg, n_tracks = _cone_sum(t_evt, t_eta, t_phi, trk, "PT", M_PI, TRACK_PT_MIN)
        neu, _ = _cone_sum(t_evt, t_eta, t_phi, pho, "ET", 0.0, 0.0)
        # E_T of the neutral sum = E sin(theta) = E pT / |p|
        npt = np.hypot(neu["px"], neu["py"])
        nabs = np.hypot(npt, neu["pz"])
        net = np.divide(neu["e"] * npt, nabs, out=np.zeros(ntau), where=nabs > 0)
        has_neu = net > NEUTRAL_ET_MIN
        neu = {c: np.where(has_neu, v, 0.0) for c, v in neu.items()}
        n_neu = has_neu.astype(np.float64)
        n_trk = n_tracks.astype(np.float64)
    else:
        chg = {c: p4[c][tagged] for c in _P4}
        neu = {c: np.zeros(ntau) for c in _P4}
        n_trk, n_neu = jet["NCharged"][tagged], np.zeros(ntau)
    rec = {f"chg_{c}": chg[c] for c in _P4}
    rec.update({f"neu_{c}": neu[c] for c in _P4})
    rec.update({"n_tracks": n_trk, "n_neu": n_neu, "charge": jet["Charge"][tagged],
                "fake_weight": np.ones(ntau), "origin": np.zeros(ntau)})
    vis_pt = np.hypot(chg["px"] + neu["px"], chg["py"] + neu["py"])
    taus = _grouped(t_evt, vis_pt, ch.n, rec)
    return taus, jets, np.bincount(evt, jet["PT"], minlength=ch.n)


def _met(ch: _Chunk, jet_pt_sum: Flat, leptons: ak.Array) -> dict[str, Flat]:
    plan = ch.plan
    if plan.met == "MissingET":
        met = _firsts(ch.get("MissingET", "MET"), 0.0)
        phi = _firsts(ch.get("MissingET", "Phi"), 0.0)
        mx, my = met * np.cos(phi), met * np.sin(phi)
    else:
        mx, my = np.zeros(ch.n), np.zeros(ch.n)
        for coll, pt in (("EFlowTrack", "PT"), ("EFlowPhoton", "ET"),
                         ("EFlowNeutralHadron", "ET")):
            c = ch.coll(coll, (pt, "Phi"))
            # MET = -(vector sum of the energy-flow objects' pT)
            mx -= np.bincount(c.evt, c[pt] * np.cos(c["Phi"]), minlength=ch.n)
            my -= np.bincount(c.evt, c[pt] * np.sin(c["Phi"]), minlength=ch.n)
    if plan.sumet == "ScalarHT":
        sumet = _firsts(ch.get("ScalarHT", "HT"), 0.0)
    else:
        # Scalar pT sum of the ScalarHT module's inputs (jets, electrons, muons, photons).
        lep_pt = ak.to_numpy(ak.sum(np.hypot(leptons.px, leptons.py), axis=1))
        sumet = jet_pt_sum + lep_pt.astype(np.float64)
        if "Photon" in plan.present:
            c = ch.coll("Photon", ("PT",))
            sumet = sumet + np.bincount(c.evt, c["PT"], minlength=ch.n)
    var = MET_RESOLUTION_K**2 * sumet  # sigma^2 = k^2 sum E_T (EPJC 72 (2012) 1844)
    return {"met_x": mx, "met_y": my, "met_sumet": sumet, "met_cov_xx": var,
            "met_cov_xy": np.zeros(ch.n), "met_cov_yy": var.copy()}


def _candidates(ch: _Chunk, event_id: NDArray[np.int64]) -> Candidates:
    leptons = _leptons(ch)
    taus, jets, jet_pt_sum = _taus_and_jets(ch)
    return Candidates(leptons=leptons, taus=taus, jets=jets,
                      met=_met(ch, jet_pt_sum, leptons), event_id=event_id)


# --------------------------------------------------------------------------------------------
# Truth from the Particle collection (vectorised over the chunk's flattened record).


def _take(arr: NDArray, idx: NDArray[np.int64], fill: float) -> NDArray:
    """``arr[idx]`` along the first axis, ``fill`` where idx < 0 (also when ``arr`` is empty)."""
    if len(arr) == 0:
        return np.full((len(idx), *arr.shape[1:]), fill, dtype=np.result_type(arr, fill))
    out = arr[np.maximum(idx, 0)]
    bad = (idx < 0).reshape((-1,) + (1,) * (arr.ndim - 1))
    return np.where(bad, fill, out)


def _truth(ch: _Chunk) -> dict[str, NDArray]:
    n = ch.n
    raw = {f: ch.arrays[ch.plan.key("Particle", f)] for f in _FIELDS["Particle"]}
    counts = ak.to_numpy(ak.num(raw["PID"])).astype(np.int64)
    evt = np.repeat(np.arange(n), counts)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    base, size = offsets[evt], counts[evt]

    def flat(name: str, dtype: type) -> NDArray:
        return ak.to_numpy(ak.flatten(raw[name], axis=1)).astype(dtype)

    def glob(local: NDArray[np.int64]) -> NDArray[np.int64]:
        # 0-based in-event index -> index into the flat record; -1 for none or out of range
        return np.where((local >= 0) & (local < size), local + base, -1)

    pid = flat("PID", np.int64)
    status = np.abs(flat("Status", np.int64))
    charge = flat("Charge", np.float64)
    m1, d1, d2 = glob(flat("M1", np.int64)), glob(flat("D1", np.int64)), glob(flat("D2", np.int64))
    p = np.stack([flat(c, np.float64) for c in ("Px", "Py", "Pz", "E")], axis=1)
    abspid = np.abs(pid)
    is_nu = np.isin(abspid, _NEUTRINOS)

    # Daughters of particle i: the range lo..hi, plus ``extra`` (D2 when D2 < D1).
    first = np.where(d1 >= 0, d1, d2)
    is_range = (d1 >= 0) & (d2 >= d1)
    lo = first
    hi = np.where(is_range, d2, first)
    extra = np.where((d1 >= 0) & (d2 >= 0) & (d2 < d1), d2, -1)
    nut = (abspid == 16).astype(np.int64)
    cs = np.concatenate([[0], np.cumsum(nut)])
    n_nut = np.where(first >= 0, cs[np.maximum(hi, 0) + 1] - cs[np.maximum(lo, 0)], 0)
    n_nut = n_nut + np.where(extra >= 0, nut[np.maximum(extra, 0)], 0)
    decaying = (abspid == 15) & (n_nut > 0)

    cols: dict[str, NDArray] = {}
    tau_idx: dict[str, NDArray[np.int64]] = {}
    modes: dict[str, NDArray] = {}
    tag = np.zeros(len(pid), dtype=np.int8)
    for leg, sign, tsign in (("p", -15, 1), ("m", 15, -1)):
        cand = np.flatnonzero(decaying & (pid == sign))
        order = np.lexsort((p[cand, 3], evt[cand]))  # by event, then energy: the last one wins
        idx = np.full(n, -1, dtype=np.int64)
        idx[evt[cand[order]]] = cand[order]
        tau_idx[leg] = idx
        present = idx >= 0
        tlo, thi, tex = _take(lo, idx, -1), _take(hi, idx, -2), _take(extra, idx, -1)
        j = np.arange(len(pid))
        member = ((j >= tlo[evt]) & (j <= thi[evt])) | ((tex[evt] >= 0) & (j == tex[evt]))
        dp = np.flatnonzero(member)
        tag[idx[present]] = tsign
        tag[dp] = tsign
        leg_cols = leg_columns(leg, dp, evt, p, pid, charge[dp], present,
                               _take(p, idx, np.nan))
        cols.update(leg_cols)
        modes[leg] = leg_cols[f"decay_mode_{leg}"]
    cols["truth_channel"] = channel_of(modes["p"], modes["m"]).astype(object)
    pair = np.stack([cols[f"tau_{c}_p"] + cols[f"tau_{c}_m"] for c in _P4], axis=1)
    # m^2 = E^2 - |p|^2 of the pair; NaN propagates where a tau is absent
    cols["m_tautau"] = np.sqrt(np.maximum(pair[:, 3] ** 2 - np.sum(pair[:, :3] ** 2, 1), 0.0))
    cols["m_tautau"][np.isnan(pair[:, 3])] = np.nan
    cols["pt_tautau"] = np.hypot(pair[:, 0], pair[:, 1])

    # Hard process: status 21 = incoming partons of the hardest subprocess (Pythia 8 manual,
    # "Particle Properties"); the one moving along +z comes from beam 1.
    def first_of(mask: NDArray[np.bool_]) -> NDArray[np.int64]:
        sel = np.flatnonzero(mask)[::-1]  # reversed: the first one is written last and wins
        out = np.full(n, -1, dtype=np.int64)
        out[evt[sel]] = sel
        return out

    in1 = first_of((status == 21) & (p[:, 2] > 0))
    in2 = first_of((status == 21) & (p[:, 2] < 0))
    cols["hard_id1"] = _take(pid, in1, 0).astype(np.int32)
    cols["hard_id2"] = _take(pid, in2, 0).astype(np.int32)
    is_q1 = (cols["hard_id1"] >= 1) & (cols["hard_id1"] <= 6)
    is_q2 = (cols["hard_id2"] >= 1) & (cols["hard_id2"] <= 6)
    cols["quark_pz_sign"] = np.where(is_q1, 1, np.where(is_q2, -1, 0)).astype(np.int8)
    both = (in1 >= 0) & (in2 >= 0)
    s = _take(p, in1, 0.0) + _take(p, in2, 0.0)
    m_hat = np.sqrt(np.maximum(s[:, 3] ** 2 - np.sum(s[:, :3] ** 2, 1), 0.0))  # sqrt(s_hat)
    cols["m_hat"] = np.where(both, m_hat, 0.0)

    # Tau descendants: propagate the leg tag down the M1 links (decay chains are short).
    src = np.flatnonzero(m1 >= 0)
    for _ in range(100):
        new = tag[m1[src]]
        changed = (tag[src] == 0) & (new != 0)
        if not changed.any():
            break
        tag[src[changed]] = new[changed]
    final = status == 1
    pt = np.hypot(p[:, 0], p[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(np.where(pt > 0, p[:, 2] / pt, np.sign(p[:, 2]) * np.inf))
    for name, mask in (("nu_other", final & is_nu & (tag == 0)),
                       ("vis_out", final & ~is_nu & ~(np.abs(eta) < TRUTH_ETA_MAX))):
        cols[f"{name}_px"] = np.bincount(evt[mask], p[mask, 0], minlength=n)
        cols[f"{name}_py"] = np.bincount(evt[mask], p[mask, 1], minlength=n)
    return cols


# --------------------------------------------------------------------------------------------
# Public API


class DelphesStream(Iterator[pa.Table]):
    """The event tables of :func:`read_delphes`, one per chunk, with the import's metadata.

    Attributes: ``schema`` (Arrow schema of every table), ``groups`` (schema groups filled),
    ``n_events`` (total entries of all inputs), ``metadata`` (inputs, fallbacks, weights).
    """

    def __init__(self, plans: list[_FilePlan], *, sample: str, cross_section_pb: float | None,
                 step_size: int | str, select_config: SelectConfig | None,
                 weight_sum: float | None) -> None:
        self.plans = plans
        self.n_events = sum(pl.entries for pl in plans)
        truth = all(pl.truth for pl in plans)
        self.groups: tuple[str, ...] = ("id", "truth", "reco") if truth else ("id", "reco")
        self.schema = arrow_schema(*self.groups)
        self._sample = sample
        self._select = select_config or SelectConfig()
        self._step = step_size
        if cross_section_pb is None:
            self._norm: float | None = None
            weight_def = "unnormalised: weight = 1"
        else:
            # events per fb^-1: sigma [pb] x 1000 fb/pb x gen_weight / sum of gen_weight
            self._norm = cross_section_pb * 1000.0 / weight_sum if weight_sum else 0.0
            weight_def = ("events per fb^-1: cross_section_pb x 1000 x gen_weight / sum of "
                          "gen_weight over all inputs (= sigma / N_total when unweighted)")
        no_truth = [str(pl.path) for pl in plans if not pl.truth]
        self.metadata: dict[str, Any] = {
            "sample": sample,
            "cross_section_pb": cross_section_pb,
            "normalisation": "unnormalised" if cross_section_pb is None else "cross_section",
            "weight_definition": weight_def,
            "gen_weight_sum": weight_sum,
            "n_events": self.n_events,
            "groups": list(self.groups),
            "truth": "Particle" if truth else
                     f"omitted: no usable Particle collection in {', '.join(no_truth)}",
            "inputs": [pl.info() for pl in plans],
            "select_config": self._select.to_dict(),
            "tau_constituents": {"cone_dr": TAU_CONE_DR, "track_pt_min_gev": TRACK_PT_MIN,
                                 "neutral_et_min_gev": NEUTRAL_ET_MIN,
                                 "track_mass": "charged pion", "photon_mass": 0.0},
            "met_covariance": f"diagonal, sigma^2 = {MET_RESOLUTION_K}^2 GeV x met_sumet per "
                              "component (ATLAS Run-1, EPJC 72 (2012) 1844); xy = 0",
            "frame": "laboratory; z along beam 1; GeV",
        }
        self._it = self._generate()

    def __iter__(self) -> DelphesStream:
        return self

    def __next__(self) -> pa.Table:
        return next(self._it)

    def _generate(self) -> Iterator[pa.Table]:
        first = 0
        for plan in self.plans:
            exprs = sorted(set(plan.keys.values()))
            start = 0
            try:
                chunks = uproot.iterate({str(plan.path): TREE}, exprs, step_size=self._step,
                                        library="ak")
                while True:
                    try:
                        arrays = next(chunks)
                    except StopIteration:
                        break
                    except Exception as err:
                        raise DelphesError(f"{plan.path}: cannot read entries from {start} "
                                           f"on (corrupt file?): {type(err).__name__}: "
                                           f"{_one_line(err)}") from err
                    table = self._table(_Chunk(arrays, plan), first)
                    first += table.num_rows
                    start += table.num_rows
                    yield table
            except DelphesError:
                raise
            except OSError as err:
                raise DelphesError(f"{plan.path}: {_one_line(err)}") from err

    def _table(self, ch: _Chunk, first: int) -> pa.Table:
        n = ch.n
        event_id = first + np.arange(n, dtype=np.int64)
        cols: dict[str, Any] = dict(select(_candidates(ch, event_id), self._select))
        gen_w = (_firsts(ch.get("Event", "Weight"), 1.0) if "Event" in ch.plan.present
                 else np.ones(n))
        cols["event_id"] = event_id
        cols["sample"] = np.full(n, self._sample, dtype=object)
        cols["gen_weight"] = gen_w
        cols["weight"] = gen_w * self._norm if self._norm is not None else np.ones(n)
        if "truth" in self.groups:
            cols.update(_truth(ch))
        arrays = []
        for f in self.schema:
            v = cols[f.name]
            if pa.types.is_string(f.type):
                arrays.append(pa.array(np.asarray(v).astype(str).tolist(), type=f.type))
            else:
                arrays.append(pa.array(np.asarray(v).astype(f.type.to_pandas_dtype()),
                                       type=f.type))
        return pa.Table.from_arrays(arrays, schema=self.schema)


def _paths(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    if isinstance(paths, str | os.PathLike):
        return [Path(paths)]
    out = [Path(p) for p in paths]
    if not out:
        raise DelphesError("no input files given")
    return out


def read_delphes(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
                 sample: str = "delphes", cross_section_pb: float | None = None,
                 step_size: int | str = 5000, select_config: SelectConfig | None = None,
                 allow_missing: Iterable[str] = ()) -> DelphesStream:
    """Stream Delphes ROOT files as ditau event tables (one per chunk of ``step_size`` events).

    All inputs are opened and checked first: a missing or unreadable file, a file without the
    ``Delphes`` tree or without a required collection raises :class:`DelphesError` (naming
    the file and every missing collection) before any event is read. ``allow_missing``: the
    lepton collections (``"Electron"``, ``"Muon"``) that may be absent (then empty).
    ``cross_section_pb``: the sample's cross section, for the ``weight`` column. The returned
    iterator's ``metadata`` records inputs and fallbacks (module docstring).
    """
    files = _paths(paths)
    allowed = tuple(allow_missing)
    unknown = sorted(set(allowed) - set(ALLOWABLE_MISSING))
    if unknown:
        raise DelphesError(f"allow_missing: {unknown} cannot be missing; only "
                           f"{list(ALLOWABLE_MISSING)} can")
    if cross_section_pb is not None and not (math.isfinite(cross_section_pb)
                                             and cross_section_pb > 0):
        raise DelphesError(f"cross_section_pb must be positive, got {cross_section_pb!r}")
    if isinstance(step_size, int) and step_size < 1:
        raise DelphesError(f"step_size must be a positive number of events, got {step_size}")
    plans: list[_FilePlan] = []
    problems: list[str] = []
    for path in files:
        plan, errs = _plan(path, allowed)
        problems += errs
        if plan is not None:
            plans.append(plan)
    if problems:
        raise DelphesError("; ".join(problems))
    weight_sum = None
    if cross_section_pb is not None:
        weight_sum = sum(_gen_weight_sum(pl) for pl in plans)
        if sum(pl.entries for pl in plans) and not weight_sum > 0:
            raise DelphesError(f"the generator weights (Event.Weight) of "
                               f"{', '.join(str(f) for f in files)} sum to {weight_sum}; "
                               "cannot normalise to the cross section")
    return DelphesStream(plans, sample=sample, cross_section_pb=cross_section_pb,
                         step_size=step_size, select_config=select_config,
                         weight_sum=weight_sum)


@dataclass(frozen=True)
class ImportSummary:
    """What :func:`import_delphes` wrote."""

    path: Path
    events: int
    in_sr: int
    channels: dict[str, int]
    seconds: float
    metadata: dict[str, Any]


def import_delphes(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
                   out: str | os.PathLike[str], *, progress: bool = False,
                   **kw: Any) -> ImportSummary:
    """Read Delphes files (:func:`read_delphes` keywords) into one ditau Parquet file ``out``.

    The file appears only when complete (atomic write); metadata: stage ``import-delphes``,
    the input files and the fallbacks used. ``progress``: a progress bar on stderr.
    """
    from tqdm import tqdm

    start = time.perf_counter()
    target = check_writable(out)
    stream = read_delphes(paths, **kw)
    metadata = {"stage": "import-delphes", "ditau_version": version("ditau"), **stream.metadata}
    channels: dict[str, int] = {}
    in_sr = 0
    writer = EventWriter(target, stream.schema, metadata, require=stream.groups)
    bar = tqdm(total=stream.n_events, unit="ev", desc="import-delphes", disable=not progress,
               leave=False)
    try:
        for table in stream:
            writer.write(table)
            ch, cnt = np.unique(np.asarray(table["reco_channel"]).astype(str),
                                return_counts=True)
            for c, k in zip(ch, cnt, strict=True):
                channels[str(c)] = channels.get(str(c), 0) + int(k)
            in_sr += int(np.sum(np.asarray(table["in_sr"])))
            bar.update(table.num_rows)
        writer.close({"n_events": writer.rows})
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    return ImportSummary(target, writer.rows, in_sr, dict(sorted(channels.items())),
                         time.perf_counter() - start, metadata)
