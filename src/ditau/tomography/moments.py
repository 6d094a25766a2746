"""The measurement's default likelihood: the per-channel sums of the detector-level analyser
moments, whose expectation is exactly linear in the 15 spin parameters.

Per event the 16 observables o = (1, a+_i, a-_j, a+_i a-_j) of the measured analyser unit
vectors a+- (components k, r, n in the tau rest frames of the method's tau momenta). Their
sums over a channel's events, m = sum_e o_e, have the expectation (templates, as in
:mod:`ditau.tomography.templates`: u_e the event weight over its generated decay density, h+-
its truth polarimeters, c = (1, theta))

    E[m](theta) = L R c,   R = sum_e u_e o_e basis_e^T   (16 x 16 per channel),

the same linearity as the binned templates, but each "bin" is a moment over every event of the
channel, so the templates are sums over hundreds of events rather than a few: the
errors-in-the-templates bias that a finely binned fit suffers with an MC sample of this size
(a sign-binned Poisson fit on 4 300 template events returned D = 0.45 +- 0.03 for a true 0.82,
benchmarks/RESULTS.md) is avoided, and the moments a+_i a-_j are the efficient estimators of C
for unit polarimeters (tomography.md "Decay-angle estimators").

Likelihood: Gaussian in the 16 moment sums per channel (the central limit of sums over
thousands of events), -ln L = 1/2 sum_ch r^T (V_data + V_MC(theta))^-1 r + 1/2 sum eta^2 with
r = m - prediction;

- V_data: the compound-Poisson covariance of the data sums, from the templates' second
  moments at the reference state (c . K1, thousands of events; not from the pseudo-data's
  own few events per channel): L c.K1 for data at luminosity L (``data_var="poisson"``),
  L^2 / L_s c.K1 for the weighted pseudo-data's own fluctuation (``"sample"``, L_s =
  sum w / sum w^2 its statistical luminosity: closure tests), or their sum (``"both"``:
  pseudo-data scaled to a luminosity beyond its own statistics, so that the error covers the
  pseudo-data sample's fluctuation and two independent pseudo-data sets agree within it);
- V_MC = L^2 sum_e u_e^2 (c . basis_e)^2 o_e o_e^T: the templates' MC statistics
  (Barlow-Beeston in the Gaussian limit), with c = (1, theta_ref) at a reference state
  (``mc_reference``: the measurement passes the sample's Standard-Model state). Evaluated at
  the parameters tested instead (the exact profile of Gaussian templates), the error of the
  prediction grows with |theta| as fast as the prediction does: with MC statistics below the
  data's, the fit runs to the parameter bounds (measured: every parameter at +-2 at
  140 fb^-1 with 4 300 template events);
- nuisance parameters as in :mod:`ditau.tomography.fit`: luminosity, background cross
  section, each detector variation (piecewise-linear interpolation of R), and a free signal
  normalisation (the shape measures the spin).

The class has the interface :func:`ditau.tomography.fit.fit` uses (``names``, ``__call__``,
``mc_stat``, ``n_bins``), so the fit, its D and m12 tests and the impacts are the same code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ditau.tomography.fit import FIT_NAMES, SIGNAL_NORM, to_theta
from ditau.tomography.templates import basis_weights

#: Observables per event: (1, a+_k, a+_r, a+_n, a-_k, a-_r, a-_n, a+_i a-_j for ij in krn x krn).
N_OBS = 16
#: Fewest template events for a channel to enter the fit (its 16 x 16 covariance must be
#: well determined).
MIN_CHANNEL_EVENTS = 50


def observables(a_p: ArrayLike, a_m: ArrayLike) -> NDArray[np.float64]:
    """(N, 16) moments of the measured analysers (same layout as the template basis)."""
    return basis_weights(a_p, a_m)


@dataclass(frozen=True)
class MomentTemplates:
    """Per channel: ``R`` (16 obs x 16 basis) per fb^-1, ``K1`` (16 basis, 16, 16 obs):
    sum u basis (x) o o^T (the expected second moments of the data: per fb^-1, c . K1 is the
    compound-Poisson covariance of the moment sums), ``K2`` (16, 16 basis, 16, 16 obs):
    sum u^2 basis basis^T (x) o o^T (the MC covariance of R c is c^T K2 c), and the number of
    events."""

    channels: tuple[str, ...]
    R: dict[str, NDArray[np.float64]] = field(default_factory=dict)
    K1: dict[str, NDArray[np.float64]] = field(default_factory=dict)
    K2: dict[str, NDArray[np.float64]] = field(default_factory=dict)
    n_events: dict[str, int] = field(default_factory=dict)

    def scaled(self, factor: Mapping[str, float]) -> MomentTemplates:
        """The templates with each channel's weights multiplied by ``factor[channel]``."""
        f = {c: float(factor.get(c, 0.0)) for c in self.channels}
        return MomentTemplates(self.channels, {c: r * f[c] for c, r in self.R.items()},
                               {c: k * f[c] for c, k in self.K1.items()},
                               {c: k * f[c] ** 2 for c, k in self.K2.items()},
                               dict(self.n_events))


