"""The measurement: per reconstruction method, the profile-likelihood fit of the spin state
(:mod:`ditau.tomography.fit`) to pseudo-data, with templates from an independent part of the
sample (:mod:`ditau.tomography.templates`), its closure tests and significances.

Splits: event_id mod ``SPLIT_MOD`` (11): pseudo-data = one residue (split 0 or 1), templates =
the other ten, so the templates come from a sample 10x the pseudo-data's and the two splits'
pseudo-data are independent. Each part's weights are scaled by (all events / events in the
part), so both are per fb^-1 of the full sample.

Pseudo-data at a luminosity L: its weighted histogram x L (an Asimov-like data set with the
pseudo-data sample's own fluctuations). Closure: at the pseudo-data's own statistical power
(L_s = sum w / sum w^2, where the weighted counts have the Poisson variance of real data), in
the target states put into the pseudo-data by the spin weights (:mod:`ditau.spin`).

Backgrounds (W/Z/tt-bar files) carry no tau-pair spin correlation in the likelihood: they
enter with their own analyser distributions per method (:class:`BackgroundInputs`: the
method's output on each background file, its signal-region events with a measurement, their
moments or sign bins, with the background sample's MC statistics) and a cross-section
nuisance. They are added to the pseudo-data as their expectation (the pseudo-data's own
fluctuation is the signal sample's). Labelled approximation where no method output on the
backgrounds is given (and always for the method ``truth``, which has no generated taus in a
background): the background's signal-region yield per channel (``ditau yields``) in the shape
of the channel's unpolarised signal template T0. Events whose truth legs have no polarimeter
(h = 0) enter T0 only.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ditau.spin import SpinState, decay_density, state_from_truth
from ditau.spin import from_truth as truth_polarimeters
from ditau.tomography.fit import FitResult, SpinLikelihood, Variation, fit, impacts
from ditau.tomography.moments import (
    MomentData,
    MomentLikelihood,
    build_moment_templates,
    moment_data,
    t0_background,
)
from ditau.tomography.templates import bin_index, build_templates, histogram

#: Residues of event_id mod SPLIT_MOD that are pseudo-data in split 0 and split 1.
SPLIT_MOD = 11
#: Luminosities (fb^-1) of the significance curve.
LUMIS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 140.0, 300.0, 1000.0, 3000.0)
#: Fewest pseudo-data events for a closure fit (per state and m_tautau window).
MIN_CLOSURE_EVENTS = 50
#: m_tautau bins (GeV, truth) of the closure tests.
MASS_BINS = ((60.0, 80.0), (80.0, 100.0), (100.0, 120.0))
#: A non-Standard-Model entangled state with B and off-diagonal C for the closure tests
#: (physical: its density matrix is positive; concurrence 0.54).
NON_SM_STATE = SpinState.constant([0.1, 0.05, 0.0], [-0.1, 0.0, 0.05],
                                  [[0.7, 0.25, 0.0], [0.25, -0.55, 0.1], [0.0, 0.1, 0.6]])
#: Closure states: name -> constant state, or None for the per-event states built from the
#: truth ('sm': Standard Model; 'separable': the SM polarisations with C = B+ B-^T).
CLOSURE_STATES: dict[str, SpinState | None] = {
    "sm": None, "separable": None,
    "classical diag(1,0,0)": SpinState.constant(np.zeros(3), np.zeros(3), np.diag([1.0, 0, 0])),
    "non-SM entangled": NON_SM_STATE,
    "unpolarised decays": SpinState.unpolarised(),
}


@dataclass
class SpinInputs:
    """Per-event inputs of the fit for the signal-region events of one method, length N.

    ``u``: events per fb^-1 / the generated state's decay density (template weights);
    ``h_p``/``h_m``: truth polarimeters (:func:`ditau.spin.from_truth`, NaN -> 0);
    ``bin``: :func:`~ditau.tomography.templates.bin_index` of the measured analysers;
    ``channel``; ``state``: the per-event Standard-Model state; ``weight``: the physical
    event weights (the sample's state); ``m_tautau`` (truth); ``split``: event_id mod SPLIT_MOD.
    """

    u: NDArray[np.float64]
    h_p: NDArray[np.float64]
    h_m: NDArray[np.float64]
    bin: NDArray[np.int64]
    channel: NDArray[np.str_]
    state: SpinState
    weight: NDArray[np.float64]
    m_tautau: NDArray[np.float64]
    split: NDArray[np.int64]
    #: The method's measured analyser unit vectors (N, 3) (the moments' observables).
    a_p: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 3)))
    a_m: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 3)))
    #: The moments' observables (N, 16) averaged over a generative method's candidates
    #: (``--candidate-average``); empty: those of ``a_p``/``a_m``.
    obs: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 16)))

    def observables(self, mask: NDArray[np.bool_]) -> NDArray[np.float64] | None:
        """The averaged observables of the rows ``mask``, or None (use the analysers)."""
        return self.obs[mask] if len(self.obs) else None


def generated_density(events: Any, spin_meta: Mapping[str, Any] | None
                      ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64],
                                 SpinState]:
    """(h+, h-, decay density of the generated state, per-event SM state) of ``events``.

    The generated state: unpolarised decays (density 1) for ``spin: weights`` samples and
    exact-mode samples with correlations off; the per-event LO Standard-Model state
    (:func:`ditau.spin.state_from_truth`) for Pythia's exact correlated decays. Events
    without a defined state or frame: density 1 and h = 0."""
    pol = truth_polarimeters(events)
    h_p = np.nan_to_num(pol.h_p)
    h_m = np.nan_to_num(pol.h_m)
    sm = state_from_truth(events, pol.cos_theta).defined_or_unpolarised()
    meta = spin_meta or {}
    unpolarised = meta.get("mode") == "weights" or meta.get("decays") == "unpolarised"
    dens = np.ones(len(h_p)) if unpolarised else decay_density(h_p, h_m, sm)
    dens = np.where(np.isfinite(dens) & (dens > 0), dens, 1.0)
    return h_p, h_m, dens, sm


def state_coefficients(state: SpinState, n: int) -> NDArray[np.float64]:
    """(n, 15) spin parameters (PARAMETER_NAMES order) of a common or per-event state."""
    bp = np.broadcast_to(state.B_p, (n, 3))
    bm = np.broadcast_to(state.B_m, (n, 3))
    c = np.broadcast_to(state.C, (n, 3, 3)).reshape(n, 9)
    return np.hstack([bp, bm, c])


@dataclass
class BackgroundInputs:
    """A method's measurement of the background events, length N: the signal-region events of
    the background files with a valid measurement. ``weight``: events per fb^-1; ``a_p``/
    ``a_m``: measured analyser unit vectors (N, 3); ``bin``: sign-bin index
    (:func:`~ditau.tomography.templates.bin_index`); ``channel``: reco channel; ``process``:
    the background sample's name (zll, wlnu, ...)."""

    weight: NDArray[np.float64]
    a_p: NDArray[np.float64]
    a_m: NDArray[np.float64]
    bin: NDArray[np.int64]
    channel: NDArray[np.str_]
    process: NDArray[np.str_]
    #: The moments' observables (N, 16) averaged over the candidates (empty: from a+-)
    obs: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 16)))

    def yields(self, channels: tuple[str, ...]) -> dict[str, float]:
        """Signal-region events per fb^-1 per channel."""
        return {c: float(self.weight[self.channel == c].sum()) for c in channels}


