"""Resolution of reconstruction methods: relative residuals, HWHM tables and plots.

A method-output table (:func:`ditau.reconstruct.output.read_recon`) is joined to its event file
on ``event_id``. The relative residual of a quantity is (reco - true) / true, with the truth
of the event file: ``tau_{px,py,pz}_{p,m}`` (the taus just before decay) and ``m_tautau``; the
reconstructed values are ``rec_tau_{px,py,pz}_{p,m}`` and ``rec_m_tautau``. Only rows with
``rec_status == "ok"`` count, by default only candidate 0 (sampling methods: all candidates on
request). The resolution of a quantity in a channel is the HWHM of its residuals in %
(:mod:`ditau.evaluate.hwhm`; as in the reference's table, shared/reference/ml.md), the
efficiency the fraction of the channel's events with an ok row (events absent from the
method-output file count as not reconstructed).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from ditau.evaluate.hwhm import half_max
from ditau.physics import REFERENCE_ORDER
from ditau.physics import check_channels as _registry_check_channels
from ditau.plots.draw import Binning, Panel, channel_tex, draw_panels, split_channel
from ditau.plots.style import (
    REFERENCE_STYLES,
    Label,
    default_label,
    draw_label,
    legend_outside,
    method_style,
    new_figure,
    save_figure,
    style_context,
)
from ditau.schema import column_array, column_names

FloatArray = NDArray[np.float64]

#: Channels in the order of the reference's table: the registry's
#: :data:`ditau.physics.REFERENCE_ORDER` (this name is kept for old imports).
REFERENCE_CHANNELS: Final[tuple[str, ...]] = REFERENCE_ORDER

#: Residual keys -> column label of the reference's table.
QUANTITIES: Final[dict[str, str]] = {
    "dpx_p": "dp_x(tau+)", "dpy_p": "dp_y(tau+)", "dpz_p": "dp_z(tau+)",
    "dpx_m": "dp_x(tau-)", "dpy_m": "dp_y(tau-)", "dpz_m": "dp_z(tau-)",
    "dm_tautau": "dm_tautau",
}

#: HWHM (%) of the m_tautau residuals reported by the reference (arXiv:2504.01496, as
#: tabulated in shared/reference/ml.md): channel -> (ML, MMC).
REFERENCE_DM_TAUTAU: Final[dict[str, tuple[float, float]]] = {
    "pipi": (7.94, 23.27), "epi": (6.18, 24.91), "mupi": (6.41, 24.31),
    "pirho": (7.24, 22.72), "erho": (5.81, 22.70), "murho": (5.76, 22.81),
    "rhorho": (6.27, 21.89),
}

#: HWHM (%) of the tau+ momentum residuals of the reference's ML method (same source):
#: channel -> (dp_x, dp_y, dp_z).
REFERENCE_ML_DP: Final[dict[str, tuple[float, float, float]]] = {
    "pipi": (18.97, 19.01, 19.47), "epi": (18.34, 18.54, 19.52),
    "mupi": (19.30, 19.33, 20.00), "pirho": (16.19, 15.96, 16.31),
    "erho": (15.72, 15.50, 15.70), "murho": (16.03, 16.04, 16.12),
    "rhorho": (16.38, 16.38, 16.49),
}

#: An HWHM from fewer ok rows than this is not a number: the Markdown tables show
#: "n/a (k events)" and the figures draw no bar.
LOW_STATS: Final[int] = 20

_LEGS: Final[tuple[str, ...]] = ("p", "m")
_COMP: Final[tuple[str, ...]] = ("px", "py", "pz")
TRUTH_COLUMNS: Final[tuple[str, ...]] = (
    *(f"tau_{c}_{leg}" for leg in _LEGS for c in _COMP), "m_tautau")
RECON_COLUMNS: Final[tuple[str, ...]] = (
    "candidate", "rec_status", *(f"rec_tau_{c}_{leg}" for leg in _LEGS for c in _COMP),
    "rec_m_tautau")
_TEX: Final[dict[str, str]] = {
    **{f"d{c}_{leg}": rf"$\Delta p_{{{c[1]}}}/p_{{{c[1]}}}(\tau^{{{s}}})$"
       for leg, s in (("p", "+"), ("m", "-")) for c in _COMP},
    "dm_tautau": r"$\Delta m_{\tau\tau}/m_{\tau\tau}$",
}


class ResolutionError(ValueError):
    """Bad input for the evaluation (missing columns, unknown event ids or channels)."""


# --------------------------------------------------------------------------------------------
# Residuals


def _require(table: Any, columns: Sequence[str], source: str, hint: str = "") -> None:
    missing = [c for c in columns if c not in set(column_names(table))]
    if missing:
        raise ResolutionError(f"{source}: missing column(s) {', '.join(missing[:8])}"
                              f"{' ...' if len(missing) > 8 else ''}{hint}")


def _relative(reco: FloatArray, true: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return (reco - true) / true


def residuals(events: Any, recon: Any, all_candidates: bool = False, *,
              events_source: str = "events", recon_source: str = "recon",
              ) -> dict[str, NDArray[Any]]:
    """Relative residuals (reco - true)/true of a method-output table against its events.

    ``events``/``recon``: pyarrow tables or mappings of columns. Joined on ``event_id``; rows
    with ``rec_status`` ok, candidate 0 only unless ``all_candidates``. Returns arrays, one
    entry per used recon row: ``event_id``, ``candidate``, ``row`` (index into ``events``),
    the residuals :data:`QUANTITIES` (``dpx_p`` ... ``dm_tautau``; a true value of 0 gives
    +-inf/NaN, ignored by the HWHM), ``m_true`` and ``m_rec``.

    Raises :class:`ResolutionError` if a column is missing, if ``events`` repeats an event id,
    or if ``recon`` holds event ids that ``events`` lacks (the message names both sources).
    """
    _require(events, ("event_id", *TRUTH_COLUMNS), events_source,
             " (an event file with the truth group is needed)")
    _require(recon, ("event_id", *RECON_COLUMNS), recon_source,
             " (not a method-output file?)")
    ev_id = column_array(events, "event_id").astype(np.int64)
    order = np.argsort(ev_id, kind="stable")
    sorted_id = ev_id[order]
    dup = sorted_id[1:][sorted_id[1:] == sorted_id[:-1]]
    if len(dup):
        raise ResolutionError(f"{events_source}: event_id not unique ({len(dup)} repeated, "
                              f"e.g. {dup[0]})")
    rec_id = column_array(recon, "event_id").astype(np.int64)
    pos = np.clip(np.searchsorted(sorted_id, rec_id), 0, max(len(sorted_id) - 1, 0))
    found = (sorted_id[pos] == rec_id) if len(sorted_id) else np.zeros(len(rec_id), bool)
    if not found.all():
        bad = np.unique(rec_id[~found])
        raise ResolutionError(
            f"{recon_source}: {len(bad)} of {len(np.unique(rec_id))} event_id(s) are not in "
            f"{events_source} (e.g. {', '.join(str(i) for i in bad[:5])}); was the method "
            "run on another event file?")
    rows = order[pos] if len(sorted_id) else np.zeros(0, np.int64)
    use = column_array(recon, "rec_status").astype(str) == "ok"
    candidate = column_array(recon, "candidate").astype(np.int64)
    if not all_candidates:
        use &= candidate == 0
    rows = rows[use]
    out: dict[str, NDArray[Any]] = {"event_id": rec_id[use], "candidate": candidate[use],
                                    "row": rows}
    for leg in _LEGS:
        for c in _COMP:
            true = column_array(events, f"tau_{c}_{leg}").astype(np.float64)[rows]
            reco = column_array(recon, f"rec_tau_{c}_{leg}").astype(np.float64)[use]
            out[f"d{c}_{leg}"] = _relative(reco, true)
    out["m_true"] = column_array(events, "m_tautau").astype(np.float64)[rows]
    out["m_rec"] = column_array(recon, "rec_m_tautau").astype(np.float64)[use]
    out["dm_tautau"] = _relative(out["m_rec"], out["m_true"])
    return out


# --------------------------------------------------------------------------------------------
# Table


@dataclass(frozen=True)
class Cell:
    """One method in one channel: selected events, events with an ok row, HWHM and peak
    (mode) of each residual in % (NaN without ok rows), ok rows used (``n_rows``)."""

    n_events: int
    n_ok: int
    hwhm: dict[str, float]
    peak: dict[str, float]
    n_rows: int = 0

    @property
    def efficiency(self) -> float:
        """Fraction of the channel's events with an ok row (NaN without events)."""
        return self.n_ok / self.n_events if self.n_events else math.nan


