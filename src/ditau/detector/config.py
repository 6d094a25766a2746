"""Detector configuration and the named systematic variations."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ditau.config import StageConfig

#: Keys of the chunks' random streams: ``content`` (detector seed + digest of the chunk's
#: events; the default) and ``event_id`` (detector seed + first event id of the chunk: the
#: earlier key, which gave inputs of different runs the same noise; kept to reproduce files
#: written with it).
SEEDINGS: tuple[str, ...] = ("content", "event_id")


@dataclass(frozen=True)
class DetectorConfig(StageConfig):
    """Settings of the parametric ATLAS-like detector (GeV, radians).

    ``smear`` / ``efficiencies`` switch all resolutions / all efficiencies off (closure tests).
    The scale factors are the systematic handles: ``tes`` multiplies tau_had visible momenta,
    ``jes`` jet momenta, ``soft_met_scale`` the soft term, ``soft_met_resolution`` its
    resolution, ``ip_resolution`` the smearing of the track impact parameters (their quoted
    errors stay the nominal ones). Varying them re-uses the same random numbers, so a
    variation changes only what it should.

    Random numbers: each chunk of ``chunk_size`` events draws from streams keyed by ``seed``
    and, with ``seeding="content"`` (the default), a digest of the chunk's events (event ids
    and particle lists; :func:`ditau.detector.parametric.stream_seed`): inputs of different
    generation runs get independent noise even though each numbers its events from 0, and the
    same input with the same seed gives the same bytes whatever the workers or back-end.
    ``seeding="event_id"`` keys by the chunk's first event id only, as files written before
    this setting existed (no ``seeding`` in their ``detector_config``; it reproduces their reco
    columns, but its noise repeats across files that number their events alike).
    """

    config_name = "detector config"

    #: Detector random seed (the same for every input: the input's events key the streams).
    seed: int = 1
    #: How the chunks' random streams are keyed (:data:`SEEDINGS`; class doc).
    seeding: str = "content"
    smear: bool = True
    efficiencies: bool = True
    #: Calorimeter acceptance (ATLAS: |eta| < 4.9); particles beyond it are lost to MET.
    calo_eta_max: float = 4.9
    #: Tracker acceptance (ATLAS inner detector).
    track_eta_max: float = 2.5
    #: Tracks counted in a tau candidate (card: TauTagging TrackPTMin 1 GeV).
    track_pt_min: float = 1.0
    #: A tau's neutral (pi0) cluster is reconstructed when the summed photon E_T of the leg
    #: exceeds this (approximate ATLAS tau particle-flow pi0 threshold, EPJC 76 (2016) 295,
    #: Sec. 4); below it the photons are not attributed to the tau and join the soft term.
    pi0_et_min: float = 2.0
    #: Lepton isolation (card: ElectronIsolation / MuonIsolation): sum pT of other visible
    #: particles with pT > 0.5 GeV within dR < 0.5, over the lepton pT, below this.
    iso_dr: float = 0.5
    iso_pt_min: float = 0.5
    e_iso_max: float = 0.12
    mu_iso_max: float = 0.25
    #: An unselected lepton with relative isolation below this can fake a tau_had (lepton ->
    #: tau candidate); a lepton inside a jet of other particles cannot.
    fake_lepton_iso_max: float = 1.0
    #: anti-kt radius (ATLAS analyses; the Delphes card uses 0.6) and clustering threshold
    #: (below the 20 GeV analysis cut, so upward-fluctuating jets survive smearing).
    jet_r: float = 0.4
    jet_cluster_pt_min: float = 10.0
    #: Jets above this smeared pT are hard MET objects; softer ones join the soft term.
    jet_met_pt_min: float = 20.0
    #: Soft-term resolution per component: k sqrt(sum E_T of the soft term), with k the ATLAS
    #: Run-1 stochastic MET resolution 0.5 GeV^1/2 (EPJC 72 (2012) 1844, Sec. 6).
    soft_met_k: float = 0.5
    #: Fake tau_had candidates from jets and unidentified leptons, each carrying its
    #: misidentification probability as a weight. None: on for backgrounds (sample name not
    #: the signal's), off for the signal.
    fake_taus: bool | None = None
    #: Solenoid field along +z [T] for the track helices of the impact parameters (ATLAS:
    #: 2 T, JINST 3 (2008) S08003, Sec. 2); 0 gives straight tracks.
    bz: float = 2.0
    #: Events per chunk; chunks are the unit of random-number streams (fixed, so results do
    #: not depend on the worker count; another chunk size draws other numbers).
    chunk_size: int = 2000
    # --- systematic handles ---
    tes: float = 1.0
    jes: float = 1.0
    soft_met_scale: float = 1.0
    soft_met_resolution: float = 1.0
    ip_resolution: float = 1.0

    def __post_init__(self) -> None:
        for name in ("tes", "jes", "soft_met_scale", "soft_met_resolution", "ip_resolution",
                     "chunk_size", "calo_eta_max", "track_eta_max", "jet_r", "soft_met_k"):
            if not getattr(self, name) > 0:
                raise ValueError(f"detector config: {name} must be positive, "
                                 f"got {getattr(self, name)!r}")
        if not (isinstance(self.bz, int | float) and math.isfinite(self.bz) and self.bz >= 0):
            raise ValueError(f"detector config: bz must be a field >= 0 [T], got {self.bz!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"detector config: seed must be a non-negative integer, "
                             f"got {self.seed!r}")
        if self.seeding not in SEEDINGS:
            raise ValueError(f"detector config: seeding must be one of {list(SEEDINGS)}, "
                             f"got {self.seeding!r}")

    def vary(self, systematic: str | None) -> DetectorConfig:
        """This configuration with a named systematic variation applied."""
        if systematic is None or systematic == "nominal":
            return self
        if systematic not in SYSTEMATICS:
            raise ValueError(f"unknown systematic '{systematic}'; known: "
                             f"{', '.join(['nominal', *SYSTEMATICS])}")
        return dataclasses.replace(self, **SYSTEMATICS[systematic])


#: Named variations (the reference's TES, JES and soft-MET systematics, seed 001 impact table).
#: Sizes: TES +-3 % (ATLAS tau energy scale uncertainty, 2-3 % for 1-prong,
#: ATL-PHYS-PUB-2015-045 / EPJC 76 (2016) 295); JES +-3 % (ATLAS, EPJC 81 (2021) 689, 1-4 % in
#: the pT range here); soft term scale +-5 % and resolution +-10 % (ATLAS MET performance,
#: EPJC 78 (2018) 903, track soft term systematics of this order); track impact-parameter
#: resolution +-10 % (issue #16). Approximate sizes.
SYSTEMATICS: dict[str, dict[str, float]] = {
    "tes_up": {"tes": 1.03},
    "tes_down": {"tes": 0.97},
    "jes_up": {"jes": 1.03},
    "jes_down": {"jes": 0.97},
    "soft_met_scale_up": {"soft_met_scale": 1.05},
    "soft_met_scale_down": {"soft_met_scale": 0.95},
    "soft_met_resolution_up": {"soft_met_resolution": 1.10},
    "soft_met_resolution_down": {"soft_met_resolution": 0.90},
    "ip_res_up": {"ip_resolution": 1.10},
    "ip_res_down": {"ip_resolution": 0.90},
}