@dataclass
class ClosureRow:
    """One closure fit: the target state's parameters averaged over the pseudo-data events
    (``truth``), the fit, the pulls, and the separable/entangled verdicts."""

    name: str
    truth: NDArray[np.float64]
    result: FitResult
    pulls: NDArray[np.float64]
    truth_d: float


@dataclass
class SpinFit:
    """A method's measurement: the fits at 140 fb^-1 on both splits (our yields and the
    reference's), the significance curves (split 0), the impact table, the closure rows and
    the fit time."""

    method: str
    fits: dict[str, FitResult] = field(default_factory=dict)
    curves: dict[str, tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]] = \
        field(default_factory=dict)
    impacts: list[tuple[str, float, float]] = field(default_factory=list)
    closure: list[ClosureRow] = field(default_factory=list)
    n_bins: int = 0
    bins: int = 2
    observable: str = "moments"
    #: Why the closure table is empty ('' if it is not): per split, "split N: why".
    closure_note: str = ""
    #: How the backgrounds entered the fit: "own" (each background's own reconstructed
    #: analysers) or "t0" (their yields in the signal's unpolarised shape)
    background_shape: str = "t0"
    n_template_events: int = 0
    n_data_events: int = 0
    seconds_per_fit: float = 0.0
    notes: list[str] = field(default_factory=list)
    #: Neutrino sampling (generative methods): the pseudo-data fit (split 0, our yields, no
    #: detector variations) redone with each method output of another noise seed, templates
    #: and data alike; the nominal first. Rows (D, sigma_D, Z(D > 1/3), Z(m12 > 1)).
    sampling: list[tuple[float, float, float, float]] = field(default_factory=list)


