"""Reconstructed objects of a batch of events before pairing: the detector stage's output.

Both producers (the parametric detector and the Delphes reader) return :class:`Candidates`;
:func:`ditau.select.select` turns them into the schema's ``reco`` columns. Objects are Awkward
record lists, one list per event, each list sorted by decreasing pT. Frame: laboratory, z along
beam 1; units GeV.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import awkward as ak
import numpy as np
from numpy.typing import NDArray

#: Origin codes of a tau_had candidate.
ORIGIN_REAL: Final[int] = 0
ORIGIN_JET: Final[int] = 1
ORIGIN_E: Final[int] = 2
ORIGIN_MU: Final[int] = 3

#: Fields of each collection (all float64 except where noted).
LEPTON_FIELDS: Final[tuple[str, ...]] = ("px", "py", "pz", "e", "charge", "flavour")
TAU_FIELDS: Final[tuple[str, ...]] = (
    "chg_px", "chg_py", "chg_pz", "chg_e",  # measured charged part (track(s))
    "neu_px", "neu_py", "neu_pz", "neu_e",  # measured neutral clusters (0 if none)
    "n_tracks", "n_neu", "charge", "fake_weight", "origin",
)
JET_FIELDS: Final[tuple[str, ...]] = ("px", "py", "pz", "e")
MET_FIELDS: Final[tuple[str, ...]] = (
    "met_x", "met_y", "met_sumet", "met_cov_xx", "met_cov_xy", "met_cov_yy",
)


@dataclass
class Candidates:
    """Per-event object lists and event-level MET for ``n`` events.

    leptons
        isolated, identified electrons and muons: ``px, py, pz, e``, ``charge`` (+-1),
        ``flavour`` (11 or 13).
    taus
        hadronic tau candidates, visible part split into the charged track(s) ``chg_*`` and
        the neutral (pi0) clusters ``neu_*`` (zeros when ``n_neu`` = 0); ``n_tracks``,
        ``charge``; ``origin`` (0 real tau, 1 jet, 2 electron, 3 muon faking a tau) and
        ``fake_weight`` (the misidentification probability for fakes, 1 for real taus: the
        event weight of a selection using it is multiplied by it).
    jets
        jets not used as leptons or taus: ``px, py, pz, e``.
    met
        ``met_x, met_y, met_sumet`` and the MET covariance ``met_cov_xx, _xy, _yy`` (GeV^2).
    event_id
        the events' ids (for messages).
    """

    leptons: ak.Array
    taus: ak.Array
    jets: ak.Array
    met: dict[str, NDArray[np.float64]]
    event_id: NDArray[np.int64]

    def __post_init__(self) -> None:
        n = len(self.event_id)
        for name, arr, fields in (("leptons", self.leptons, LEPTON_FIELDS),
                                  ("taus", self.taus, TAU_FIELDS),
                                  ("jets", self.jets, JET_FIELDS)):
            if len(arr) != n:
                raise ValueError(f"Candidates.{name}: {len(arr)} event lists for {n} events")
            missing = [f for f in fields if f not in arr.fields]
            if missing:
                raise ValueError(f"Candidates.{name}: missing field(s) {missing}")
        missing = [f for f in MET_FIELDS if f not in self.met]
        if missing:
            raise ValueError(f"Candidates.met: missing {missing}")
        for f in MET_FIELDS:
            if len(self.met[f]) != n:
                raise ValueError(f"Candidates.met['{f}']: length {len(self.met[f])} != {n}")

    def __len__(self) -> int:
        return len(self.event_id)


def records(counts: NDArray[np.int64], fields: dict[str, NDArray]) -> ak.Array:
    """Per-event record lists from flat per-object arrays grouped by event (``counts``)."""
    return ak.unflatten(ak.zip(dict(fields.items()), depth_limit=1), counts)


def sort_by_pt(arr: ak.Array, px: str = "px", py: str = "py") -> ak.Array:
    """Sort each event's list by decreasing pT (fields ``px``/``py`` name the components)."""
    order = ak.argsort(np.hypot(arr[px], arr[py]), axis=1, ascending=False)
    return arr[order]
