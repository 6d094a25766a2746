"""Generator-level tau filter: veto events after the parton level, before hadronisation/decays.

Most of the generation time of a correlated Z -> tau tau event is spent in hadronisation and
the tau decays (benchmarks/RESULTS.md), and most events cannot enter the signal region
because a tau is too soft or too forward. A Pythia ``UserHooks::doVetoPartonLevel`` veto on
the final (post-FSR) tau momenta skips that work for them. Pythia counts vetoed events in
``sigmaGen`` (checked in tests/test_generate_run.py), so the event weights stay the
physical cross section of the filtered phase space.

The cuts must be looser than the analysis: visible pT <= E_vis <= E_tau, but visible pT can
exceed the tau pT when the neutrinos recoil backwards, so leave a margin. The default
``SIGNAL_REGION_FILTER`` keeps every signal-region event of a 20k-event unfiltered sample
(0 lost of 716) and passes 50 % of all events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ditau.physics import pt_eta


@dataclass(frozen=True)
class TauFilter:
    """Keep events whose two final taus both have pT > ``pt_min`` and |eta| < ``abs_eta_max``,
    and the harder one pT > ``pt_lead_min`` (GeV, laboratory frame)."""

    pt_min: float
    pt_lead_min: float
    abs_eta_max: float

    def __post_init__(self) -> None:
        if not (0 <= self.pt_min <= self.pt_lead_min) or not self.abs_eta_max > 0:
            raise ValueError(f"tau_filter: need 0 <= pt_min <= pt_lead_min and abs_eta_max > 0, "
                             f"got {self}")

    def passes(self, px: np.ndarray, py: np.ndarray, pz: np.ndarray) -> np.ndarray:
        """Vectorised filter decision for arrays of shape (..., 2): the two taus per event."""
        pt, eta = pt_eta(px, py, pz)
        return ((pt.min(axis=-1) > self.pt_min) & (pt.max(axis=-1) > self.pt_lead_min)
                & (np.abs(eta) < self.abs_eta_max).all(axis=-1))


#: Looser than every signal-region threshold (tau_had 25 GeV, mu 14 GeV, |eta| < 2.5).
SIGNAL_REGION_FILTER = TauFilter(pt_min=12.0, pt_lead_min=22.0, abs_eta_max=2.7)


def parse_tau_filter(value: object) -> TauFilter | None:
    """A filter from its config/CLI spelling: None, 'sr', 'PT_MIN,PT_LEAD_MIN,ABS_ETA_MAX',
    a mapping of the three fields, or a TauFilter. Raises ValueError naming what is wrong."""
    if value is None or isinstance(value, TauFilter):
        return value
    if isinstance(value, dict):
        try:
            return TauFilter(**value)
        except TypeError as err:
            raise ValueError(f"tau_filter: {err}") from err
    if isinstance(value, str):
        if value.strip().lower() == "sr":
            return SIGNAL_REGION_FILTER
        try:
            a, b, c = (float(x) for x in value.split(","))
        except ValueError as err:
            raise ValueError(f"tau_filter: expected 'sr' or three numbers "
                             f"'PT_MIN,PT_LEAD_MIN,ABS_ETA_MAX', got '{value}'") from err
        return TauFilter(pt_min=a, pt_lead_min=b, abs_eta_max=c)
    raise ValueError(f"tau_filter: expected 'sr', 'PT_MIN,PT_LEAD_MIN,ABS_ETA_MAX' or a mapping, "
                     f"got {type(value).__name__} {value!r}")


def make_hook(flt: TauFilter) -> Any:
    """A pythia8mc UserHooks instance applying ``flt``; counts considered/vetoed events."""
    import pythia8mc

    class _TauFilterHook(pythia8mc.UserHooks):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            pythia8mc.UserHooks.__init__(self)
            self.considered = 0
            self.vetoed = 0

        def canVetoPartonLevel(self) -> bool:
            return True

        def doVetoPartonLevel(self, event: Any) -> bool:
            # Reading the event record is per particle in the Python bindings (no batch API).
            mom = []
            for i in range(event.size()):
                prt = event[i]
                if abs(prt.id()) == 15 and prt.isFinal():
                    mom.append((prt.px(), prt.py(), prt.pz()))
            self.considered += 1
            keep = len(mom) == 2 and bool(flt.passes(*np.asarray(mom).T[:, None, :])[0])
            self.vetoed += not keep
            return not keep

    return _TauFilterHook()