def _split_scale(split_all: NDArray[np.int64], data_residue: int
                 ) -> tuple[float, float]:
    """(1 / fraction of all events in the templates, 1 / fraction in the pseudo-data)."""
    n = len(split_all)
    n_dat = int(np.sum(split_all == data_residue))
    return n / max(n - n_dat, 1), n / max(n_dat, 1)


class Observable:
    """How the detector-level events enter the likelihood: ``"moments"`` (default,
    :mod:`ditau.tomography.moments`) or ``"signs"`` (binned Poisson,
    :mod:`ditau.tomography.fit`, ``bins`` per analyser component). One interface for the
    templates, the data, per-channel scaling and the likelihood."""

    def __init__(self, kind: str, channels: tuple[str, ...], bins: int = 2) -> None:
        if kind not in ("moments", "signs"):
            raise ValueError(f"observable must be 'moments' or 'signs', not {kind!r}")
        self.kind, self.channels, self.bins = kind, channels, bins
        #: The state at which the templates' MC covariance is evaluated (moments).
        self.reference: NDArray[np.float64] | None = None

    def templates(self, x: SpinInputs, mask: NDArray[np.bool_], scale: float,
                  reference: NDArray[np.float64]) -> Any:
        if self.kind == "moments":
            return build_moment_templates(x.u[mask] * scale, x.h_p[mask], x.h_m[mask],
                                          x.a_p[mask], x.a_m[mask], x.channel[mask],
                                          self.channels, obs=x.observables(mask))
        return build_templates(x.u[mask] * scale, x.h_p[mask], x.h_m[mask], x.bin[mask],
                               x.channel[mask], self.channels, self.bins, reference=reference)

    def data(self, x: SpinInputs, mask: NDArray[np.bool_], weight: NDArray[np.float64]
             ) -> Any:
        """Pseudo-data per fb^-1 from the rows ``mask`` with the weights ``weight`` (len of
        the selected rows)."""
        if self.kind == "moments":
            return moment_data(weight, x.a_p[mask], x.a_m[mask], x.channel[mask],
                               self.channels, obs=x.observables(mask))
        return histogram(weight, x.bin[mask], x.channel[mask], self.channels, self.bins)

    def scaled(self, tmpl: Any, data: Any, factor: Mapping[str, float]) -> tuple[Any, Any]:
        """Templates and data with each channel multiplied by ``factor[channel]``."""
        if self.kind == "moments":
            return tmpl.scaled(factor), data.scaled(factor)
        f = np.zeros(len(data))
        for ch, sl in tmpl.slices.items():
            f[sl] = factor.get(ch, 0.0)
        return replace(tmpl, values=tmpl.values * f[:, None],
                       cov=tmpl.cov * (f**2)[:, None, None]), data * f

    def background(self, tmpl: Any, bkg: Mapping[str, float] | BackgroundInputs) -> Any:
        """The background in this observable's form, per fb^-1: from its own events
        (:class:`BackgroundInputs`) or, given {channel: yield}, in the shape of the channel's
        T0 (module docstring)."""
        if isinstance(bkg, BackgroundInputs):
            if self.kind == "moments":
                return moment_data(bkg.weight, bkg.a_p, bkg.a_m, bkg.channel, self.channels,
                                   obs=bkg.obs if len(bkg.obs) else None)
            return histogram(bkg.weight, bkg.bin, bkg.channel, self.channels, self.bins)
        if self.kind == "moments":
            return t0_background(tmpl, bkg)
        return _background(tmpl, bkg)

    def scaled_background(self, tmpl: Any, bkg: Any, factor: Mapping[str, float]) -> Any:
        """The background of :meth:`background` with each channel times ``factor[channel]``."""
        if self.kind == "moments":
            return bkg.scaled(factor)
        f = np.zeros(len(bkg))
        for ch, sl in tmpl.slices.items():
            f[sl] = factor.get(ch, 0.0)
        return bkg * f

    def likelihood(self, tmpl: Any, data: Any, lumi: float, background: Any,
                   variations: Mapping[str, tuple[Any, Any]], data_var: str = "poisson"
                   ) -> Any:
        """The likelihood of ``data`` at ``lumi`` (``data_var``: 'poisson', real data; or
        'sample', the weighted pseudo-data's own fluctuations); ``background``: from
        :meth:`background` (or {channel: yield}, T0 shape)."""
        if isinstance(background, Mapping):
            background = self.background(tmpl, background)
        if self.kind == "moments":
            return MomentLikelihood(tmpl, data, lumi, background, variations, data_var,
                                    mc_reference=self.reference)
        var = {k: Variation(up.values, None if down is None else down.values)
               for k, (up, down) in variations.items()}
        # the binned likelihood is Poisson: weighted pseudo-data at its own statistics are
        # counts at the luminosity L_s where a weight-w event counts L_s w ~ 1
        # (the background histogram's own MC statistics are not in this Poisson BB-lite
        # likelihood: labelled; the default moments likelihood has them)
        return SpinLikelihood(tmpl.values, data * lumi, lumi, None,
                              background, var, mc_cov=tmpl.cov,
                              mc_reference=self.reference)


