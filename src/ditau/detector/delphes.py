"""Delphes ROOT files -> ditau events (``id``, ``reco`` and, with ``Particle``, ``truth``).

A Delphes file has one tree ``Delphes``; each collection ``X`` is a split TClonesArray with
leaves ``X/X.Field`` and a count ``X_size``. Branch names are resolved per file and per field,
in this order: ``X/X.Field`` (real Delphes, or a flat branch of that name), ``X.Field`` (what
``uproot`` writes with ``field_name=lambda c, f: f"{c}.{f}"``; uproot cannot write split
branches, only flat ones) and ``X_Field`` (uproot's default naming). Counts are not needed:
the jagged leaves carry them.

Collection names: ``X`` is Delphes' default name unless ``collections`` maps the role to
another one (:data:`COLLECTIONS`: ``jets`` -> ``Jet``, ``electrons``, ``muons``, ``met``,
``scalar_ht``, ``eflow_tracks``, ``tracks``, ``eflow_photons``, ``eflow_neutral_hadrons``,
``photons``, ``event``, ``particles``), e.g. ``{"jets": "KTjet"}`` or ``{"jets": "JetPUPPI"}``.
When the jets are missing, the error names the file's collections that have the jet fields.

Branch shapes are checked before any event is read: object collections must be jagged (one
entry per object); ``MissingET``, ``ScalarHT`` and ``Event`` may be a length-1 list per event
(Delphes) or one number per event (ntuples flattened by coffea/ServiceX-style tools; recorded
per input as ``per_event_branches``). Any other shape is a :class:`DelphesError` naming the
file, the branch and what the reader needs.

The files are streamed in chunks (``uproot.iterate``, one file after the other, so every
error names its file). Each chunk becomes a :class:`~ditau.objects.Candidates`
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
``impact_parameters``
    the tracks' ``D0, DZ, ErrorD0, ErrorDZ`` (mm), read per collection where the file has all
    four (Delphes writes them for Electron, Muon, Track and EFlowTrack; they are meaningful
    with a track-smearing module in the card): leptons their own, tau_had candidates those of
    their leading (highest-pT) track in the core cone (``tau_split`` "constituents" only).
    Sign: d0 = -D0, because Delphes' ParticlePropagator (and TrackSmearing, which smears its
    value) stores D0 = (x py - y px) / pT, the opposite of the ATLAS perigee convention of the
    schema (:mod:`ditau.detector.impact`; a card whose D0 comes from TrackCovariance, e.g.
    IDEA, already has the ATLAS sign and comes out flipped); z0 = DZ (Delphes measures it
    from its beam-spot position, the generated vertex with a BeamSpotFilter, else z = 0). An
    error <= 0 (Delphes' default without smearing) is read as unknown (NaN). Where a file
    lacks them the columns are NaN and the metadata says so (per input ``notes`` and
    ``impact_parameters``; the top-level ``impact_parameters``). The truth vertices
    (``pv_*``, ``tau_dv_*``) are not read from Delphes (NaN).
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
``particle_links``
    Delphes' TreeWriter copies M1/M2/D1/D2 unchanged, so a card that writes a filtered
    particle list leaves them pointing into the unfiltered list. The indices of the first
    :data:`PARTICLE_CHECK_ENTRIES` entries are checked before reading (every M1/D1/D2 in range;
    each daughter of a tau has that tau as M1): ``"stored"`` when they pass. Otherwise, when
    ``Particle.fUniqueID`` - 1 is the index in the unfiltered list (Delphes numbers the
    particles 1, 2, ... in creation order; increasing along the stored list) and the indices
    mapped through it pass (no decay product of a tau dropped), ``"fUniqueID"``; else the
    truth is omitted, with the reason in the metadata and a :class:`DelphesWarning`. Every
    chunk is checked again while reading (a failure is a :class:`DelphesError`).

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
with |eta| >= 5 (the generate stage's default stored range). ``nul_*``: the lepton-flavour
neutrino among the direct daughters of a leptonic tau (as :mod:`ditau.generate.truth`), NaN
for other legs and where the stored daughters do not include exactly one. ``spin_weight``: 1
(a Delphes file says nothing about how its tau spins were generated).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final, Literal

import awkward as ak
import numpy as np
import pyarrow as pa
import uproot
from numpy.typing import NDArray
from particle import Particle as _PDG

from ditau.detector import impact
from ditau.generate.truth import leg_columns
from ditau.objects import LEPTON_FIELDS, TAU_FIELDS, Candidates, records
from ditau.physics import M_PI, channel_of, delta_phi, eta, from_pt_eta_phi_m, mass, pt
from ditau.provenance import RUN_ID, run_id
from ditau.schema import EventWriter, arrow_schema, check_not_input, check_writable
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
#: Entries per file whose Particle indices are checked before any event is read.
PARTICLE_CHECK_ENTRIES: Final[int] = 100
#: PDG masses in GeV (the ``particle`` package stores MeV).
M_E: Final[float] = _PDG.from_pdgid(11).mass / 1000.0
M_MU: Final[float] = _PDG.from_pdgid(13).mass / 1000.0

#: What the reader reads (the keys of ``collections``) -> the Delphes collection name used
#: when ``collections`` does not name another one.
COLLECTIONS: Final[dict[str, str]] = {
    "jets": "Jet",
    "electrons": "Electron",
    "muons": "Muon",
    "met": "MissingET",
    "scalar_ht": "ScalarHT",
    "eflow_tracks": "EFlowTrack",
    "tracks": "Track",
    "eflow_photons": "EFlowPhoton",
    "eflow_neutral_hadrons": "EFlowNeutralHadron",
    "photons": "Photon",
    "event": "Event",
    "particles": "Particle",
}
_ROLE: Final[dict[str, str]] = {v: k for k, v in COLLECTIONS.items()}

_P4: Final[tuple[str, ...]] = ("px", "py", "pz", "e")
_NEUTRINOS: Final[tuple[int, ...]] = (12, 14, 16)

#: Fields read per collection (keys: the default collection names).
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
#: Track impact-parameter fields (mm), read where a collection has all of them.
_IP_FIELDS: Final[tuple[str, ...]] = ("D0", "DZ", "ErrorD0", "ErrorDZ")
#: Collections whose impact parameters are read (leptons; the tau_had track collection).
_IP_COLLECTIONS: Final[tuple[str, ...]] = ("Electron", "Muon", "EFlowTrack", "Track")
#: d0 (ATLAS sign) = DELPHES_D0_SIGN x D0 (Delphes ParticlePropagator: D0 = (x py - y px)/pT).
DELPHES_D0_SIGN: Final[float] = -1.0
#: Collections with one entry per event: stored as a length-1 list per event (Delphes) or as
#: one value per event (flattened ntuples); every other collection must be a jagged list.
_PER_EVENT: Final[frozenset[str]] = frozenset({"MissingET", "ScalarHT", "Event"})

Style = Literal["python", "cli"]


class DelphesError(ValueError):
    """A Delphes input cannot be read or lacks what the import needs; the message says which
    file, which branch or collection and what is wrong.

    ``allow_missing`` (collections that ``allow_missing`` / ``--allow-missing`` would let the
    import go without) and ``suggested`` (collection role -> a name in the file that has its
    fields) give the remedies; :meth:`render` words them for the Python API or the CLI.
    """

    def __init__(self, message: str, *, allow_missing: Sequence[str] = (),
                 suggested: Mapping[str, str] | None = None) -> None:
        self.problem = message
        self.allow_missing = tuple(allow_missing)
        self.suggested = dict(suggested or {})
        super().__init__(self.render("python"))

    def render(self, style: Style = "python") -> str:
        """The message with its remedies in ``style``: ``"python"`` (keyword arguments of
        :func:`read_delphes`) or ``"cli"`` (options of ``ditau import-delphes``)."""
        hints = []
        if self.suggested:
            if style == "cli":
                opts = " ".join(f"--collection {k}={v}" for k, v in self.suggested.items())
                hints.append(f"pass {opts} to read them from there")
            else:
                hints.append(f"pass collections={self.suggested!r} to read them from there")
        if self.allow_missing:
            if style == "cli":
                hints.append(f"pass --allow-missing {','.join(self.allow_missing)} to read "
                             "the file(s) without them")
            else:
                hints.append(f"pass allow_missing={self.allow_missing!r} to read the file(s) "
                             "without them")
        return self.problem + (f" ({'; '.join(hints)})" if hints else "")


class DelphesWarning(UserWarning):
    """Something of a Delphes input is not used (e.g. a Particle collection whose indices
    are inconsistent); the message says which file and why."""


# --------------------------------------------------------------------------------------------
# Planning: open each file, resolve branch names, check their shapes, decide the fallbacks.


@dataclass
class _FilePlan:
    path: Path
    entries: int
    names: dict[str, str]
    keys: dict[tuple[str, str], str]
    scalar: set[str]
    present: set[str]
    tracks: str | None
    tau_split: str
    met: str
    sumet: str
    missing_allowed: tuple[str, ...]
    truth: bool
    particle_links: str | None = None
    truth_problem: str | None = None
    notes: list[str] = field(default_factory=list)
    sha256: str = ""
    #: collections whose impact parameters are read (all of :data:`_IP_FIELDS` present)
    ip: set[str] = field(default_factory=set)

    def key(self, coll: str, fld: str) -> str:
        return self.keys[(coll, fld)]

    def label(self, coll: str) -> str:
        return _label(coll, self.names)

    def info(self) -> dict[str, Any]:
        return {"file": str(self.path), "entries": self.entries, "tau_split": self.tau_split,
                "track_collection": self.tracks and self.names[self.tracks],
                "met": self.met, "sumet": self.sumet,
                "missing_allowed": list(self.missing_allowed),
                "gen_weight": f"{self.names['Event']}.Weight" if "Event" in self.present
                else "1",
                "collections": {_ROLE[c]: self.names[c] for c in sorted(self.present)},
                "per_event_branches": sorted(self.scalar),
                "particle_truth": self.truth, "particle_links": self.particle_links,
                "impact_parameters": self.ip_note(),
                "notes": self.notes, "sha256": self.sha256}

    def ip_sources(self) -> list[str]:
        """The collections (names in the file) whose impact parameters fill the columns."""
        used = [c for c in ("Electron", "Muon") if c in self.ip]
        if self.tau_split == "constituents" and self.tracks in self.ip:
            used.append(self.tracks)
        return [self.names[c] for c in used]

    def ip_note(self) -> str:
        """What the impact-parameter columns are made of, for the metadata."""
        used = self.ip_sources()
        if not used:
            return ("none: no D0/DZ/ErrorD0/ErrorDZ branches for the leptons or the tau_had "
                    "tracks (no track smearing in the card?); reco_d0/z0 and errors are NaN")
        return (f"from {', '.join(used)} D0/DZ/ErrorD0/ErrorDZ (d0 = -D0, ATLAS sign; errors "
                "<= 0 read as NaN); legs from other collections NaN")


def _label(coll: str, names: Mapping[str, str]) -> str:
    """A collection as the messages name it: its name in the file (and its role if renamed)."""
    name = names[coll]
    return name if name == coll else f"{name} (the {_ROLE[coll]})"


def _resolve(names: set[str], coll: str, fld: str) -> str | None:
    for cand in (f"{coll}/{coll}.{fld}", f"{coll}.{fld}", f"{coll}_{fld}"):
        if cand in names:
            return cand
    return None


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _collection_names(collections: Mapping[str, str] | None) -> dict[str, str]:
    """Default collection name -> name in the files, from the user's ``collections``."""
    names = {c: c for c in _FIELDS}
    for key, value in (collections or {}).items():
        coll = COLLECTIONS.get(key, key)
        if coll not in _FIELDS:
            raise DelphesError(f"collections: unknown key {key!r}; known: "
                               f"{', '.join(COLLECTIONS)} (or the default names "
                               f"{', '.join(_FIELDS)})")
        if not isinstance(value, str) or not value.strip() or any(c in value for c in "/."):
            raise DelphesError(f"collections[{key!r}]: {value!r} is not a collection name")
        names[coll] = value.strip()
    return names


