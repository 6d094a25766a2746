"""Generation configuration: a validated dataclass, loadable from YAML, mapped to Pythia 8."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ditau.config import StageConfig
from ditau.generate.tau_filter import TauFilter, parse_tau_filter

#: tau- decay channels (Pythia 8 product lists, in Pythia's ordering) for each forced mode;
#: applied with ``15:onIfMatch`` (Pythia conjugates for the tau+). Note the rho mode is the
#: inclusive pi- pi0 nu channel (Pythia meMode 1532, rho/rho'/rho'' current).
FORCED_MODE_PRODUCTS: dict[str, str] = {
    "pi": "16 -211",
    "rho": "16 111 -211",
    "e": "16 11 -12",
    "mu": "16 13 -14",
}

@dataclass(frozen=True)
class Process:
    """A Pythia 8 hard process and how its sample is to be read."""

    settings: tuple[str, ...]
    doc: str
    #: True: the hard process is a tau pair (signal); truth extraction requires it.
    #: False: any decaying taus (e.g. from W or top decays) are tagged, at most one per charge.
    tau_pair: bool = False
    #: True: ``GenerateConfig.mass_window`` sets PhaseSpace:mHatMin/Max (s-channel Z/gamma*).
    mass_window: bool = False
    #: PhaseSpace:pTHatMin for 2 -> 2 processes (None: Pythia's default).
    pthat_min: float | None = None


#: Known processes. Backgrounds as in the reference (seed 001, background table): W -> l nu
#: + jets, W -> tau nu (+ jets), Z/gamma* -> ll, ttbar. W + jet uses the O(alpha_s) 2 -> 2
#: matrix elements with pTHat > 20 GeV: the jet that can fake a tau_had must pass the 25 GeV
#: tau trigger threshold, so softer W production cannot enter the signal region.
PROCESSES: dict[str, Process] = {
    "ztautau": Process(
        ("WeakSingleBoson:ffbar2gmZ = on", "WeakZ0:gmZmode = 0",
         "23:onMode = off", "23:onIfAny = 15"),
        "pp -> Z/gamma* -> tau+ tau- with full gamma*/Z interference (signal)",
        tau_pair=True, mass_window=True),
    "zll": Process(
        ("WeakSingleBoson:ffbar2gmZ = on", "WeakZ0:gmZmode = 0",
         "23:onMode = off", "23:onIfAny = 11 13"),
        "pp -> Z/gamma* -> e+e- / mu+mu- (lepton -> tau_had fakes)", mass_window=True),
    "wlnu": Process(
        ("WeakBosonAndParton:qqbar2Wg = on", "WeakBosonAndParton:qg2Wq = on",
         "24:onMode = off", "24:onIfAny = 11 13"),
        "pp -> W + jet, W -> e nu / mu nu (jet -> tau_had fakes)", pthat_min=20.0),
    "wtaunu": Process(
        ("WeakBosonAndParton:qqbar2Wg = on", "WeakBosonAndParton:qg2Wq = on",
         "24:onMode = off", "24:onIfAny = 15"),
        "pp -> W + jet, W -> tau nu (real tau + jet -> tau_had fake)", pthat_min=20.0),
    "ttbar": Process(
        ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on"),
        "pp -> ttbar, all decays"),
}

#: The signal process name.
SIGNAL: str = "ztautau"

#: How the tau-pair spin is generated (``GenerateConfig.spin``): "exact" = Pythia's correlated
#: decays (the reference); "weights" = unpolarised decays plus a per-event ``spin_weight``.
SPIN_MODES: tuple[str, ...] = ("exact", "weights")
#: The state the spin weights take the unpolarised decays to (``GenerateConfig.spin_state``):
#: "sm" = the LO Standard-Model state (ditau.spin.state_from_truth); "separable" = the product
#: state with the same single-tau polarisations (C = B+ B-^T, no entanglement); "unpolarised"
#: = B = 0, C = 0 (every weight 1).
SPIN_STATES: tuple[str, ...] = ("sm", "separable", "unpolarised")


class ConfigError(ValueError):
    """An invalid configuration value; the message names the field."""


@dataclass(frozen=True)
class GenerateConfig(StageConfig):
    """Everything that defines a generated sample (recorded in the output file's metadata).

    Defaults are the reference analysis: pp at 13 TeV, Z/gamma* -> tau tau with
    60 < m_hat < 120 GeV, ISR/FSR/MPI/hadronisation on, correlated tau decays.
    """

    process: str = "ztautau"
    events: int = 2000
    seed: int = 1
    sqrt_s: float = 13000.0
    mass_window: tuple[float, float] = (60.0, 120.0)
    #: Force both taus into these modes (subset of pi, rho, e, mu); weights keep rates physical.
    force_decays: tuple[str, ...] | None = None
    isr: bool = True
    fsr: bool = True
    mpi: bool = True
    hadronisation: bool = True
    #: False switches tau spin correlations off (TauDecays:mode = 3, unpolarised). Validation
    #: only: never for a signal sample (use ``spin: weights`` for fast signal samples).
    tau_spin_correlations: bool = True
    #: "exact": Pythia's correlated decays (default, the reference; spin_weight = 1).
    #: "weights": unpolarised decays (TauDecays:mode = 3; 2.3x the events, 1.6x the effective
    #: events per CPU-second with full physics, benchmarks/RESULTS.md; no gamma*/Z -> tau tau
    #: helicity matrix element) and a per-event ``spin_weight`` to ``spin_state`` computed from
    #: the truth (ditau.spin), so that weighted distributions equal the exact ones at LO.
    spin: str = "exact"
    #: Target state of the spin weights (``spin: weights`` only): see :data:`SPIN_STATES`.
    spin_state: str = "sm"
    #: Opt-in approximation: massless fermions in the gamma*/Z -> tau tau helicity matrix
    #: element above this mass (Pythia TauDecays:mMinForZ); ~1.6x faster, O(m_tau^2/m_Z^2)
    #: change in the spin density matrix. None = exact massive matrix element (default).
    tau_me_massless_above: float | None = None
    #: Generator-level filter on the final taus before hadronisation and decays (tau-pair
    #: processes only; see ditau.generate.tau_filter). Weights stay physical.
    tau_filter: TauFilter | None = None
    #: Store the visible final state (needed to re-run the detector stage).
    keep_particles: bool = True
    #: Visible final-state particles beyond this |eta| are summed into vis_out_px/py only.
    particle_eta_max: float = 5.0
    #: Events per independent job (fixed, so the output does not depend on the worker count).
    events_per_job: int = 1000
    #: Events per Pythia nextBatch call inside a job (bounds memory).
    batch_size: int = 100
    #: Gaussian widths (x, y, z) [mm] of the luminous region: each event's primary vertex
    #: (``pv_*``) is drawn from them and every vertex of the event shifted by it; None: all
    #: events at the origin. ATLAS-like: ~10 um transverse, ~40 mm along the beam (LHC Run 2;
    #: cf. 13 um and 54 mm expected for 2012, ATLAS, EPJC 77 (2017) 332, Table 1).
    #: Drawn with numpy from the job seed, not by Pythia (Beams:allowVertexSpread, the same
    #: rigid shift of the event), so the generated events do not change with it.
    beam_spot_mm: tuple[float, float, float] | None = (0.010, 0.010, 40.0)
    #: Extra Pythia settings appended verbatim (recorded in the metadata).
    extra_settings: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        # the config/CLI spellings of the tau filter ('sr', 'a,b,c', a mapping) also in Python
        if self.tau_filter is not None and not isinstance(self.tau_filter, TauFilter):
            try:
                object.__setattr__(self, "tau_filter", parse_tau_filter(self.tau_filter))
            except ValueError as err:
                raise ConfigError(str(err)) from err
        self.validate()

    def validate(self) -> None:
        if self.process not in PROCESSES:
            raise ConfigError(f"process: unknown process '{self.process}'; "
                              f"known: {', '.join(sorted(PROCESSES))}")
        for name in ("events", "events_per_job", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ConfigError(f"{name}: must be a positive integer, got {v!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ConfigError(f"seed: must be a non-negative integer, got {self.seed!r}")
        lo, hi = self.mass_window
        if not 0 < lo < hi:
            raise ConfigError(f"mass_window: need 0 < low < high, got {self.mass_window}")
        if hi * 2 > self.sqrt_s:
            raise ConfigError(f"mass_window: upper edge {hi} GeV is too high for "
                              f"sqrt_s = {self.sqrt_s} GeV")
        if self.force_decays is not None:
            if not PROCESSES[self.process].tau_pair:
                raise ConfigError(f"force_decays: only for tau-pair processes, not "
                                  f"'{self.process}' (the weights assume two taus)")
            if not self.force_decays:
                raise ConfigError("force_decays: empty list; use null for no forcing")
            bad = [m for m in self.force_decays if m not in FORCED_MODE_PRODUCTS]
            if bad:
                raise ConfigError(f"force_decays: unknown mode(s) {bad}; "
                                  f"choose from {list(FORCED_MODE_PRODUCTS)}")
        if self.tau_filter is not None and not PROCESSES[self.process].tau_pair:
            raise ConfigError(f"tau_filter: only for tau-pair processes, not '{self.process}'")
        if self.particle_eta_max <= 0:
            raise ConfigError("particle_eta_max: must be positive")
        if self.beam_spot_mm is not None:
            bs = self.beam_spot_mm
            if (not isinstance(bs, tuple) or len(bs) != 3
                    or not all(isinstance(x, int | float) and not isinstance(x, bool)
                               and math.isfinite(x) and x >= 0 for x in bs)):
                raise ConfigError(f"beam_spot_mm: three widths (x, y, z) >= 0 in mm, or null; "
                                  f"got {bs!r}")
        if self.tau_me_massless_above is not None and self.tau_me_massless_above <= 0:
            raise ConfigError("tau_me_massless_above: must be positive or null")
        if self.spin not in SPIN_MODES:
            raise ConfigError(f"spin: must be one of {list(SPIN_MODES)}, not {self.spin!r}")
        if self.spin_state not in SPIN_STATES:
            raise ConfigError(f"spin_state: must be one of {list(SPIN_STATES)}, "
                              f"not {self.spin_state!r}")
        if self.spin == "weights" and self.process != SIGNAL:
            raise ConfigError(f"spin: 'weights' only for the Drell-Yan signal '{SIGNAL}', not "
                              f"'{self.process}' (the weights use its q qbar -> gamma*/Z state)")
        if self.spin == "weights" and not self.tau_spin_correlations:
            raise ConfigError("spin: 'weights' already generates unpolarised decays; leave "
                              "tau_spin_correlations at true")
        if self.spin == "exact" and self.spin_state != "sm":
            raise ConfigError("spin_state: only with spin: weights")

    @property
    def unpolarised_decays(self) -> bool:
        """True when Pythia decays the taus unpolarised (``spin: weights`` or
        ``tau_spin_correlations: false``)."""
        return self.spin == "weights" or not self.tau_spin_correlations

    # ---------------------------------------------------------------------------------------

    def pythia_settings(self, seed: int) -> list[str]:
        """The complete Pythia 8 settings for one job with the given Pythia seed."""
        lo, hi = self.mass_window
        proc = PROCESSES[self.process]
        s = [
            "Print:quiet = on",
            "Beams:idA = 2212",
            "Beams:idB = 2212",
            f"Beams:eCM = {self.sqrt_s:.6g}",
            *proc.settings,
            *((f"PhaseSpace:mHatMin = {lo:.6g}", f"PhaseSpace:mHatMax = {hi:.6g}")
              if proc.mass_window else ()),
            *((f"PhaseSpace:pTHatMin = {proc.pthat_min:.6g}",)
              if proc.pthat_min is not None else ()),
            f"PartonLevel:ISR = {'on' if self.isr else 'off'}",
            f"PartonLevel:FSR = {'on' if self.fsr else 'off'}",
            f"PartonLevel:MPI = {'on' if self.mpi else 'off'}",
            f"HadronLevel:Hadronize = {'on' if self.hadronisation else 'off'}",
            # Correlated decays (mode 1: external then internal helicity determination) are
            # Pythia's default; stated explicitly so the metadata says what was run.
            # Mode 3: every tau gets the polarisation TauDecays:tauPolarization (0 here) and
            # decays alone (Pythia 8 manual, "Tau Decays"; TauDecays::decay).
            "TauDecays:mode = 3" if self.unpolarised_decays else "TauDecays:mode = 1",
            "Random:setSeed = on",
            f"Random:seed = {seed}",
        ]
        if self.unpolarised_decays:
            s.append("TauDecays:tauPolarization = 0")
        if self.tau_me_massless_above is not None:
            s.append(f"TauDecays:mMinForZ = {self.tau_me_massless_above:.6g}")
        if self.force_decays is not None:
            s.append("15:onMode = off")
            s += [f"15:onIfMatch = {FORCED_MODE_PRODUCTS[m]}" for m in self.force_decays]
        return s + list(self.extra_settings)

    # ---------------------------------------------------------------------------------------

    config_error: ClassVar[type[Exception]] = ConfigError

    @classmethod
    def _convert(cls, data: dict[str, Any], source: str) -> dict[str, Any]:
        d = dict(data)
        if "mass_window" in d:
            d["mass_window"] = tuple(float(x) for x in d["mass_window"])
        if d.get("force_decays") is not None:
            fd = d["force_decays"]
            d["force_decays"] = (fd,) if isinstance(fd, str) else tuple(fd)
        if "extra_settings" in d:
            d["extra_settings"] = tuple(d["extra_settings"] or ())
        if isinstance(d.get("beam_spot_mm"), list):
            d["beam_spot_mm"] = tuple(d["beam_spot_mm"])
        if "tau_filter" in d:
            try:
                d["tau_filter"] = parse_tau_filter(d["tau_filter"])
            except ValueError as err:
                raise ConfigError(f"{source}: {err}") from err
        return d

    def replace(self, **changes: Any) -> GenerateConfig:
        return dataclasses.replace(self, **changes)