def _with_background(obs: Observable, data: Any, background: Any) -> Any:
    """The pseudo-data (signal events only) plus the expected background
    (:meth:`Observable.background`); the data's own second moments stay the signal's."""
    if obs.kind == "moments":
        m = {c: v + background.m[c] if c in background.m else v for c, v in data.m.items()}
        return MomentData(m, data.S1, data.S2)
    return data + background


def _background(tmpl: Any, per_channel: Mapping[str, float]) -> NDArray[np.float64]:
    """Background per bin: each channel's yield per fb^-1 in the shape of its T0."""
    out = np.zeros(len(tmpl.values))
    for ch, sl in tmpl.slices.items():
        t0 = tmpl.values[sl, 0]
        tot = t0.sum()
        if tot > 0 and per_channel.get(ch, 0.0) > 0:
            out[sl] = per_channel[ch] * t0 / tot
    return out


def _asimov(obs: Observable, tmpl: Any, data: Any, theta: NDArray[np.float64]) -> Any:
    """Data equal to the templates' prediction at ``theta`` (the pseudo-data's covariance
    kept): the expected result with templates of unlimited statistics."""
    c = np.concatenate([[1.0], theta])
    if obs.kind == "moments":
        return MomentData({ch: tmpl.R[ch] @ c for ch in tmpl.R}, data.S1, data.S2)
    return tmpl.values @ c