def _allowed(allow_missing: Iterable[str]) -> tuple[str, ...]:
    out = []
    for a in allow_missing:
        coll = COLLECTIONS.get(a, a)
        if coll not in ALLOWABLE_MISSING:
            raise DelphesError(f"allow_missing: {a!r} cannot be missing; only "
                               f"{list(ALLOWABLE_MISSING)} (or "
                               f"{[_ROLE[c] for c in ALLOWABLE_MISSING]}) can")
        out.append(coll)
    return tuple(dict.fromkeys(out))


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


def _shape(branch: Any) -> tuple[str, str]:
    """("jagged" | "scalar" | "other", description) of a branch's per-event content."""
    try:
        interp = branch.interpretation
    except Exception as err:  # uproot cannot interpret the branch at all
        return "other", f"not readable by uproot ({type(err).__name__}: {_one_line(err)})"
    if isinstance(interp, uproot.AsJagged) and isinstance(interp.content, uproot.AsDtype):
        if interp.content.inner_shape == ():
            return "jagged", "a list of numbers per event"
        return "other", f"a list of arrays of shape {interp.content.inner_shape} per event"
    if isinstance(interp, uproot.AsDtype):
        if interp.inner_shape == ():
            return "scalar", "one number per event (a flattened ntuple?)"
        return "other", f"a fixed-size array of shape {interp.inner_shape} per event"
    return "other", f"of type {getattr(branch, 'typename', '?')} ({type(interp).__name__})"