def _event_observables(a_p: ArrayLike, a_m: ArrayLike, obs: ArrayLike | None
                       ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """(N, 16) observables of each event (``obs`` when given, e.g. averaged over sampled
    neutrino candidates; else :func:`observables` of a+-) and the rows where they are
    finite (non-finite rows set to 0)."""
    if obs is not None:
        o = np.asarray(obs, dtype=float)
        ok = np.all(np.isfinite(o), 1)
        return np.where(ok[:, None], o, 0.0), ok
    ap, am = np.asarray(a_p, dtype=float), np.asarray(a_m, dtype=float)
    ok = np.all(np.isfinite(ap), 1) & np.all(np.isfinite(am), 1)
    return observables(np.where(ok[:, None], ap, 0.0), np.where(ok[:, None], am, 0.0)), ok


def build_moment_templates(weight: ArrayLike, h_p: ArrayLike, h_m: ArrayLike,
                           a_p: ArrayLike, a_m: ArrayLike, channel: ArrayLike,
                           channels: tuple[str, ...], obs: ArrayLike | None = None
                           ) -> MomentTemplates:
    """Moment templates (module docstring) from per-event template weights u (events per
    fb^-1 over the generated state's decay density), truth polarimeters h+- and measured
    analysers a+- (N, 3; rows with a non-finite analyser are skipped), or the events'
    observables ``obs`` (N, 16) in place of a+- (e.g. averaged over a generative
    reconstruction's candidates: still linear in the state, so the templates stay exact)."""
    u = np.asarray(weight, dtype=float)
    basis = basis_weights(h_p, h_m)
    obs, ok = _event_observables(a_p, a_m, obs)
    ok &= np.isfinite(u) & (u != 0)
    ch = np.asarray(channel).astype(str)
    out = MomentTemplates(tuple(channels))
    for name in channels:
        s = ok & (ch == name)
        if not s.any():
            continue
        us, b, o = u[s], basis[s], obs[s]
        out.R[name] = (us[:, None] * o).T @ b
        oo = np.einsum("na,nb->nab", o, o).reshape(len(o), -1)
        out.K1[name] = ((us[:, None] * b).T @ oo).reshape(16, N_OBS, N_OBS)
        g = (us[:, None, None] * b[:, :, None] * o[:, None, :]).reshape(len(o), -1)
        out.K2[name] = (g.T @ g).reshape(16, N_OBS, 16, N_OBS).transpose(0, 2, 1, 3)
        out.n_events[name] = int(s.sum())
    return out


@dataclass(frozen=True)
class MomentData:
    """Per channel the moment sums ``m`` (16,) per fb^-1 and ``S1`` = sum w o o^T,
    ``S2`` = sum w^2 o o^T (for the data covariance)."""

    m: dict[str, NDArray[np.float64]]
    S1: dict[str, NDArray[np.float64]]
    S2: dict[str, NDArray[np.float64]]

    def scaled(self, factor: Mapping[str, float]) -> MomentData:
        """The data with each channel's weights multiplied by ``factor[channel]``."""
        return MomentData({c: v * factor.get(c, 0.0) for c, v in self.m.items()},
                          {c: v * factor.get(c, 0.0) for c, v in self.S1.items()},
                          {c: v * factor.get(c, 0.0) ** 2 for c, v in self.S2.items()})


def moment_data(weight: ArrayLike, a_p: ArrayLike, a_m: ArrayLike, channel: ArrayLike,
                channels: tuple[str, ...], obs: ArrayLike | None = None) -> MomentData:
    """The pseudo-data's moment sums per fb^-1 (weights ``weight``) per channel, from the
    analysers a+- or the events' observables ``obs`` (N, 16) (:func:`build_moment_templates`)."""
    w = np.asarray(weight, dtype=float)
    obs, ok = _event_observables(a_p, a_m, obs)
    ok &= np.isfinite(w)
    ch = np.asarray(channel).astype(str)
    m, s1, s2 = {}, {}, {}
    for name in channels:
        s = ok & (ch == name)
        o, ws = obs[s], w[s]
        m[name] = ws @ o
        s1[name] = (ws[:, None] * o).T @ o
        s2[name] = ((ws**2)[:, None] * o).T @ o
    return MomentData(m, s1, s2)


def t0_background(tmpl: MomentTemplates, yields: Mapping[str, float]) -> MomentData:
    """A background of ``yields`` {channel: signal-region events per fb^-1} in the shape of
    the channel's unpolarised signal template (T0: R[:, 0] / R[0, 0], second moments
    K1[0] / R[0, 0]; no MC-statistics term): the labelled approximation used when the
    background's own reconstructed events are not given (:func:`moment_data` of them is the
    background's own shape)."""
    m, s1, s2 = {}, {}, {}
    for c in tmpl.channels:
        y = float(yields.get(c, 0.0))
        if c in tmpl.R and tmpl.R[c][0, 0] > 0 and y > 0:
            m[c] = y * tmpl.R[c][:, 0] / tmpl.R[c][0, 0]
            s1[c] = y * tmpl.K1[c][0] / tmpl.R[c][0, 0]
            s2[c] = np.zeros((N_OBS, N_OBS))
    return MomentData(m, s1, s2)


class MomentLikelihood:
    """-ln L of the module docstring for ``data`` at luminosity ``lumi`` (fb^-1) with the
    templates ``tmpl``; ``background``: the background's moment sums per fb^-1 as
    :class:`MomentData` (``m``; ``S1`` = sum w o o^T its Poisson covariance per fb^-1;
    ``S2`` = sum w^2 o o^T the MC statistics of its simulated sample), from its own
    reconstructed events (:func:`moment_data`), or {channel: SR events per fb^-1} in the
    signal's unpolarised shape (:func:`t0_background`); ``variations`` {source: (up, down or None)}
    :class:`MomentTemplates` of the detector variations; ``data_var``: 'poisson' or 'sample'
    (module docstring). Channels with fewer than MIN_CHANNEL_EVENTS template events, or no
    data, are left out."""

    def __init__(self, tmpl: MomentTemplates, data: MomentData, lumi: float,
                 background: MomentData | Mapping[str, float] | None = None,
                 variations: Mapping[str, tuple[MomentTemplates, MomentTemplates | None]]
                 | None = None, data_var: str = "poisson", lumi_unc: float = 0.0083,
                 bkg_unc: float = 0.05, mc_reference: ArrayLike | None = None) -> None:
        if not lumi > 0:
            raise ValueError(f"luminosity must be > 0, got {lumi}")
        if data_var not in ("poisson", "sample", "both"):
            raise ValueError(f"data_var must be 'poisson', 'sample' or 'both', not "
                             f"{data_var!r}")
        #: The 15 parameters at which the templates' MC covariance is evaluated (None: at
        #: the parameters tested, which lets an MC-dominated fit run away, see the module
        #: docstring)
        self.mc_reference = None if mc_reference is None else np.asarray(mc_reference, float)
        self.lumi = float(lumi)
        self.lumi_unc, self.bkg_unc = float(lumi_unc), float(bkg_unc)
        self.var_names = tuple(variations or {})
        self.names = (*FIT_NAMES, "lumi", "bkg_xsec", *self.var_names, SIGNAL_NORM)
        self.mc_stat = True
        #: template events per channel (the fit leaves out those below MIN_CHANNEL_EVENTS)
        self.template_events = {c: int(tmpl.n_events.get(c, 0)) for c in tmpl.channels}
        self.channels = tuple(c for c in tmpl.channels
                              if tmpl.n_events.get(c, 0) >= MIN_CHANNEL_EVENTS
                              and c in data.m and data.S1[c][0, 0] > 0)
        L = self.lumi
        self.R = {c: tmpl.R[c] for c in self.channels}
        self.K2 = {c: tmpl.K2[c].reshape(256, 256) for c in self.channels}
        self.m = {c: data.m[c] * L for c in self.channels}
        # data covariance from the templates' second moments (thousands of events) at the
        # reference state, not from the pseudo-data's own few events per channel (a 16 x 16
        # covariance estimated from ~30 events distorted the fit): per fb^-1 c . K1; at L the
        # compound-Poisson covariance L c.K1; the weighted pseudo-data's own fluctuation
        # L^2 / L_s c.K1 with L_s = sum w / sum w^2 its statistical luminosity
        c_ref = np.concatenate([[1.0], self.mc_reference if self.mc_reference is not None
                                else np.zeros(15)])
        b = background if isinstance(background, MomentData) else \
            t0_background(tmpl, background or {})
        zero = np.zeros((N_OBS, N_OBS))
        self.bkg = {c: b.m.get(c, np.zeros(N_OBS)) for c in self.channels}
        #: the background sample's MC statistics per fb^-1 squared (sum w^2 o o^T)
        self.bkg_mc = {c: b.S2.get(c, zero) for c in self.channels}
        self.V_data = {}
        for c in self.channels:
            v1 = np.einsum("i,iab->ab", c_ref, tmpl.K1[c])
            l_s = data.S1[c][0, 0] / data.S2[c][0, 0] if data.S2[c][0, 0] > 0 else np.inf
            f = (L if data_var in ("poisson", "both") else 0.0) \
                + (L**2 / l_s if data_var in ("sample", "both") else 0.0)
            # the background enters the data as its expectation: only its Poisson variance
            # at L (compound Poisson: L sum w o o^T), no pseudo-data sample fluctuation
            v_b = L * b.S1.get(c, zero) if data_var in ("poisson", "both") else zero
            self.V_data[c] = f * v1 + v_b
        self.d_up, self.d_down = [], []
        for up, down in (variations or {}).values():
            du = {c: (up.R[c] - self.R[c]) if c in up.R else np.zeros((16, 16))
                  for c in self.channels}
            dd = ({c: -v for c, v in du.items()} if down is None else
                  {c: (down.R[c] - self.R[c]) if c in down.R else np.zeros((16, 16))
                   for c in self.channels})
            self.d_up.append(du)
            self.d_down.append(dd)

    @property
    def n_bins(self) -> int:
        """Moments entering the likelihood (16 per channel)."""
        return N_OBS * len(self.channels)

    @property
    def empty_reason(self) -> str:
        """Why no channel enters the likelihood ('' if some do): the template events of the
        largest channel against MIN_CHANNEL_EVENTS."""
        if self.channels:
            return ""
        if not any(self.template_events.values()):
            return "no template events"
        top = max(self.template_events, key=lambda c: self.template_events[c])
        return (f"no channel has the {MIN_CHANNEL_EVENTS} template events the fit needs "
                f"(largest: {top} with {self.template_events[top]})")

    def expected(self, p: ArrayLike, channel: str) -> NDArray[np.float64]:
        """Expected moment sums of ``channel`` at the parameters ``p``."""
        p = np.asarray(p, dtype=float)
        c = np.concatenate([[1.0], to_theta(p)])
        R = self.R[channel]
        for k, eta in enumerate(p[17:-1]):
            R = R + (eta * self.d_up[k][channel] if eta >= 0 else -eta * self.d_down[k][channel])
        norm = self.lumi * (1.0 + self.lumi_unc * p[15])
        return norm * ((1.0 + p[-1]) * (R @ c)
                       + (1.0 + self.bkg_unc * p[16]) * self.bkg[channel])

    def __call__(self, p: ArrayLike) -> float:
        p = np.asarray(p, dtype=float)
        c = np.concatenate([[1.0], to_theta(p) if self.mc_reference is None
                            else self.mc_reference])
        cc = np.outer(c, c).ravel()
        norm = self.lumi * (1.0 + self.lumi_unc * p[15])
        total = 0.0
        for ch in self.channels:
            r = self.m[ch] - self.expected(p, ch)
            V = self.V_data[ch]
            if self.mc_stat:
                V = V + (norm * (1.0 + p[-1])) ** 2 * (cc @ self.K2[ch]).reshape(N_OBS, N_OBS) \
                    + norm**2 * self.bkg_mc[ch]
            try:
                total += 0.5 * float(r @ np.linalg.solve(V, r))
            except np.linalg.LinAlgError:
                total += 0.5 * float(r @ np.linalg.lstsq(V, r, rcond=None)[0])
        eta = p[15:-1]  # the constrained nuisance parameters (the signal norm is free)
        return total + 0.5 * float(np.sum(eta**2))