def measure_method(method: str, x: SpinInputs, split_all: NDArray[np.int64],
                   channels: tuple[str, ...],
                   background: Mapping[str, float] | BackgroundInputs,
                   variations: Mapping[str, tuple[SpinInputs | None, SpinInputs | None]],
                   reference_scale: Mapping[str, float] | None = None, bins: int = 2,
                   lumi: float = 140.0, closure: bool = True, seed: int = 0,
                   progress: Any = None, observable: str = "moments",
                   resampled: tuple[SpinInputs, ...] = ()) -> SpinFit:
    """Fit, significance curves, impacts and closure of one method (module docstring).

    ``x``: the signal-region events with a valid measurement; ``split_all``: event_id mod
    SPLIT_MOD of *all* generated events (the part fractions); ``background``: the method's
    measurement of the background events (:class:`BackgroundInputs`), or SR yields per fb^-1
    per channel (T0 shape, module docstring); ``variations``: source -> (up inputs, down
    inputs or None), the same events through a detector variation; ``reference_scale``:
    per-channel factor taking our yields to the reference's (None: skip those fits);
    ``observable``: :class:`Observable`; ``resampled``: the same events measured with other
    neutrino-sampling seeds of a generative method (the background as measured with the
    nominal seed): :attr:`SpinFit.sampling`."""
    say = progress or (lambda msg: None)
    obs = Observable(observable, channels, bins)
    out = SpinFit(method, bins=bins, observable=observable,
                  background_shape="own" if isinstance(background, BackgroundInputs) else "t0")
    theta_sm = np.average(state_coefficients(x.state, len(x.u)), axis=0,
                          weights=np.clip(x.u, 0, None)) if len(x.u) else np.zeros(15)
    obs.reference = theta_sm
    for split in (0, 1):
        t_scale, d_scale = _split_scale(split_all, split)
        is_dat = x.split == split
        tm = obs.templates(x, ~is_dat, t_scale, theta_sm)
        data = obs.data(x, is_dat, x.weight[is_dat] * d_scale)
        var = {}
        for src, (up, down) in variations.items():
            if up is None:
                continue
            var[src] = (obs.templates(up, up.split != split, t_scale, theta_sm),
                        None if down is None else
                        obs.templates(down, down.split != split, t_scale, theta_sm))
        bkg_split = obs.background(tm, background)
        for yields in ("ours", "reference"):
            t_y, d_y, var_y, bkg_y = tm, data, var, bkg_split
            if yields == "reference":
                if reference_scale is None:
                    continue
                t_y, d_y = obs.scaled(tm, data, reference_scale)
                var_y = {k: (obs.scaled(u, data, reference_scale)[0],
                             None if d is None else obs.scaled(d, data, reference_scale)[0])
                         for k, (u, d) in var.items()}
                bkg_y = obs.scaled_background(tm, bkg_split, reference_scale)
            say(f"fit: {method}, split {split}, {yields} yields")
            t0 = time.perf_counter()
            # pseudo-data (signal) plus the expected background
            d_y = _with_background(obs, d_y, bkg_y)
            # pseudo-data scaled to L: its own MC fluctuation is part of the error
            nll = obs.likelihood(t_y, d_y, lumi, bkg_y, var_y, data_var="both")
            key = f"split {split}, {yields} yields"
            out.fits[key] = fit(nll, theta_sm, seed=seed)
            out.seconds_per_fit = time.perf_counter() - t0
            out.n_bins = nll.n_bins
            if split == 0:
                out.n_template_events = int(np.sum(~is_dat))
                out.n_data_events = int(np.sum(is_dat))
                # expected results: Asimov data at the sample's SM state, with the templates'
                # MC statistics ("Asimov") and with unlimited templates (the reach)
                asimov = _with_background(obs, _asimov(obs, t_y, d_y, theta_sm), bkg_y)
                for label, mc in (("Asimov", True), ("Asimov, unlimited templates", False)):
                    zs_d, zs_b = [], []
                    for L in LUMIS:
                        nll_a = obs.likelihood(t_y, asimov, L, bkg_y, var_y)
                        nll_a.mc_stat = mc
                        r = fit(nll_a, theta_sm, n_toys=200, seed=seed)
                        # an unreliable fit (no convergence, at a bound) gives no point
                        zs_d.append(r.z_entanglement if r.reliable else np.nan)
                        zs_b.append(r.z_bell if r.reliable else np.nan)
                        if L == lumi:
                            out.fits[f"{key}, {label}"] = r
                            if yields == "ours" and mc and r.reliable:
                                out.impacts = impacts(nll_a, r)
                    out.curves[f"{yields}, {label}"] = (np.array(LUMIS), np.array(zs_d),
                                                        np.array(zs_b))
        if split == 0 and resampled:
            say(f"fit: {method}, neutrino sampling ({len(resampled) + 1} draws)")
            for xs in (x, *resampled):
                r = _pseudo_data_fit(obs, xs, split_all, background, lumi, theta_sm, seed)
                if r.reliable:
                    out.sampling.append((r.d, r.d_err, r.z_entanglement, r.z_bell))
        if not closure:
            out.closure_note = "not run (--no-closure)"
        elif int(is_dat.sum()) < MIN_CLOSURE_EVENTS:
            out.closure_note = "; ".join(filter(None, [out.closure_note, (
                f"split {split}: skipped, {int(is_dat.sum())} pseudo-data "
                f"events, {MIN_CLOSURE_EVENTS} needed")]))
        if closure:
            say(f"closure: {method}, split {split}")
            out.closure += [replace(row, name=f"split {split}: {row.name}") for row in
                            _closure(obs, x, is_dat, tm, t_scale, d_scale, theta_sm, seed)]
    return out


def _pseudo_data_fit(obs: Observable, x: SpinInputs, split_all: NDArray[np.int64],
                     background: Mapping[str, float] | BackgroundInputs, lumi: float,
                     theta_sm: NDArray[np.float64], seed: int) -> FitResult:
    """The split-0 pseudo-data fit at ``lumi`` with our yields and no detector variations
    (the neutrino-sampling comparison: the variations' method outputs are of the nominal
    seed)."""
    t_scale, d_scale = _split_scale(split_all, 0)
    is_dat = x.split == 0
    tm = obs.templates(x, ~is_dat, t_scale, theta_sm)
    bkg = obs.background(tm, background)
    data = _with_background(obs, obs.data(x, is_dat, x.weight[is_dat] * d_scale), bkg)
    return fit(obs.likelihood(tm, data, lumi, bkg, {}, data_var="both"), theta_sm,
               n_toys=200, seed=seed)