def _candidates_for(coll: str, names: set[str], taken: set[str]) -> list[str]:
    """Other collections of the file that have every field ``coll`` needs (for the hint)."""
    prefixes = set()
    for n in names:
        prefixes.add(n.split("/")[0])
        prefixes.add(n.split(".")[0])
        prefixes.update(n[:i] for i, ch in enumerate(n) if ch == "_" and i > 0)
    return sorted(p for p in prefixes - taken
                  if all(_resolve(names, p, f) for f in _FIELDS[coll]))


@dataclass
class _Problems:
    """What is wrong with one file, and the remedies the error can propose."""

    messages: list[str] = field(default_factory=list)
    allow: list[str] = field(default_factory=list)
    suggested: dict[str, str] = field(default_factory=dict)


def _plan(path: Path, allow_missing: tuple[str, ...],
          names_of: dict[str, str]) -> tuple[_FilePlan | None, _Problems]:
    """The file's plan, or None and its problems (missing collections, branches, shapes)."""
    found_problems = _Problems()
    with _open_tree(path) as tree:
        try:
            names = set(tree.keys())
            entries = int(tree.num_entries)
        except Exception as err:
            raise DelphesError(f"{path}: cannot list the branches of '{TREE}' "
                               f"({type(err).__name__}: {_one_line(err)})") from err
        keys: dict[tuple[str, str], str] = {}
        present: set[str] = set()
        incomplete: dict[str, list[str]] = {}
        bad_shape: list[str] = []
        bad_colls: set[str] = set()
        scalar: set[str] = set()

        def check_shape(coll: str, fld: str, key: str) -> bool:
            kind, desc = _shape(tree[key])
            if kind == "jagged" or (kind == "scalar" and coll in _PER_EVENT):
                if kind == "scalar":
                    scalar.add(key)
                return True
            need = ("one number per event or a one-entry list per event"
                    if coll in _PER_EVENT else "a list per event (one entry per object)")
            bad_colls.add(coll)
            bad_shape.append(f"branch '{key}' ({names_of[coll]}.{fld}) is {desc}; the reader "
                             f"needs {need}")
            return False

        for coll, fields in _FIELDS.items():
            name = names_of[coll]
            found = {f: _resolve(names, name, f) for f in fields}
            anything = any(found.values()) or name in names or f"{name}_size" in names
            if not anything:
                continue
            lacking = [f"{name}.{f}" for f, k in found.items() if k is None]
            if lacking:
                incomplete[coll] = lacking
                continue
            if all([check_shape(coll, f, k) for f, k in found.items() if k is not None]):
                present.add(coll)
                keys.update({(coll, f): k for f, k in found.items() if k is not None})
        ncharged = _resolve(names, names_of["Jet"], "NCharged")
        if ncharged is not None and "Jet" in present and not check_shape("Jet", "NCharged",
                                                                         ncharged):
            present.discard("Jet")

        missing: list[str] = []
        # Required collections that exist but lack fields are errors; optional ones dropped.
        problems = [f"{_label(c, names_of)} without {', '.join(incomplete[c])}"
                    for c in ("Jet", "Electron", "Muon") if c in incomplete]
        taken = set(names_of.values()) | set(_FIELDS)
        if "Jet" not in present and "Jet" not in incomplete and "Jet" not in bad_colls:
            missing.append(_label("Jet", names_of))
            other = _candidates_for("Jet", names, taken)
            if other:
                found_problems.suggested["jets"] = other[0]
                missing[-1] += f" (collections with the jet fields: {', '.join(other)})"
        allowed = []
        for coll in ("Electron", "Muon"):
            if coll not in present and coll not in incomplete and coll not in bad_colls:
                if coll in allow_missing:
                    allowed.append(coll)
                else:
                    missing.append(_label(coll, names_of))
                    found_problems.allow.append(coll)
        tracks = next((c for c in ("EFlowTrack", "Track") if c in present), None)
        tau_split = "constituents" if tracks and "EFlowPhoton" in present else "jet"
        if tau_split == "jet" and "Jet" in present:
            if ncharged is None:
                problems.append(f"{names_of['Jet']}.NCharged (needed without "
                                f"{names_of['EFlowTrack']}/{names_of['Track']} + "
                                f"{names_of['EFlowPhoton']})")
            else:
                keys[("Jet", "NCharged")] = ncharged
        eflow = ("EFlowTrack", "EFlowPhoton", "EFlowNeutralHadron")
        if "MissingET" in present:
            met = "MissingET"
        elif all(c in present for c in eflow):
            met = "eflow"
        else:
            met = "none"
            lacking = [names_of[c] for c in eflow if c not in present]
            what = (f"{_label('MissingET', names_of)} without "
                    f"{', '.join(incomplete['MissingET'])}" if "MissingET" in incomplete
                    else _label("MissingET", names_of))
            missing.append(f"{what} (fallback from {', '.join(names_of[c] for c in eflow)} "
                           f"impossible: {', '.join(lacking)} missing)")
        sumet = "ScalarHT" if "ScalarHT" in present else "object_pt_sum"
        if missing or problems or bad_shape:
            msgs = []
            if missing:
                msgs.append(f"missing Delphes collection(s) {', '.join(missing)}")
            if problems:
                msgs.append(f"missing branch(es): {'; '.join(problems)}")
            if bad_shape:
                msgs.append(f"unexpected branch shape(s): {'; '.join(bad_shape)}")
            found_problems.messages.append(f"{path}: {' and '.join(msgs)}")
            return None, found_problems
        notes = [f"{names_of[coll]} ignored: lacks {', '.join(lacking)}"
                 for coll, lacking in incomplete.items()
                 if coll not in ("Jet", "Electron", "Muon")]
        plan = _FilePlan(path, entries, dict(names_of), keys, scalar, present, tracks,
                         tau_split, met, sumet, tuple(allowed), "Particle" in present,
                         notes=notes)
        _plan_impact_parameters(plan, tree, names)
        if plan.truth:
            _plan_particle_links(plan, tree, names)
    return plan, found_problems


def _plan_impact_parameters(plan: _FilePlan, tree: Any, names: set[str]) -> None:
    """Find the impact-parameter branches of the lepton and track collections (all four of
    :data:`_IP_FIELDS`, jagged); record in ``plan.ip`` where they are and note where not."""
    wanted = [c for c in ("Electron", "Muon") if c in plan.present]
    if plan.tau_split == "constituents" and plan.tracks is not None:
        wanted.append(plan.tracks)
    lacking = []
    for coll in wanted:
        found = {f: _resolve(names, plan.names[coll], f) for f in _IP_FIELDS}
        if all(k is not None and _shape(tree[k])[0] == "jagged" for k in found.values()):
            plan.keys.update({(coll, f): k for f, k in found.items() if k is not None})
            plan.ip.add(coll)
        else:
            lacking.append(plan.names[coll])
    if lacking:
        plan.notes.append(f"no impact parameters (D0, DZ, ErrorD0, ErrorDZ) in "
                          f"{', '.join(lacking)}: their reco_d0/reco_z0 and errors are NaN")
    if plan.tau_split != "constituents":
        plan.notes.append("tau_had impact parameters need a track collection (tau_split "
                          "'constituents'): NaN")