@dataclass
class ResolutionTable:
    """HWHM resolutions per channel and method, with what the plots need."""

    channels: tuple[str, ...]
    methods: tuple[str, ...]
    cells: dict[tuple[str, str], Cell]
    by: str
    only_sr: bool
    n_missing: dict[str, int] = field(default_factory=dict)
    residuals: dict[str, dict[str, NDArray[Any]]] = field(default_factory=dict, repr=False)
    masks: dict[str, NDArray[np.bool_]] = field(default_factory=dict, repr=False)

    def cell(self, channel: str, method: str) -> Cell:
        return self.cells[(channel, method)]

    def n_events(self, channel: str) -> int:
        return int(self.masks[channel].sum()) if channel in self.masks else 0

    def to_markdown(self, layout: str = "full", reference: bool = False,
                    key: str = "dm_tautau") -> str:
        """Markdown table.

        ``layout="full"``: one row per channel; columns events, the efficiency per method,
        then each quantity of :data:`QUANTITIES` per method (HWHM of the relative residuals,
        %). ``layout="mass"``: dm_tautau only, methods side by side. ``layout="quantity"``:
        the quantity ``key`` of :data:`QUANTITIES` (or ``"efficiency"``) only, methods side
        by side: one small table per quantity. ``reference`` adds the reference's numbers
        (arXiv:2504.01496 via shared/reference/ml.md): ML and MMC dm_tautau to ``mass`` and
        to ``quantity`` of dm_tautau, ML dp(tau+) to ``full`` and to ``quantity`` of
        dp_{x,y,z}(tau+). Empty channels read "n/a", an HWHM from fewer than
        :data:`LOW_STATS` events "n/a (k events)".
        """
        if layout == "full":
            return self._full(reference)
        if layout == "mass":
            return self._mass(reference)
        if layout == "quantity":
            return self._quantity(key, reference)
        raise ResolutionError(f"unknown layout {layout!r}; use 'full', 'mass' or 'quantity'")

    def _quantity(self, key: str, reference: bool) -> str:
        if key != "efficiency" and key not in QUANTITIES:
            raise ResolutionError(f"unknown quantity {key!r}; use 'efficiency' or one of "
                                  f"{', '.join(QUANTITIES)}")
        head = ["channel", "events", *self.methods]
        ref_dp = {"dpx_p": 0, "dpy_p": 1, "dpz_p": 2}
        if reference and key == "dm_tautau":
            head += ["ML (ref.)", "MMC (ref.)"]
        elif reference and key in ref_dp:
            head.append("ML (ref.)")
        what = ("efficiency (%): events with a solution" if key == "efficiency"
                else f"HWHM of {QUANTITIES[key]} (reco - true)/true, %")
        lines = [self._caption(what), "", _row(head), _row(["---"] * len(head))]
        for ch in self.channels:
            row = [channel_label(ch), str(self.n_events(ch))]
            if key == "efficiency":
                row += [_fmt(100.0 * self.cell(ch, m).efficiency, 1) for m in self.methods]
            else:
                row += [self._value(ch, m, key) for m in self.methods]
            if reference and key == "dm_tautau":
                ref = REFERENCE_DM_TAUTAU.get(ch)
                row += [_fmt(ref[0]), _fmt(ref[1])] if ref else ["n/a", "n/a"]
            elif reference and key in ref_dp:
                ref_ml = REFERENCE_ML_DP.get(ch)
                row.append(_fmt(ref_ml[ref_dp[key]]) if ref_ml else "n/a")
            lines.append(_row(row))
        if key != "efficiency":
            lines += self._notes()
        return "\n".join(lines)

    def overall(self, method: str, key: str = "dm_tautau") -> tuple[float, int]:
        """(HWHM in %, ok rows) of ``key`` over every channel of the table pooled (NaN with
        fewer than :data:`LOW_STATS` rows)."""
        res = self.residuals.get(method)
        if res is None or not self.masks:
            return math.nan, 0
        sel = np.logical_or.reduce(list(self.masks.values()))[res["row"]]
        n = int(sel.sum())
        if n < LOW_STATS:
            return math.nan, n
        return 100.0 * half_max(res[key][sel]).hwhm, n

    def _tag(self, method: str) -> str:
        return f" {method}" if len(self.methods) > 1 else ""

    def _caption(self, what: str) -> str:
        sel = f"by {self.by}, {'signal region' if self.only_sr else 'all events'}"
        cand = "" if len(self.methods) > 1 or not self.methods else f", method {self.methods[0]}"
        return f"{what} ({sel}{cand})"

    def _full(self, reference: bool) -> str:
        head = ["channel", "events"] + [f"eff (%){self._tag(m)}" for m in self.methods]
        for key, label in QUANTITIES.items():
            head += [f"{label}{self._tag(m)}" for m in self.methods]
            if reference and key in ("dpx_p", "dpy_p", "dpz_p"):
                head.append(f"{label} ML (ref.)")
        lines = [self._caption("HWHM of the relative residuals, %"), "", _row(head),
                 _row(["---"] * len(head))]
        for ch in self.channels:
            n = self.n_events(ch)
            row = [channel_label(ch), str(n)]
            row += [_fmt(100.0 * self.cell(ch, m).efficiency, 1) for m in self.methods]
            for i, key in enumerate(QUANTITIES):
                row += [self._value(ch, m, key) for m in self.methods]
                if reference and i < 3:
                    ref = REFERENCE_ML_DP.get(ch)
                    row.append(_fmt(ref[i]) if ref else "n/a")
            lines.append(_row(row))
        lines += self._notes()
        return "\n".join(lines)

    def _mass(self, reference: bool) -> str:
        head = ["channel", "events"] + [f"dm_tautau {m}" for m in self.methods]
        if reference:
            head += ["ML (ref.)", "MMC (ref.)"]
        lines = [self._caption("HWHM of (m_tautau reco - true)/true, %"), "", _row(head),
                 _row(["---"] * len(head))]
        for ch in self.channels:
            row = [channel_label(ch), str(self.n_events(ch))]
            row += [self._value(ch, m, "dm_tautau") for m in self.methods]
            if reference:
                ref = REFERENCE_DM_TAUTAU.get(ch)
                row += [_fmt(ref[0]), _fmt(ref[1])] if ref else ["n/a", "n/a"]
            lines.append(_row(row))
        lines += self._notes()
        return "\n".join(lines)

    def _value(self, channel: str, method: str, key: str) -> str:
        cell = self.cell(channel, method)
        text = _fmt(cell.hwhm[key])
        if text != "n/a" and cell.n_rows < LOW_STATS:
            return f"n/a ({cell.n_rows} event{'s' if cell.n_rows != 1 else ''})"
        return text

    def _notes(self) -> list[str]:
        notes = []
        if any(0 < c.n_rows < LOW_STATS for c in self.cells.values()):
            notes.append(f"n/a (k events): fewer than {LOW_STATS} reconstructed events, too "
                         "few for a width")
        notes += [f"{m}: {k} selected event(s) absent from its output (counted as not "
                 "reconstructed)" for m, k in self.n_missing.items() if k]
        return [line for note in notes for line in ("", note)]


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _fmt(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if np.isfinite(x) else "n/a"


def channel_label(channel: str) -> str:
    """Row label of the reference's table: ``"pirho"`` -> ``"pi rho"``."""
    return " ".join(split_channel(channel))


def check_channels(channels: Sequence[str] | None) -> tuple[str, ...]:
    """Validated channel selection in the reference's order (default: all seven); names are
    checked by the registry (:func:`ditau.physics.check_channels`), an unknown one is a
    :class:`ResolutionError`."""
    if channels is None:
        return REFERENCE_ORDER
    try:
        chosen = set(_registry_check_channels(list(channels)))
    except ValueError as err:
        raise ResolutionError(str(err)) from None
    return tuple(c for c in REFERENCE_ORDER if c in chosen)


def resolution_table(events: Any, recons: Mapping[str, Any],
                     channels: Sequence[str] | None = REFERENCE_ORDER,
                     by: str = "reco_channel", only_sr: bool = True,
                     all_candidates: bool = False, *, events_source: str = "events",
                     sources: Mapping[str, str] | None = None) -> ResolutionTable:
    """HWHM (%) of the relative residuals per channel and method, with efficiencies.

    ``events``: event table (truth group plus ``by`` and, with ``only_sr``, ``in_sr``);
    ``recons``: method name -> method-output table. A channel's events: ``by == channel``
    (and ``in_sr``). ``sources``: method -> file name for error messages. Channels without
    events (or methods without ok rows there) give NaN cells ("n/a" in Markdown).
    """
    chans = check_channels(channels)
    hint = " (run 'ditau detector' first)" if by == "reco_channel" else ""
    _require(events, (by,), events_source, hint)
    if only_sr:
        _require(events, ("in_sr",), events_source,
                 " (no signal-region flag: run 'ditau detector' first, or use all events)")
    label = column_array(events, by).astype(str)
    sr = column_array(events, "in_sr").astype(bool) if only_sr else np.ones(len(label), bool)
    masks = {ch: (label == ch) & sr for ch in chans}
    srcs = dict(sources or {})
    table = ResolutionTable(chans, tuple(recons), {}, by, only_sr, masks=masks)
    selected = np.logical_or.reduce(list(masks.values())) if masks else np.zeros(len(label),
                                                                                bool)
    for method, recon in recons.items():
        res = residuals(events, recon, all_candidates, events_source=events_source,
                        recon_source=srcs.get(method, f"{method} output"))
        table.residuals[method] = res
        ok_event = np.zeros(len(label), bool)
        ok_event[res["row"]] = True
        present = np.zeros(len(label), bool)
        present[_rows_of(events, recon)] = True
        table.n_missing[method] = int((selected & ~present).sum())
        for ch in chans:
            mask = masks[ch]
            in_ch = mask[res["row"]]
            hw: dict[str, float] = {}
            pk: dict[str, float] = {}
            for key in QUANTITIES:
                hm = half_max(res[key][in_ch])
                hw[key], pk[key] = 100.0 * hm.hwhm, 100.0 * hm.peak
            table.cells[(ch, method)] = Cell(int(mask.sum()), int((ok_event & mask).sum()),
                                             hw, pk, int(in_ch.sum()))
    return table


def _rows_of(events: Any, recon: Any) -> NDArray[np.int64]:
    """Rows of ``events`` that ``recon`` has any row for (ids already checked)."""
    ev_id = column_array(events, "event_id").astype(np.int64)
    return np.flatnonzero(np.isin(ev_id, column_array(recon, "event_id").astype(np.int64)))


# --------------------------------------------------------------------------------------------
# Plots


def _file_tag(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "method"


def plot_resolution(table: ResolutionTable, out_dir: str | os.PathLike[str],
                    com: float | None = 13.0, dpi: int = 80) -> list[Path]:
    """ATLAS-style PNGs of a :class:`ResolutionTable`'s residuals, written atomically.

    Per channel with events: ``residuals_<method>_<channel>.png`` (the seven relative
    residuals, unit weights = MC rows) per method, and ``mtautau_<channel>.png`` (m_tautau of
    each method, points, with the truth of the same events as a line). Returns the paths.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ResolutionError(f"output directory {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    sel = "SR" if table.only_sr else "all events"
    ylabel = "MC events / bin"
    written: list[Path] = []
    for ch in table.channels:
        n = table.n_events(ch)
        if not n:
            continue
        mass_panels = []
        for method in table.methods:
            res = table.residuals[method]
            in_ch = table.masks[ch][res["row"]]
            ones = np.ones(int(in_ch.sum()))
            panels = [Panel(key, _TEX[key], Binning(40, None, None, cap=2.0), res[key][in_ch],
                            ones) for key in QUANTITIES]
            title = f"{channel_tex(ch)}, {method}, {sel} ({int(in_ch.sum())} of {n} events)"
            written.append(draw_panels(panels, out / f"residuals_{_file_tag(method)}_{ch}.png",
                                       title, ylabel, com, ncols=4, dpi=dpi, residual=True))
            mass_panels.append(Panel(
                f"m_{method}", rf"$m_{{\tau\tau}}$ ({method}) [GeV]", Binning(50, 0.0, 250.0),
                res["m_rec"][in_ch], ones, res["m_true"][in_ch], ones))
        written.append(draw_panels(mass_panels, out / f"mtautau_{ch}.png",
                                   f"{channel_tex(ch)}, {sel} ({n} events)", ylabel, com,
                                   ncols=max(2, min(len(mass_panels), 4)), dpi=dpi))
    return written


def make_hwhm_bars(table: ResolutionTable, keys: Sequence[str] = ("dm_tautau",),
                   reference: bool = True, label: Label | None = None) -> Any:
    """Grouped bars of the HWHM per channel, one bar per method in its colour (no bar for a
    cell with fewer than :data:`LOW_STATS` events: "n/a" written instead), one panel per
    quantity of ``keys``; with ``reference`` the reference's ML and MMC values (m_tautau) or
    ML values (tau+ momentum) as open markers. Returns the figure."""
    lab = label or default_label()
    chans = table.channels
    methods = table.methods
    width = 0.8 / max(len(methods), 1)
    with style_context():
        fig, axes, head = new_figure((max(1.3 * len(chans) + 5.0, 11.0), 3.6 * len(keys) + 0.6),
                                     len(keys), 1, header=True, sharex=True)
        handles: dict[str, Any] = {}
        x = np.arange(len(chans))
        for ax, key in zip(axes[:, 0], keys, strict=True):
            top = 0.0
            for k, m in enumerate(methods):
                st = method_style(m)
                pos = x + (k - (len(methods) - 1) / 2) * width
                vals = []
                for i, ch in enumerate(chans):
                    cell = table.cell(ch, m)
                    v = cell.hwhm[key]
                    if cell.n_rows < LOW_STATS or not np.isfinite(v):
                        ax.text(pos[i], 0.5, f"n/a ({cell.n_rows})", rotation=90, ha="center",
                                va="bottom", fontsize=8, color=st.color)
                        v = np.nan
                    vals.append(v)
                arr = np.asarray(vals, float)
                handles[st.label] = ax.bar(pos, np.nan_to_num(arr), width * 0.95,
                                           color=st.color, alpha=0.85)
                top = max(top, float(np.nanmax(arr, initial=0.0)))
            if reference:
                refs: list[tuple[str, dict[str, float]]] = []
                if key == "dm_tautau":
                    refs = [("ml", {c: v[0] for c, v in REFERENCE_DM_TAUTAU.items()}),
                            ("mmc", {c: v[1] for c, v in REFERENCE_DM_TAUTAU.items()})]
                elif key in ("dpx_p", "dpy_p", "dpz_p"):
                    j = ("dpx_p", "dpy_p", "dpz_p").index(key)
                    refs = [("ml", {c: v[j] for c, v in REFERENCE_ML_DP.items()})]
                for meth, vals_ref in refs:
                    st = REFERENCE_STYLES[meth]
                    k = next((i for i, m in enumerate(methods) if m.split(" ")[0] == meth),
                             None)
                    off = 0.0 if k is None else (k - (len(methods) - 1) / 2) * width
                    ys = np.array([vals_ref.get(c, np.nan) for c in chans])
                    handles[st.label] = ax.plot(x + off, ys, ls="none", marker=st.marker,
                                                markersize=11, markerfacecolor="white",
                                                markeredgecolor=st.color,
                                                markeredgewidth=2)[0]
                    top = max(top, float(np.nanmax(ys, initial=0.0)))
            ax.set_ylim(0.0, 1.25 * top if top > 0 else 1.0)
            ax.set_ylabel(f"HWHM of {_TEX[key]} [%]", fontsize=14)
            ax.set_xlim(-0.6, len(chans) - 0.4)
        axes[-1, 0].set_xticks(x, [channel_tex(c) for c in chans])
        axes[-1, 0].tick_params(axis="x", which="minor", bottom=False, top=False)
        legend_outside(fig, list(handles.values()), list(handles), where="right", fontsize=12)
        sel = "signal region" if table.only_sr else "all events"
        axes[0, 0].set_title(f"{sel}; n/a: fewer than {LOW_STATS} events", fontsize=12,
                             loc="right")
        draw_label(head, lab, fontsize=13)
    return fig


def make_residual_overlay(table: ResolutionTable, keys: Sequence[str] = tuple(QUANTITIES),
                          label: Label | None = None) -> Any:
    """The relative residuals of every channel of the table pooled, one step histogram per
    method (unit area, method colours), one panel per quantity. Returns the figure."""
    lab = label or default_label()
    ncols = 4
    nrows = -(-len(keys) // ncols)
    sel = np.logical_or.reduce(list(table.masks.values())) if table.masks else None
    with style_context():
        fig, axes, head = new_figure((4.2 * ncols + 2.2, 3.6 * nrows + 0.6), nrows, ncols,
                                     header=True)
        handles: dict[str, Any] = {}
        edges = np.linspace(-1.0, 1.0, 41)
        for ax, key in zip(axes.ravel(), keys, strict=False):
            for m in table.methods:
                st = method_style(m)
                res = table.residuals[m]
                use = sel[res["row"]] if sel is not None else np.ones(len(res["row"]), bool)
                v = np.asarray(res[key][use], float)
                v = np.clip(v[np.isfinite(v)], edges[0], edges[-1])
                if len(v) == 0:
                    continue
                h, _ = np.histogram(v, edges)
                h = h / max(h.sum(), 1)
                handles[f"{st.label} ({len(v)})"] = ax.stairs(h, edges, color=st.color,
                                                              lw=2, ls=st.linestyle)
            ax.set_xlabel(_TEX[key], fontsize=14)
            ax.set_ylabel("fraction / 0.05", fontsize=13)
            ax.set_xlim(edges[0], edges[-1])
        for ax in axes.ravel()[len(keys):]:
            ax.set_axis_off()
        legend_outside(fig, list(handles.values()), list(handles), where="right", fontsize=12,
                       title="method (events)")
        draw_label(head, lab, fontsize=13)
    return fig


def plot_summary(table: ResolutionTable, out_dir: str | os.PathLike[str],
                 com: float | None = 13.0, dpi: int = 100,
                 label: Label | None = None) -> list[Path]:
    """The summary figures of a table, written atomically as PNG in ``out_dir``:
    ``hwhm_mtautau.png`` (m_tautau HWHM per channel and method, the reference's ML and MMC
    as markers), ``hwhm_momentum.png`` (tau+ p_x, p_y, p_z, the reference's ML) and
    ``residuals_overlay.png`` (every residual, methods overlaid). Returns the paths."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ResolutionError(f"output directory {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    lab = (label or default_label()).with_(com=com)
    if not table.methods:
        return []
    return [save_figure(make_hwhm_bars(table, ("dm_tautau",), label=lab),
                        out / "hwhm_mtautau.png", dpi),
            save_figure(make_hwhm_bars(table, ("dpx_p", "dpy_p", "dpz_p"), label=lab),
                        out / "hwhm_momentum.png", dpi),
            save_figure(make_residual_overlay(table, label=lab), out / "residuals_overlay.png",
                        dpi)]


__all__ = [
    "LOW_STATS",
    "QUANTITIES",
    "RECON_COLUMNS",
    "REFERENCE_CHANNELS",
    "REFERENCE_DM_TAUTAU",
    "REFERENCE_ML_DP",
    "REFERENCE_ORDER",
    "TRUTH_COLUMNS",
    "Cell",
    "ResolutionError",
    "ResolutionTable",
    "channel_label",
    "check_channels",
    "make_hwhm_bars",
    "make_residual_overlay",
    "plot_resolution",
    "plot_summary",
    "residuals",
    "resolution_table",
]