def _closure(obs: Observable, x: SpinInputs, is_dat: NDArray[np.bool_], tm: Any,
             t_scale: float, d_scale: float, theta_sm: NDArray[np.float64],
             seed: int) -> list[ClosureRow]:
    """Fits to the pseudo-data put into each closure state (and the SM state in m_tautau
    bins, with templates of the same bin), at the pseudo-data's own statistical power."""
    from ditau.tomography.quantum import witness_d

    rows = []
    n = int(is_dat.sum())
    hp, hm = x.h_p[is_dat], x.h_m[is_dat]
    u = x.u[is_dat] * d_scale
    sm = SpinState(x.state.B_p[is_dat], x.state.B_m[is_dat], x.state.C[is_dat])
    cases: list[tuple[str, SpinState, tuple[float, float] | None]] = []
    for name, st in CLOSURE_STATES.items():
        if st is None:
            st = sm if name == "sm" else SpinState(
                sm.B_p, sm.B_m, np.einsum("ni,nj->nij", sm.B_p, sm.B_m))
        cases.append((name, st, None))
    cases += [(f"sm, m_tautau {lo:g}-{hi:g} GeV", sm, (lo, hi)) for lo, hi in MASS_BINS]
    for name, st, window in cases:
        w = u * np.clip(decay_density(hp, hm, st), 0.0, None)
        in_all = np.ones(len(x.u), bool) if window is None else \
            (x.m_tautau >= window[0]) & (x.m_tautau < window[1])
        sel = in_all[is_dat]
        if sel.sum() < MIN_CLOSURE_EVENTS:
            continue
        coef = state_coefficients(st, n)[sel]
        truth = np.average(coef, axis=0, weights=u[sel] if np.any(u[sel] > 0) else None)
        # templates of the same m_tautau window (the state measured is that of the window)
        tmpl = tm if window is None else obs.templates(x, ~is_dat & in_all, t_scale, theta_sm)
        dat_mask = is_dat & in_all
        data = obs.data(x, dat_mask, w[sel])
        # the pseudo-data's own statistical power: L_s = sum w / sum w^2 (weights per fb^-1)
        ws = w[sel]
        L_s = float(ws.sum() / np.sum(ws**2)) if np.sum(ws**2) > 0 else 1.0
        nll = obs.likelihood(tmpl, data, L_s, {}, {}, data_var="sample")
        r = fit(nll, theta_sm, n_toys=500, seed=seed)
        pulls = (r.theta - truth) / np.where(r.errors > 0, r.errors, np.nan)
        rows.append(ClosureRow(name, truth, r, pulls,
                               float(witness_d(truth[6:].reshape(3, 3)))))
    return rows


def inputs_for(events: Any, analysers_p: NDArray[np.float64], analysers_m: NDArray[np.float64],
               valid: NDArray[np.bool_], spin_meta: Mapping[str, Any] | None, bins: int,
               event_weight: NDArray[np.float64], spin_weight: NDArray[np.float64],
               obs: NDArray[np.float64] | None = None) -> SpinInputs:
    """:class:`SpinInputs` of the rows of ``events`` (signal-region events) from one method's
    measured analysers (``valid`` rows only), the sample's spin metadata and weights;
    ``obs`` (N, 16): the moments' observables averaged over the candidates (or None)."""
    from ditau.schema import column_array

    h_p, h_m, dens, sm = generated_density(events, spin_meta)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(spin_weight > 0, event_weight / spin_weight, 0.0) / dens
    b = np.where(valid, bin_index(analysers_p, analysers_m, bins), -1)
    ids = np.asarray(column_array(events, "event_id")).astype(np.int64)
    keep = b >= 0
    return SpinInputs(u[keep], h_p[keep], h_m[keep], b[keep],
                      np.asarray(column_array(events, "reco_channel")).astype(str)[keep],
                      SpinState(sm.B_p[keep], sm.B_m[keep], sm.C[keep]),
                      event_weight[keep],
                      np.asarray(column_array(events, "m_tautau"), dtype=float)[keep],
                      ids[keep] % SPLIT_MOD, np.asarray(analysers_p, float)[keep],
                      np.asarray(analysers_m, float)[keep],
                      np.zeros((0, 16)) if obs is None else np.asarray(obs, float)[keep])