def _plan_particle_links(plan: _FilePlan, tree: Any, names: set[str]) -> None:
    """Check the Particle indices of the file's first entries; decide how the links are read
    (``plan.particle_links``: "stored" or "fUniqueID"), or drop the truth with the reason."""
    name = plan.names["Particle"]
    uid_key = _resolve(names, name, "fUniqueID")
    if uid_key is not None and _shape(tree[uid_key])[0] != "jagged":
        uid_key = None
    fields = ("PID", "M1", "D1", "D2")
    stop = min(plan.entries, PARTICLE_CHECK_ENTRIES)
    exprs = [plan.key("Particle", f) for f in fields] + ([uid_key] if uid_key else [])
    try:
        arrays = tree.arrays(exprs, entry_stop=stop, library="ak")
    except Exception as err:
        raise DelphesError(f"{plan.path}: cannot read {', '.join(exprs)} "
                           f"({type(err).__name__}: {_one_line(err)})") from err
    raw = {f: arrays[plan.key("Particle", f)] for f in fields}
    _, problem = _links(raw["PID"], raw["M1"], raw["D1"], raw["D2"], None)
    if problem is None:
        plan.particle_links = "stored"
        return
    why = (f"{name} mother/daughter indices (M1, D1, D2) do not point into the stored list "
           f"(was it written from a filtered particle list?): {problem}")
    if uid_key is None:
        plan.truth_problem = (f"{plan.path}: {why}; there is no {name}.fUniqueID to repair "
                              "them, so the truth is omitted")
    else:
        _, problem2 = _links(raw["PID"], raw["M1"], raw["D1"], raw["D2"], arrays[uid_key])
        if problem2 is None:
            plan.particle_links = "fUniqueID"
            plan.keys[("Particle", "fUniqueID")] = uid_key
            plan.notes.append(f"{why}; repaired through {uid_key} - 1 = the index in the "
                              "unfiltered list")
            return
        plan.truth_problem = (f"{plan.path}: {why}; {uid_key} does not repair them either "
                              f"({problem2}), so the truth is omitted")
    plan.truth = False
    plan.notes.append(plan.truth_problem)


def _gen_weight_sum(plan: _FilePlan) -> float:
    """Sum of the file's generator weights (N when there are none)."""
    if "Event" not in plan.present:
        return float(plan.entries)
    key = plan.key("Event", "Weight")
    try:
        with _open_tree(plan.path) as tree:
            arr = tree[key].array()
    except DelphesError:
        raise
    except Exception as err:
        raise DelphesError(f"{plan.path}: cannot read {key} ({type(err).__name__}: "
                           f"{_one_line(err)})") from err
    return float(np.sum(_per_event(arr, key in plan.scalar, 1.0)))


# --------------------------------------------------------------------------------------------
# Per-chunk conversion.

Flat = NDArray[np.float64]


def _f64(x: ak.Array) -> ak.Array:
    return ak.values_astype(x, np.float64)


def _flat(x: ak.Array, dtype: type = np.float64) -> NDArray[Any]:
    """The entries of a jagged (per-event list) array, flattened into one numpy array."""
    return ak.to_numpy(ak.flatten(x, axis=1)).astype(dtype)


def _per_event(x: ak.Array, scalar: bool, default: float) -> Flat:
    """One value per event: the number itself (flattened ntuples) or the first entry of the
    event's list (``default`` where empty), e.g. MissingET.MET."""
    if scalar:
        return ak.to_numpy(_f64(x)).astype(np.float64)
    return ak.to_numpy(ak.fill_none(ak.firsts(_f64(x)), default)).astype(np.float64)


def _p4(pt_: ak.Array, eta_: ak.Array, phi_: ak.Array,
        m: float | ak.Array) -> dict[str, ak.Array]:
    """Jagged (px, py, pz, e) from jagged (pT, eta, phi) and a mass (number or jagged)."""
    counts = ak.num(pt_, axis=1)
    flat = [ak.to_numpy(ak.flatten(x, axis=1)) for x in (pt_, eta_, phi_)]
    mm = (np.full(len(flat[0]), float(m)) if isinstance(m, int | float)
          else ak.to_numpy(ak.flatten(m, axis=1)))
    v = from_pt_eta_phi_m(*flat, mm)
    return {c: ak.unflatten(v[:, i], counts) for i, c in enumerate(_P4)}


def _by_pt(fields: Mapping[str, ak.Array], pt_: ak.Array) -> ak.Array:
    """Per-event record lists sorted by decreasing pT (ties keep their order)."""
    return ak.zip(dict(fields))[ak.argsort(-pt_, axis=1, stable=True)]


def _empty(n: int, fields: Iterable[str]) -> ak.Array:
    return records(np.zeros(n, np.int64), {f: np.zeros(0) for f in fields})


class _Chunk:
    """One chunk's arrays with the file's branch names resolved."""

    def __init__(self, arrays: ak.Array, plan: _FilePlan, start: int) -> None:
        self.arrays = arrays
        self.plan = plan
        self.n = len(arrays)
        self.start = start

    def where(self) -> str:
        return f"{self.plan.path}, entries {self.start}-{self.start + self.n - 1}"

    def per_event(self, coll: str, fld: str, default: float) -> Flat:
        key = self.plan.key(coll, fld)
        return _per_event(self.arrays[key], key in self.plan.scalar, default)

    def coll(self, coll: str, fields: Sequence[str]) -> ak.Array:
        """The collection's jagged records (float64 fields), one list per event."""
        out: dict[str, ak.Array] = {}
        counts = None
        for f in fields:
            key = self.plan.key(coll, f)
            arr = self.arrays[key]
            num = ak.to_numpy(ak.num(arr, axis=1))
            if counts is None:
                counts = num
            elif not np.array_equal(num, counts):
                first = self.plan.key(coll, fields[0])
                ev = self.start + int(np.flatnonzero(num != counts)[0])
                raise DelphesError(f"{self.plan.path}: collection {self.plan.label(coll)}: "
                                   f"branch '{key}' has another number of entries than "
                                   f"'{first}' (first at entry {ev})")
            out[f] = _f64(arr)
        return ak.zip(out)


def _ip(ch: _Chunk, coll: str, like: ak.Array) -> dict[str, ak.Array]:
    """The collection's impact parameters in the schema's convention (jagged, like ``like``):
    d0 = DELPHES_D0_SIGN x D0, z0 = DZ, errors (<= 0: unknown); NaN without the branches."""
    if coll not in ch.plan.ip:
        nan = ak.full_like(_f64(like), np.nan)
        return {f: nan for f in impact.IP_FIELDS}
    c = ch.coll(coll, _IP_FIELDS)

    def err(x: ak.Array) -> ak.Array:
        return ak.where(x > 0, x, np.nan)

    return {"d0": DELPHES_D0_SIGN * c.D0, "z0": c.DZ, "d0_err": err(c.ErrorD0),
            "z0_err": err(c.ErrorDZ)}


