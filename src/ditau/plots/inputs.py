"""Validation plots of the reconstruction inputs: truth vs reco, per analysis channel.

:func:`plot_inputs` reads a detector-level ditau file (groups ``id``, ``truth`` and ``reco``)
and writes, for each of the seven channels with signal-region events, two ATLAS-style PNG
figures:

``inputs_<channel>.png``
    the reference's network inputs (shared/seeds/001, "Input variables": MET (pT, phi), the
    visible tau legs' (pT, eta, phi, E), small-R jets) plus the neutral-energy fraction of the
    hadronic legs (the rho polarimeter input), the visible mass and the MET scalar sum; truth
    as a line, reco as points with sqrt(sum w^2) errors.
``residuals_<channel>.png``
    reco/truth - 1 of both visible legs' pT and of MET x, and reco - truth of MET x in GeV.

Leg order within a channel follows the channel name (``erho``: the e leg, then the rho leg);
for ``pipi`` and ``rhorho`` the legs are the leading and subleading in reco visible pT. Truth
quantities are those of the same leg (same charge), so a fake leg is compared with whatever
the true tau of that charge left.

Kinematics (pT, eta, phi, masses) go through the four-vector layer :mod:`ditau.physics`;
channels come from its registry; the drawing is :mod:`ditau.plots.draw`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from ditau.physics import ANALYSIS_CHANNELS, eta, mass, phi, pt
from ditau.physics import check_channels as _registry_check_channels
from ditau.plots.draw import (
    Binning,
    Panel,
    PlotError,
    channel_tex,
    com_tev,
    draw_panels,
    leg_tags,
    split_channel,
)
from ditau.schema import group_columns, read_events, read_metadata, validate

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

#: Hadronic decay modes (legs with a tau_had candidate).
HADRONIC: Final[tuple[str, ...]] = ("pi", "rho")

_XYZE: Final[tuple[str, ...]] = ("px", "py", "pz", "e")


# --------------------------------------------------------------------------------------------
# Kinematics of (n, 4) arrays (px, py, pz, E) through ditau.physics


def _pt4(p4: FloatArray) -> FloatArray:
    return pt(p4[:, 0], p4[:, 1])


def _eta4(p4: FloatArray) -> FloatArray:
    return eta(p4[:, 0], p4[:, 1], p4[:, 2])


def _phi4(p4: FloatArray) -> FloatArray:
    return phi(p4[:, 0], p4[:, 1])


def _e4(p4: FloatArray) -> FloatArray:
    return p4[:, 3]


def _p4(cols: Mapping[str, FloatArray], prefix: str, leg: str = "") -> FloatArray:
    suffix = f"_{leg}" if leg else ""
    return np.stack([cols[f"{prefix}_{c}{suffix}"] for c in _XYZE], axis=1)


def visible_p4(cols: Mapping[str, FloatArray], leg: str, level: str) -> FloatArray:
    """Visible four-momentum of leg ``p``/``m`` = charged + neutral part.

    ``level="truth"``: ``chg_* + neu_*`` (NaN where the event has no such tau);
    ``level="reco"``: ``reco_chg_* + reco_neu_*`` with an absent neutral cluster (NaN) as 0.
    """
    if level == "truth":
        return _p4(cols, "chg", leg) + _p4(cols, "neu", leg)
    if level == "reco":
        return _p4(cols, "reco_chg", leg) + np.nan_to_num(_p4(cols, "reco_neu", leg), nan=0.0)
    raise ValueError(f"level must be 'truth' or 'reco', not {level!r}")


def neutral_fraction(cols: Mapping[str, FloatArray], leg: str, level: str) -> FloatArray:
    """E_neutral / E_visible of a leg.

    The rho polarimeter is y = (E_pi+- - E_pi0) / (E_pi+- + E_pi0) = 1 - 2 f with this
    fraction f (Bullock, Hagiwara, Martin, NPB 395 (1993) 499).
    """
    prefix = "neu" if level == "truth" else "reco_neu"
    e_neu = cols[f"{prefix}_e_{leg}"]
    if level == "reco":
        e_neu = np.nan_to_num(e_neu, nan=0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return e_neu / visible_p4(cols, leg, level)[:, 3]


def truth_met(cols: Mapping[str, FloatArray]) -> tuple[FloatArray, FloatArray]:
    """Truth MET (x, y): vector sum of both legs' neutrinos and the other neutrinos.

    A leg without a tau (NaN neutrino columns) contributes nothing.
    """
    mx = (np.nan_to_num(cols["nu_px_p"]) + np.nan_to_num(cols["nu_px_m"])
          + cols["nu_other_px"])
    my = (np.nan_to_num(cols["nu_py_p"]) + np.nan_to_num(cols["nu_py_m"])
          + cols["nu_other_py"])
    return mx, my


def first_leg_is_p(cols: Mapping[str, NDArray[Any]], channel: str) -> NDArray[np.bool_]:
    """Per event: is the channel's first leg the tau+ (``_p``) leg?

    Mixed channels: the leg whose reco mode is the first mode of the name. ``pipi`` and
    ``rhorho``: the leg with the larger reco visible pT (leading leg first).
    """
    first, second = split_channel(channel)
    if first != second:
        return np.asarray(cols["reco_mode_p"] == first, dtype=bool)
    return _pt4(visible_p4(cols, "p", "reco")) >= _pt4(visible_p4(cols, "m", "reco"))


def _pick(first_is_p: NDArray[np.bool_], a_p: FloatArray, a_m: FloatArray,
          first: bool) -> FloatArray:
    sel = first_is_p if first else ~first_is_p
    if a_p.ndim == 2:
        sel = sel[:, None]
    return np.where(sel, a_p, a_m)


# --------------------------------------------------------------------------------------------
# Inputs


_TRUTH_COLS: Final[tuple[str, ...]] = (
    *(f"{p}_{c}_{leg}" for p in ("chg", "neu", "nu") for c in _XYZE for leg in ("p", "m")),
    "nu_other_px", "nu_other_py")
_RECO_COLS: Final[tuple[str, ...]] = (
    *(f"{p}_{c}_{leg}" for p in ("reco_chg", "reco_neu") for c in _XYZE for leg in ("p", "m")),
    *(f"jet1_{c}" for c in _XYZE),
    "reco_mode_p", "reco_mode_m", "reco_channel", "in_sr", "n_jets", "met_x", "met_y",
    "met_sumet", "reco_weight")
NEEDED_COLUMNS: Final[tuple[str, ...]] = ("weight", *_TRUTH_COLS, *_RECO_COLS)
_REQUIRE: Final[tuple[str, ...]] = ("id", "truth", "reco")


def _no_reco_error(source: str) -> PlotError:
    return PlotError(f"{source}: the file has no detector-level (reco) columns; "
                     "run `ditau detector` on it first")


def load_inputs(table_or_path: pa.Table | str | os.PathLike[str],
                ) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
    """The columns the plots need, as numpy arrays, and the file's ditau metadata.

    Raises :class:`PlotError` for input without the reco group, :class:`SchemaError` for other
    schema problems.
    """
    reco_names = {c.name for c in group_columns("reco")}
    meta: dict[str, Any] = {}
    if isinstance(table_or_path, pa.Table):
        table = table_or_path
        if not reco_names & set(table.column_names):
            raise _no_reco_error("table")
        validate(table.select([c for c in table.column_names if not c.startswith("fs_")]),
                 require=_REQUIRE, source="table")
    else:
        path = Path(table_or_path)
        meta = read_metadata(path)  # checks existence, readability and the ditau footer
        if not reco_names & set(pq.read_schema(path).names):
            raise _no_reco_error(str(path))
        table = read_events(path, columns=NEEDED_COLUMNS, require=_REQUIRE)
    cols = {c: table[c].to_numpy(zero_copy_only=False) for c in NEEDED_COLUMNS}
    return cols, meta


# --------------------------------------------------------------------------------------------
# Panels


_GEV = "[GeV]"
_RAD = "[rad]"


def input_panels(cols: Mapping[str, NDArray[Any]], channel: str,
                 weights: FloatArray) -> list[Panel]:
    """The input-variable panels of one channel; ``cols`` already restricted to its events."""
    tags = leg_tags(channel)
    fp = first_leg_is_p(cols, channel)
    panels: list[Panel] = []
    legs: dict[str, list[FloatArray]] = {"truth": [], "reco": []}
    for i, tag in enumerate(tags):
        v = {lvl: _pick(fp, visible_p4(cols, "p", lvl), visible_p4(cols, "m", lvl), i == 0)
             for lvl in ("truth", "reco")}
        for lvl in v:
            legs[lvl].append(v[lvl])
        specs = (("pt", rf"$p_{{\mathrm{{T}}}}^{{{tag}}}$ {_GEV}", Binning(40, 0.0, 100.0), _pt4),
                 ("eta", rf"$\eta^{{{tag}}}$", Binning(30, -3.0, 3.0), _eta4),
                 ("phi", rf"$\phi^{{{tag}}}$ {_RAD}", Binning(32, -np.pi, np.pi), _phi4),
                 ("e", rf"$E^{{{tag}}}$ {_GEV}", Binning(40, 0.0, 300.0), _e4))
        for key, label, binning, fn in specs:
            panels.append(Panel(f"leg{i + 1}_{key}", label, binning, fn(v["reco"]), weights,
                                fn(v["truth"]), weights))
    # Visible di-tau mass (invariant mass of the two visible legs).
    panels.append(Panel("m_vis", r"$m_{\mathrm{vis}}$ " + _GEV, Binning(30, 0.0, 150.0),
                        mass(legs["reco"][0] + legs["reco"][1]), weights,
                        mass(legs["truth"][0] + legs["truth"][1]), weights))
    tmx, tmy = truth_met(cols)
    rmx, rmy = cols["met_x"], cols["met_y"]
    panels += [
        Panel("met", r"$E_{\mathrm{T}}^{\mathrm{miss}}$ " + _GEV, Binning(40, 0.0, 100.0),
              pt(rmx, rmy), weights, pt(tmx, tmy), weights),
        Panel("met_phi", r"$\phi(E_{\mathrm{T}}^{\mathrm{miss}})$ " + _RAD,
              Binning(32, -np.pi, np.pi), phi(rmx, rmy), weights,
              phi(tmx, tmy), weights),
        Panel("met_sumet", r"$\Sigma E_{\mathrm{T}}$ " + _GEV, Binning(40, 0.0, None),
              np.asarray(cols["met_sumet"], dtype=np.float64), weights),
    ]
    # Neutral-energy fraction of the reco-hadronic legs (both legs pooled).
    had = {leg: np.isin(cols[f"reco_mode_{leg}"], HADRONIC) for leg in ("p", "m")}
    frac = {lvl: np.concatenate([neutral_fraction(cols, leg, lvl)[had[leg]]
                                 for leg in ("p", "m")]) for lvl in ("truth", "reco")}
    w_had = np.concatenate([weights[had[leg]] for leg in ("p", "m")])
    panels.append(Panel("neu_frac", r"$E_{\pi^{0}}/E_{\mathrm{vis}}$ ($\tau_{\mathrm{had}}$)",
                        Binning(25, 0.0, 1.0), frac["reco"], w_had, frac["truth"], w_had))
    jet = _p4(cols, "jet1")
    panels += [
        Panel("jet1_pt", r"leading jet $p_{\mathrm{T}}$ " + _GEV, Binning(36, 20.0, 200.0),
              _pt4(jet), weights),
        Panel("jet1_eta", r"leading jet $\eta$", Binning(30, -4.5, 4.5), _eta4(jet), weights),
        Panel("n_jets", r"$N_{\mathrm{jets}}$", Binning(6, -0.5, 5.5),
              np.asarray(cols["n_jets"], dtype=np.float64), weights),
    ]
    return panels


def residual_panels(cols: Mapping[str, NDArray[Any]], channel: str,
                    weights: FloatArray) -> list[Panel]:
    """Resolution panels of one channel: reco/truth - 1 of the legs' visible pT and of MET x,
    and reco - truth of MET x (filled into ``Panel.reco``)."""
    tags = leg_tags(channel)
    fp = first_leg_is_p(cols, channel)
    panels = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for i, tag in enumerate(tags):
            v = {lvl: _pt4(_pick(fp, visible_p4(cols, "p", lvl), visible_p4(cols, "m", lvl),
                               i == 0)) for lvl in ("truth", "reco")}
            panels.append(Panel(
                f"leg{i + 1}_pt_res",
                rf"$p_{{\mathrm{{T}}}}^{{{tag},\,\mathrm{{reco}}}}/"
                rf"p_{{\mathrm{{T}}}}^{{{tag},\,\mathrm{{truth}}}} - 1$",
                Binning(40, None, None, cap=2.0), v["reco"] / v["truth"] - 1.0, weights))
        tmx, _ = truth_met(cols)
        rmx = np.asarray(cols["met_x"], dtype=np.float64)
        panels += [
            Panel("met_x_res", r"$E_{x}^{\mathrm{miss,reco}}/E_{x}^{\mathrm{miss,truth}} - 1$",
                  Binning(40, None, None, cap=5.0), rmx / tmx - 1.0, weights),
            Panel("met_x_diff", r"$E_{x}^{\mathrm{miss,reco}} - E_{x}^{\mathrm{miss,truth}}$ "
                  + _GEV, Binning(40, None, None, cap=200.0), rmx - tmx, weights),
        ]
    return panels


# --------------------------------------------------------------------------------------------
# Entry point


def check_channels(channels: Sequence[str] | None) -> tuple[str, ...]:
    """Validated channel selection (default: all seven) in the registry's order
    (:func:`ditau.physics.check_channels`; an unknown name is a :class:`PlotError`)."""
    if channels is None:
        return ANALYSIS_CHANNELS
    try:
        return _registry_check_channels(list(channels))
    except ValueError as err:
        raise PlotError(str(err)) from None


def event_weights(cols: Mapping[str, NDArray[Any]], weighted: bool = True) -> FloatArray:
    """Per-event weights: weight x reco_weight (expected events per fb^-1, schema docs of
    ``reco_weight``), or 1 for ``weighted=False``."""
    w = np.asarray(cols["weight"], dtype=np.float64)
    if not weighted:
        return np.ones_like(w)
    return w * np.asarray(cols["reco_weight"], dtype=np.float64)


def plot_inputs(table_or_path: pa.Table | str | os.PathLike[str],
                out_dir: str | os.PathLike[str], channels: Sequence[str] | None = None,
                weighted: bool = True, *, dpi: int = 80,
                note: Callable[[str], None] | None = None) -> list[Path]:
    """Truth-vs-reco validation plots of the reconstruction inputs, per channel.

    ``table_or_path``: a ditau table or Parquet file with the ``id``, ``truth`` and ``reco``
    groups. Events of a channel: ``reco_channel == channel`` and ``in_sr``. ``weighted``:
    weight x reco_weight (expected events per fb^-1), else unit weights (MC counts).
    Channels without events are skipped; ``note`` (default: the module logger) is told.
    Returns the written PNG paths (``inputs_<ch>.png``, ``residuals_<ch>.png`` per channel).
    """
    selected = check_channels(channels)
    say = note if note is not None else log.info
    cols, meta = load_inputs(table_or_path)
    com = com_tev(meta) if meta else None
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise PlotError(f"output directory {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)

    w_all = event_weights(cols, weighted)
    ylabel = "Events / bin / fb$^{-1}$" if weighted else "MC events / bin"
    reco_channel = np.asarray(cols["reco_channel"]).astype(str)
    in_sr = np.asarray(cols["in_sr"], dtype=bool)
    written: list[Path] = []
    for ch in selected:
        mask = (reco_channel == ch) & in_sr
        if not mask.any():
            say(f"channel {ch}: no signal-region events, skipped")
            continue
        sub = {k: v[mask] for k, v in cols.items()}
        title = f"{channel_tex(ch)}, SR ({int(mask.sum())} MC events)"
        written.append(draw_panels(input_panels(sub, ch, w_all[mask]),
                                   out / f"inputs_{ch}.png", title, ylabel, com, dpi=dpi))
        written.append(draw_panels(residual_panels(sub, ch, w_all[mask]),
                                   out / f"residuals_{ch}.png", title, ylabel, com, ncols=2,
                                   dpi=dpi, residual=True))
    return written


__all__ = [
    "HADRONIC", "NEEDED_COLUMNS", "check_channels", "event_weights", "first_leg_is_p",
    "input_panels", "load_inputs", "neutral_fraction", "plot_inputs", "residual_panels",
    "truth_met", "visible_p4",
]