_LEPTON_RECORD: Final[tuple[str, ...]] = (*LEPTON_FIELDS, *impact.IP_FIELDS)
_TAU_RECORD: Final[tuple[str, ...]] = (*TAU_FIELDS, *impact.IP_FIELDS)


def _leptons(ch: _Chunk) -> ak.Array:
    parts = []
    for coll, m, flavour in (("Electron", M_E, 11.0), ("Muon", M_MU, 13.0)):
        if coll not in ch.plan.present:
            continue
        c = ch.coll(coll, ("PT", "Eta", "Phi", "Charge"))
        rec: dict[str, ak.Array] = _p4(c.PT, c.Eta, c.Phi, m)
        rec["charge"] = c.Charge
        rec["flavour"] = ak.full_like(c.PT, flavour)
        rec.update(_ip(ch, coll, c.PT))
        parts.append(ak.zip(rec))
    if not parts:
        return _empty(ch.n, _LEPTON_RECORD)
    lep = ak.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    return _by_pt({f: lep[f] for f in _LEPTON_RECORD}, pt(lep.px, lep.py))


def _cone_sum(axes: ak.Array, objs: ak.Array, pt_field: str, m: float,
              pt_min: float) -> tuple[dict[str, Flat], NDArray[np.int64]]:
    """Per tau axis (jagged records ``Eta``, ``Phi``), the four-momentum sum (objects of mass
    ``m``) and the number of the objects (fields ``pt_field``, Eta, Phi) of its event with
    pT > ``pt_min`` within Delta R < TAU_CONE_DR; flat arrays in the axes' order. Objects with
    pT = 0 (Delphes stores Eta = 999.9 for them) never count."""
    pairs = ak.cartesian({"t": axes, "o": objs}, axis=1, nested=True)  # [event][tau][object]
    dphi = delta_phi(pairs.o.Phi, pairs.t.Phi)
    # Delta R^2 = Delta eta^2 + Delta phi^2
    inside = (pairs.o[pt_field] > max(pt_min, 0.0)) & (
        (pairs.o.Eta - pairs.t.Eta) ** 2 + dphi**2 < TAU_CONE_DR**2)
    sel = pairs.o[inside]
    n_in = ak.to_numpy(ak.flatten(ak.num(sel, axis=2), axis=1)).astype(np.int64)
    flat = [ak.to_numpy(ak.flatten(sel[f], axis=None)) for f in (pt_field, "Eta", "Phi")]
    p4 = from_pt_eta_phi_m(*flat, np.full(len(flat[0]), m))
    tau = np.repeat(np.arange(len(n_in)), n_in)
    return ({c: np.bincount(tau, p4[:, i], minlength=len(n_in)) for i, c in enumerate(_P4)},
            n_in)


def _cone_leading(axes: ak.Array, objs: ak.Array, fields: Sequence[str],
                  pt_min: float) -> dict[str, Flat]:
    """Per tau axis (jagged ``Eta``, ``Phi``), ``fields`` of the highest-pT object (jagged
    records with ``PT``, Eta, Phi and ``fields``) of its event with pT > ``pt_min`` within
    Delta R < TAU_CONE_DR (the tracks of :func:`_cone_sum`); NaN where none. Flat arrays in
    the axes' order."""
    pairs = ak.cartesian({"t": axes, "o": objs}, axis=1, nested=True)  # [event][tau][object]
    dphi = delta_phi(pairs.o.Phi, pairs.t.Phi)
    inside = (pairs.o.PT > max(pt_min, 0.0)) & (
        (pairs.o.Eta - pairs.t.Eta) ** 2 + dphi**2 < TAU_CONE_DR**2)
    sel = pairs.o[inside]
    best = sel[ak.argmax(sel.PT, axis=2, keepdims=True)]
    return {f: ak.to_numpy(ak.fill_none(ak.flatten(ak.firsts(best[f], axis=2), axis=1),
                                        np.nan)).astype(np.float64) for f in fields}


def _taus_and_jets(ch: _Chunk) -> tuple[ak.Array, ak.Array, Flat]:
    """tau_had candidates, other jets, and the per-event jet pT sum (for the sum E_T
    fallback)."""
    fields = ["PT", "Eta", "Phi", "Mass", "Charge", "TauTag"]
    if ch.plan.tau_split == "jet":
        fields.append("NCharged")
    jet = ch.coll("Jet", fields)
    tagged = (ak.values_astype(jet.TauTag, np.int64) & 1) != 0  # TauTag bit 0: tau-tagged
    p4 = _p4(jet.PT, jet.Eta, jet.Phi, jet.Mass)
    jets = _by_pt({c: p4[c][~tagged] for c in _P4}, jet.PT[~tagged])
    tj = jet[tagged]
    ntau = int(ak.sum(ak.num(tj, axis=1)))

    if ch.plan.tau_split == "constituents":
        trk = ch.coll(ch.plan.tracks or "EFlowTrack", ("PT", "Eta", "Phi"))
        pho = ch.coll("EFlowPhoton", ("ET", "Eta", "Phi"))
        # tracks: charged-pion mass hypothesis; photons: massless
        chg, n_tracks = _cone_sum(tj, trk, "PT", M_PI, TRACK_PT_MIN)
        neu, _ = _cone_sum(tj, pho, "ET", 0.0, 0.0)
        # E_T of the neutral sum = E sin(theta) = E / cosh(eta) (0 for an empty sum)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            net = neu["e"] / np.cosh(eta(neu["px"], neu["py"], neu["pz"]))
        has_neu = net > NEUTRAL_ET_MIN
        neu = {c: np.where(has_neu, v, 0.0) for c, v in neu.items()}
        n_neu = has_neu.astype(np.float64)
        n_trk = n_tracks.astype(np.float64)
        # the leading cone track's impact parameters (NaN without them in the file)
        trk_ip = ak.zip({"PT": trk.PT, "Eta": trk.Eta, "Phi": trk.Phi,
                         **_ip(ch, ch.plan.tracks or "EFlowTrack", trk.PT)})
        ip = _cone_leading(tj, trk_ip, impact.IP_FIELDS, TRACK_PT_MIN)
    else:
        chg = {c: _flat(p4[c][tagged]) for c in _P4}
        neu = {c: np.zeros(ntau) for c in _P4}
        n_trk, n_neu = _flat(tj.NCharged), np.zeros(ntau)
        ip = {f: np.full(ntau, np.nan) for f in impact.IP_FIELDS}
    rec = {f"chg_{c}": chg[c] for c in _P4}
    rec.update({f"neu_{c}": neu[c] for c in _P4})
    rec.update({"n_tracks": n_trk, "n_neu": n_neu, "charge": _flat(tj.Charge),
                "fake_weight": np.ones(ntau), "origin": np.zeros(ntau), **ip})
    counts = ak.num(tj, axis=1)
    vis_pt = pt(chg["px"] + neu["px"], chg["py"] + neu["py"])
    taus = _by_pt({f: ak.unflatten(rec[f], counts) for f in _TAU_RECORD},
                  ak.unflatten(vis_pt, counts))
    return taus, jets, ak.to_numpy(ak.sum(jet.PT, axis=1)).astype(np.float64)


def _met(ch: _Chunk, jet_pt_sum: Flat, leptons: ak.Array) -> dict[str, Flat]:
    plan = ch.plan
    if plan.met == "MissingET":
        met = ch.per_event("MissingET", "MET", 0.0)
        phi = ch.per_event("MissingET", "Phi", 0.0)
        v = from_pt_eta_phi_m(met, np.zeros(ch.n), phi, np.zeros(ch.n))
        mx, my = v[:, 0], v[:, 1]
    else:
        mx, my = np.zeros(ch.n), np.zeros(ch.n)
        for coll, pt_field in (("EFlowTrack", "PT"), ("EFlowPhoton", "ET"),
                               ("EFlowNeutralHadron", "ET")):
            c = ch.coll(coll, (pt_field, "Phi"))
            p4 = _p4(c[pt_field], ak.zeros_like(c.Phi), c.Phi, 0.0)
            # MET = -(vector sum of the energy-flow objects' pT)
            mx -= ak.to_numpy(ak.sum(p4["px"], axis=1))
            my -= ak.to_numpy(ak.sum(p4["py"], axis=1))
    if plan.sumet == "ScalarHT":
        sumet = ch.per_event("ScalarHT", "HT", 0.0)
    else:
        # Scalar pT sum of the ScalarHT module's inputs (jets, electrons, muons, photons).
        lep_pt = ak.to_numpy(ak.sum(pt(leptons.px, leptons.py), axis=1))
        sumet = jet_pt_sum + lep_pt.astype(np.float64)
        if "Photon" in plan.present:
            sumet = sumet + ak.to_numpy(ak.sum(ch.coll("Photon", ("PT",)).PT, axis=1))
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


@dataclass
class _Links:
    """A chunk's Particle links as indices into its flat particle record (-1: none).

    ``evt``: event of each particle; ``m1``: first mother; daughters: the range ``lo..hi``
    (none when ``lo`` < 0) plus ``extra`` (the D2 entry when D2 < D1).
    """

    evt: NDArray[np.int64]
    m1: NDArray[np.int64]
    lo: NDArray[np.int64]
    hi: NDArray[np.int64]
    extra: NDArray[np.int64]


def _links(pid_: ak.Array, m1_: ak.Array, d1_: ak.Array, d2_: ak.Array,
           uid_: ak.Array | None, first_entry: int = 0) -> tuple[_Links | None, str | None]:
    """The checked Particle links of a chunk whose first entry is ``first_entry``, or None
    and what is wrong.

    Without ``uid_`` the stored in-event indices are used; with it (``fUniqueID``, = 1 + the
    index in the unfiltered list, as Delphes assigns it) the indices are mapped from the
    unfiltered into the stored list (a mother not stored becomes -1; a daughter range keeps the
    stored entries of the range). Checks: every index in range (-1 = none); the fUniqueIDs
    increasing within an entry; each daughter of a tau has that tau as its mother M1; with
    ``uid_``, no daughter of a tau dropped."""
    counts = ak.to_numpy(ak.num(pid_, axis=1)).astype(np.int64)
    evt = np.repeat(np.arange(len(counts)), counts)
    base = (np.cumsum(counts) - counts)[evt]
    size = counts[evt]

    pid, m1, d1, d2 = (_flat(x, np.int64) for x in (pid_, m1_, d1_, d2_))

    def at(i: int) -> str:
        return f"entry {first_entry + evt[i]}, index {i - base[i]} (PID {pid[i]})"

    limit = size if uid_ is None else np.full(len(pid), np.iinfo(np.int64).max)
    for name, v in (("M1", m1), ("D1", d1), ("D2", d2)):
        bad = np.flatnonzero((v < -1) | (v >= limit))
        if len(bad):
            i = bad[0]
            return None, (f"{at(i)}: {name} = {v[i]} is outside the entry's {size[i]} "
                          "particles" if v[i] >= 0 else f"{at(i)}: {name} = {v[i]} < -1")
    # Daughters: the range D1..D2, or the two entries D1 and D2 when D2 < D1.
    is_range = (d1 >= 0) & (d2 >= d1)
    dropped = np.zeros(len(pid), dtype=bool)  # a daughter of this particle is not stored
    if uid_ is None:
        def exact(v: NDArray[np.int64]) -> NDArray[np.int64]:
            return np.where(v >= 0, v + base, -1)

        lo_r, hi_r = exact(d1), exact(d2)
    else:
        orig = _flat(uid_, np.int64) - 1
        same = evt[1:] == evt[:-1]
        bad = np.union1d(np.flatnonzero(orig < 0),
                         np.flatnonzero(same & (np.diff(orig) <= 0)) + 1)
        if len(bad):
            i = int(bad[0])
            return None, (f"{at(i)}: fUniqueID = {orig[i] + 1} is not 1 + an index increasing "
                          "along the entry's list")
        big = int(orig.max()) + 2 if len(orig) else 1
        keys = evt * big + orig  # sorted: by entry, then original index

        def pos(v: NDArray[np.int64], side: Literal["left", "right"]) -> NDArray[np.int64]:
            return np.searchsorted(keys, evt * big + np.minimum(v, big - 1), side=side)

        def exact(v: NDArray[np.int64]) -> NDArray[np.int64]:
            if len(keys) == 0:
                return np.full(len(v), -1, dtype=np.int64)
            p = np.minimum(pos(v, "left"), len(keys) - 1)
            ok = (v >= 0) & (keys[p] == evt * big + np.minimum(v, big - 1))
            return np.where(ok, p, -1)

        # D1..D2 range: the stored entries whose original index is in it (the filter keeps the
        # order); a single D1 or D2, or the pair D1, D2 with D2 < D1: those entries.
        lo_rng = pos(d1, "left")
        hi_rng = pos(d2, "right") - 1
        kept = np.where(is_range, np.maximum(hi_rng - lo_rng + 1, 0), 0)
        dropped = is_range & (kept < d2 - d1 + 1)
        lo_x, hi_x = exact(d1), exact(d2)
        dropped |= (d1 >= 0) & ~is_range & (lo_x < 0)
        dropped |= (d2 >= 0) & ~is_range & (hi_x < 0)
        lo_r = np.where(is_range, np.where(kept > 0, lo_rng, -1), lo_x)
        hi_r = np.where(is_range, np.where(kept > 0, hi_rng, -1), hi_x)
    M1 = exact(m1)
    lo = np.where(d1 >= 0, lo_r, hi_r)  # -1: no daughter
    hi = np.where(is_range, hi_r, lo)
    extra = np.where((d1 >= 0) & (d2 >= 0) & (d2 < d1), hi_r, -1)
    links = _Links(evt, M1, lo, hi, extra)

    tau = np.flatnonzero(np.abs(pid) == 15)
    lost = tau[dropped[tau]]
    if len(lost):
        return None, f"{at(lost[0])}: a decay product of this tau is not in the list"
    t, j = _daughter_pairs(links, tau)
    wrong = np.flatnonzero(M1[j] != t)
    if len(wrong):
        k = wrong[0]
        return None, (f"{at(t[k])}: its daughter at index {j[k] - base[j[k]]} "
                      f"(PID {pid[j[k]]}) has the mother M1 = {m1[j[k]]}")
    return links, None


def _daughter_pairs(links: _Links, parents: NDArray[np.int64]) -> tuple[NDArray[np.int64],
                                                                        NDArray[np.int64]]:
    """(parent, daughter) flat index pairs of the given parents."""
    lo, hi = links.lo[parents], links.hi[parents]
    n = np.where(lo >= 0, np.maximum(hi - lo + 1, 0), 0)
    t = np.repeat(parents, n)
    j = np.repeat(lo, n) + np.arange(len(t)) - np.repeat(np.cumsum(n) - n, n)
    ex = parents[links.extra[parents] >= 0]
    return np.concatenate([t, ex]), np.concatenate([j, links.extra[ex]])


def _truth(ch: _Chunk) -> dict[str, NDArray]:
    n = ch.n
    plan = ch.plan
    raw = {f: ch.arrays[plan.key("Particle", f)] for f in _FIELDS["Particle"]}
    uid = (ch.arrays[plan.key("Particle", "fUniqueID")] if plan.particle_links == "fUniqueID"
           else None)
    links, problem = _links(raw["PID"], raw["M1"], raw["D1"], raw["D2"], uid, ch.start)
    if links is None:
        raise DelphesError(f"{ch.where()}: {plan.names['Particle']} mother/daughter indices "
                           f"inconsistent ({problem}), although the "
                           f"first {PARTICLE_CHECK_ENTRIES} entries were consistent "
                           f"(links: {plan.particle_links})")
    evt = links.evt

    pid = _flat(raw["PID"], np.int64)
    status = np.abs(_flat(raw["Status"], np.int64))
    charge = _flat(raw["Charge"])
    p = np.stack([_flat(raw[c]) for c in ("Px", "Py", "Pz", "E")], axis=1)
    abspid = np.abs(pid)
    is_nu = np.isin(abspid, _NEUTRINOS)

    # Decaying taus: taus with a nu_tau among their daughters.
    tau = np.flatnonzero(abspid == 15)
    t, j = _daughter_pairs(links, tau)
    n_nut = np.bincount(t, abspid[j] == 16, minlength=len(pid))
    decaying = (abspid == 15) & (n_nut > 0)

    cols: dict[str, NDArray] = {}
    modes: dict[str, NDArray] = {}
    tag = np.zeros(len(pid), dtype=np.int8)
    for leg, sign, tsign in (("p", -15, 1), ("m", 15, -1)):
        cand = np.flatnonzero(decaying & (pid == sign))
        order = np.lexsort((p[cand, 3], evt[cand]))  # by event, then energy: the last one wins
        idx = np.full(n, -1, dtype=np.int64)
        idx[evt[cand[order]]] = cand[order]
        present = idx >= 0
        _, dp = _daughter_pairs(links, idx[present])
        dp = np.sort(dp)
        tag[idx[present]] = tsign
        tag[dp] = tsign
        leg_cols = leg_columns(leg, dp, evt, p, pid, charge[dp], present,
                               _take(p, idx, np.nan))
        cols.update(leg_cols)
        modes[leg] = leg_cols[f"decay_mode_{leg}"]
    cols["truth_channel"] = channel_of(modes["p"], modes["m"]).astype(object)
    pair = np.stack([cols[f"tau_{c}_p"] + cols[f"tau_{c}_m"] for c in _P4], axis=1)
    cols["m_tautau"] = mass(pair)  # NaN where a tau is absent
    cols["pt_tautau"] = pt(pair[:, 0], pair[:, 1])

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
    cols["m_hat"] = np.where(both, mass(_take(p, in1, 0.0) + _take(p, in2, 0.0)), 0.0)

    # Tau descendants: propagate the leg tag down the M1 links (decay chains are short).
    m1 = links.m1
    src = np.flatnonzero(m1 >= 0)
    for _ in range(100):
        new = tag[m1[src]]
        changed = (tag[src] == 0) & (new != 0)
        if not changed.any():
            break
        tag[src[changed]] = new[changed]
    final = status == 1
    # |eta| from the four-vector layer; pT = 0 gives +-inf (outside), a zero momentum 0
    with np.errstate(divide="ignore", invalid="ignore"):
        abs_eta = np.abs(eta(p[:, 0], p[:, 1], p[:, 2]))
    for name, mask in (("nu_other", final & is_nu & (tag == 0)),
                       ("vis_out", final & ~is_nu & ~(abs_eta < TRUTH_ETA_MAX))):
        cols[f"{name}_px"] = np.bincount(evt[mask], p[mask, 0], minlength=n)
        cols[f"{name}_py"] = np.bincount(evt[mask], p[mask, 1], minlength=n)
    cols["spin_weight"] = np.ones(n)
    for c in ("x", "y", "z"):  # vertices are not read from Delphes
        cols[f"pv_{c}"] = np.full(n, np.nan)
        for leg in ("p", "m"):
            cols[f"tau_dv_{c}_{leg}"] = np.full(n, np.nan)
    return cols


# --------------------------------------------------------------------------------------------
# Public API


def _ip_summary(plans: Sequence[_FilePlan]) -> str:
    """One line on where the impact-parameter columns come from, over all inputs."""
    notes = sorted({pl.ip_note() for pl in plans})
    if len(notes) == 1:
        return notes[0]
    return "; ".join(f"{pl.path}: {pl.ip_note()}" for pl in plans)


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
        no_truth = [pl.truth_problem or f"no usable {pl.names['Particle']} collection in "
                    f"{pl.path}" for pl in plans if not pl.truth]
        self.metadata: dict[str, Any] = {
            "sample": sample,
            "cross_section_pb": cross_section_pb,
            "normalisation": "unnormalised" if cross_section_pb is None else "cross_section",
            "weight_definition": weight_def,
            "gen_weight_sum": weight_sum,
            "n_events": self.n_events,
            "groups": list(self.groups),
            "truth": "Particle" if truth else f"omitted: {'; '.join(no_truth)}",
            "inputs": [pl.info() for pl in plans],
            "select_config": self._select.to_dict(),
            "tau_constituents": {"cone_dr": TAU_CONE_DR, "track_pt_min_gev": TRACK_PT_MIN,
                                 "neutral_et_min_gev": NEUTRAL_ET_MIN,
                                 "track_mass": "charged pion", "photon_mass": 0.0},
            "met_covariance": f"diagonal, sigma^2 = {MET_RESOLUTION_K}^2 GeV x met_sumet per "
                              "component (ATLAS Run-1, EPJC 72 (2012) 1844); xy = 0",
            "impact_parameters": _ip_summary(plans),
            "frame": "laboratory; z along beam 1; GeV; impact parameters in mm",
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
                    table = self._table(_Chunk(arrays, plan, start), first)
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
        try:
            cands = _candidates(ch, event_id)
            cols: dict[str, Any] = dict(select(cands, self._select))
            cols.update(impact.leg_columns(cands, cols))
        except DelphesError:
            raise
        except Exception as err:
            raise DelphesError(f"{ch.where()}: cannot convert the objects "
                               f"({type(err).__name__}: {_one_line(err)})") from err
        gen_w = (ch.per_event("Event", "Weight", 1.0) if "Event" in ch.plan.present
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
    """The input paths; DelphesError for none or one file given twice (its events twice)."""
    if isinstance(paths, str | os.PathLike):
        return [Path(paths)]
    out = [Path(p) for p in paths]
    if not out:
        raise DelphesError("no input files given")
    seen: dict[Path, Path] = {}
    for p in out:
        key = p.resolve()
        if key in seen:
            raise DelphesError(f"{p}: given twice (also as {seen[key]}): its events would be "
                               "imported twice; give each file once")
        seen[key] = p
    return out


def _sha256(path: Path) -> str:
    """SHA-256 (hex) of the bytes of ``path``."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_distinct_content(plans: Sequence[_FilePlan]) -> None:
    """Hash each input (recorded as ``sha256``); DelphesError for two files with the same
    content (a copy of one file: its events twice)."""
    seen: dict[str, Path] = {}
    for pl in plans:
        pl.sha256 = _sha256(pl.path)
        if pl.sha256 in seen:
            raise DelphesError(f"{pl.path}: the same content as {seen[pl.sha256]} (sha256 "
                               f"{pl.sha256[:16]}): its events would be imported twice; give "
                               "each file once")
        seen[pl.sha256] = pl.path


def read_delphes(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
                 sample: str = "delphes", cross_section_pb: float | None = None,
                 step_size: int | str = 5000, select_config: SelectConfig | None = None,
                 allow_missing: Iterable[str] = (),
                 collections: Mapping[str, str] | None = None) -> DelphesStream:
    """Stream Delphes ROOT files as ditau event tables (one per chunk of ``step_size`` events).

    All inputs are opened and checked first: a missing or unreadable file, a file without the
    ``Delphes`` tree, without a required collection or with a branch of another shape than
    the reader needs (jagged object lists; one number or a one-entry list per event for
    MissingET, ScalarHT and Event) raises :class:`DelphesError` naming the file, every
    missing collection and every wrong branch, before any event is read.

    ``allow_missing``: the lepton collections (``"Electron"``, ``"Muon"``, or ``"electrons"``,
    ``"muons"``) that may be absent (then empty). ``collections``: collection names other than
    Delphes' defaults, keyed by what is read (keys of :data:`COLLECTIONS`, e.g.
    ``{"jets": "KTjet"}``, or the default name, ``{"Jet": "KTjet"}``); unknown keys raise
    :class:`DelphesError`. ``cross_section_pb``: the sample's cross section [pb], for the
    ``weight`` column. A Particle collection whose indices are inconsistent (written from a
    filtered list) is repaired through ``fUniqueID`` when that gives the unfiltered index,
    else the truth is omitted with a :class:`DelphesWarning`. The returned iterator's
    ``metadata`` records inputs and fallbacks (module docstring).
    """
    files = _paths(paths)
    allowed = _allowed(allow_missing)
    names_of = _collection_names(collections)
    if cross_section_pb is not None and not (math.isfinite(cross_section_pb)
                                             and cross_section_pb > 0):
        raise DelphesError(f"cross_section_pb must be positive, got {cross_section_pb!r}")
    if isinstance(step_size, int) and step_size < 1:
        raise DelphesError(f"step_size must be a positive number of events, got {step_size}")
    plans: list[_FilePlan] = []
    problems = _Problems()
    for path in files:
        plan, found = _plan(path, allowed, names_of)
        problems.messages += found.messages
        problems.allow += [c for c in found.allow if c not in problems.allow]
        problems.suggested.update({k: v for k, v in found.suggested.items()
                                   if k not in problems.suggested})
        if plan is not None:
            plans.append(plan)
    if problems.messages:
        raise DelphesError("; ".join(problems.messages), allow_missing=problems.allow,
                           suggested=problems.suggested)
    _check_distinct_content(plans)
    for plan in plans:
        if plan.truth_problem is not None:
            warnings.warn(plan.truth_problem, DelphesWarning, stacklevel=2)
    weight_sum = None
    if cross_section_pb is not None:
        weight_sum = sum(_gen_weight_sum(pl) for pl in plans)
        if sum(pl.entries for pl in plans) and not weight_sum > 0:
            raise DelphesError(f"the generator weights ({names_of['Event']}.Weight) of "
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
    """Read Delphes files (:func:`read_delphes` keywords, e.g. ``allow_missing``,
    ``collections={"jets": "KTjet"}``) into one ditau Parquet file ``out``.

    The file appears only when complete (atomic write); metadata: stage ``import-delphes``,
    the input files (with their SHA-256) and the fallbacks used, and a ``run_id`` from the
    inputs' content and the import settings (same inputs and settings, same id; the paths
    and ``step_size`` do not enter). ``out`` may not be one of the inputs. ``progress``: a
    progress bar on stderr. Raises :class:`DelphesError` (inputs) or the schema's errors
    (output); warns :class:`DelphesWarning` when the truth is omitted.
    """
    from tqdm import tqdm

    start = time.perf_counter()
    check_not_input(out, _paths(paths))
    target = check_writable(out)
    stream = read_delphes(paths, **kw)
    metadata = {"stage": "import-delphes", "ditau_version": version("ditau"), **stream.metadata}
    # the inputs' content and the settings; not what names paths (file, notes, truth)
    metadata[RUN_ID] = run_id("import-delphes", {
        **{k: v for k, v in stream.metadata.items() if k not in ("inputs", "truth")},
        "inputs": [{k: v for k, v in i.items() if k not in ("file", "notes")}
                   for i in stream.metadata["inputs"]]})
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
