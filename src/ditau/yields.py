"""Signal-region yields per fb^-1 per channel, for the signal and each background.

Layout follows the reference's tables (shared/seeds/001, "Signal Region Yields"): rows are
the reconstructed channels grouped by trigger; the signal table's columns are the truth
channels (lepton flavours merged), the background table's columns are the samples.
Uncertainties are the MC statistical ones, sqrt(sum w^2).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ditau.generate.config import SIGNAL
from ditau.schema import SchemaError, event_weights, read_events, read_metadata
from ditau.select import HADHAD, SelectConfig

#: Reconstructed channels in the reference's row order, grouped by trigger.
TRIGGER_GROUPS: dict[str, tuple[str, ...]] = {
    "SR & di-tau trigger (pT(tau1) > 35 GeV & pT(tau2) > 25 GeV)": HADHAD,
    "SR & e+tau trigger (pT(e) > 17 GeV & pT(tau) > 25 GeV) or single-e (pT(e) > 26 GeV)":
        ("epi", "erho"),
    "SR & mu+tau trigger (pT(mu) > 14 GeV & pT(tau) > 25 GeV) or single-mu (pT(mu) > 26 GeV)":
        ("mupi", "murho"),
}
#: Truth columns of the signal table: lepton flavours merged as in the reference.
TRUTH_GROUPS: dict[str, tuple[str, ...]] = {
    "lpi": ("epi", "mupi"), "lrho": ("erho", "murho"), "pipi": ("pipi",),
    "pirho": ("pirho",), "rhorho": ("rhorho",), "other": ("other",),
}
#: Display names of the samples.
SAMPLE_NAMES: dict[str, str] = {
    "ztautau": "Z→ττ", "wlnu": "W→ℓν", "wtaunu": "W→τν", "zll": "Z→ℓℓ", "ttbar": "tt̄",
}
_CHANNEL_NAMES = {"pipi": "ππ", "pirho": "πρ", "rhorho": "ρρ", "epi": "eπ", "erho": "eρ",
                  "mupi": "μπ", "murho": "μρ", "lpi": "ℓπ", "lrho": "ℓρ", "other": "other"}


@dataclass
class Yield:
    """A weighted MC yield per fb^-1; ``unit`` is the mean weight of one selected MC event of
    the sample (for the limit quoted when no MC event passed).

    A cell without MC events is an upper limit, not a yield: :func:`total` never adds it to
    the sum; it keeps the limits of its empty parts apart in ``limits`` (their sum, a
    conservative bound), shown as ``(+ < L)`` after the summed yield.
    """

    sum_w: float = 0.0
    sum_w2: float = 0.0
    n: int = 0
    unit: float = 0.0
    #: Sum of the upper limits of the parts of a total that had no MC event (not in sum_w).
    limits: float = 0.0

    def add(self, w: np.ndarray) -> None:
        """Add the weights ``w`` (shape (n,), events per fb^-1) of n selected MC events."""
        self.sum_w += float(np.sum(w))
        self.sum_w2 += float(np.sum(np.square(w)))
        self.n += len(w)

    @property
    def error(self) -> float:
        """MC statistical uncertainty, sqrt(sum w^2), per fb^-1."""
        return float(np.sqrt(self.sum_w2))

    @property
    def limit(self) -> float:
        """68 % CL upper limit when no MC event passed: -ln(0.32) x the weight of one event."""
        return 1.14 * self.unit

    @property
    def is_limit(self) -> bool:
        """True for a cell with no MC event of a sample with selected events: an upper limit
        (:attr:`limit`), not a yield."""
        return self.n == 0 and self.unit > 0

    def __str__(self) -> str:
        if self.is_limit:
            return f"< {self.limit:.2g}"
        text = f"{self.sum_w:.2f} ± {self.error:.2f}" if self.n else "0"
        return text + (f" (+ < {self.limits:.2g})" if self.limits > 0 else "")


def total(ys: Iterable[Yield]) -> Yield:
    """The sum of the yields ``ys``; the upper limits among them (cells without MC events)
    are not summed into the yield but into the total's ``limits``."""
    t = Yield()
    for y in ys:
        if y.is_limit:
            t.limits += y.limit
            continue
        t.sum_w += y.sum_w
        t.sum_w2 += y.sum_w2
        t.n += y.n
        t.limits += y.limits
    return t


@dataclass
class YieldTable:
    """Yields per fb^-1: ``signal[reco][truth_group]`` and ``background[reco][sample]``."""

    signal: dict[str, dict[str, Yield]] = field(default_factory=dict)
    background: dict[str, dict[str, Yield]] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)

    def total_signal(self) -> Yield:
        """All signal cells (upper limits apart, :func:`total`)."""
        return total(y for row in self.signal.values() for y in row.values())

    def total_background(self) -> Yield:
        """All background cells (upper limits apart, :func:`total`)."""
        return total(y for row in self.background.values() for y in row.values())

    def to_markdown(self) -> str:
        bkgs = [s for s in self.samples if s != SIGNAL]
        lines: list[str] = []
        if SIGNAL in self.samples:
            lines += ["### Signal yields per fb⁻¹ (rows: reconstructed channel; columns: "
                      "truth)", ""]
            lines += _markdown_table(self.signal, list(TRUTH_GROUPS),
                                     [_CHANNEL_NAMES[g] for g in TRUTH_GROUPS])
            lines += ["", f"Signal total: {self.total_signal()} per fb⁻¹", ""]
        if bkgs:
            lines += ["### Background yields per fb⁻¹", ""]
            lines += _markdown_table(self.background, bkgs, [SAMPLE_NAMES.get(s, s)
                                                             for s in bkgs])
            lines += ["", f"Background total: {self.total_background()} per fb⁻¹", ""]
        lines.append("Events read: " + ", ".join(f"{k} {v}" for k, v in self.events.items()))
        lines += ["", "< L: no MC event of the sample passed; L is the 68 % CL upper limit "
                  "(1.14 x the mean weight of one selected event). Limits are never summed "
                  "into a total: (+ < L) after a total is the sum of the limits of its cells "
                  "without MC events."]
        return "\n".join(lines)


def _markdown_table(cells: dict[str, dict[str, Yield]], keys: list[str],
                    head: list[str]) -> list[str]:
    """Rows = reconstructed channels grouped by trigger, columns = ``keys``, plus a total."""
    lines = ["| channel | " + " | ".join(head) + " | total |", "|---" * (len(head) + 2) + "|"]
    for title, chans in TRIGGER_GROUPS.items():
        lines.append(f"| **{title}** |" + " |" * (len(head) + 1))
        for ch in chans:
            row = cells.get(ch, {})
            lines.append(f"| {_CHANNEL_NAMES[ch]} | "
                         + " | ".join(str(row.get(k, Yield())) for k in keys)
                         + f" | {total(row.get(k, Yield()) for k in keys)} |")
    return lines


_NEEDED = ("sample", "weight", "truth_channel", "reco_weight", "reco_channel", "in_sr")


def _reco_names(path: Path) -> list[str]:
    """The column names of a detector-level file with the columns the yields need
    (SchemaError naming the file and the missing columns otherwise: the yields never run the
    detector themselves)."""
    if not path.is_file():
        raise SchemaError(f"{path}: no such file")
    try:
        names = pq.ParquetFile(path).schema_arrow.names
    except (pa.ArrowInvalid, OSError) as err:
        raise SchemaError(f"{path}: not a readable Parquet file: {err}") from err
    missing = [c for c in _NEEDED if c not in names]
    if missing:
        raise SchemaError(f"{path}: no reco columns {missing[:4]}: the yields read "
                          "detector-level files; run 'ditau detector' on it first")
    return names


def _spin_column(names: Sequence[str]) -> list[str]:
    """``["spin_weight"]`` if the file has it (a detector-level file without truth has
    not)."""
    return ["spin_weight"] if "spin_weight" in names else []


def read_yield_columns(path: str | Path) -> pa.Table:
    """The columns the yields need from a detector-level file (:func:`_reco_names`):
    ``event_id``, ``sample``, the weights, ``in_sr``, the reco and truth channels, and
    ``spin_weight`` where the file has it. Raises SchemaError for a file that is not a
    detector-level event file."""
    return _selected(Path(path))


def _selected(path: Path) -> pa.Table:
    """The columns the yields need from a detector-level file (:func:`_reco_names`)."""
    names = _reco_names(path)
    return read_events(path, columns=[*_NEEDED, *_spin_column(names)], kind="detector")


def compute_yields(paths: Sequence[str | Path]) -> YieldTable:
    """Signal-region yields per fb^-1 from detector-level event files (their stored reco
    columns: to change the selection, re-run ``ditau detector --select``).

    Several files of the same sample are combined: each file's weights (normalised to its own
    event count) are scaled by its share of the sample's events.
    """
    tables = {Path(p): _selected(Path(p)) for p in paths}
    for path in tables:
        read_metadata(path)  # validates the file's schema version
    return yields_of_tables(list(tables.values()))


def yields_of_tables(tables: Sequence[pa.Table]) -> YieldTable:
    """:func:`compute_yields` of tables already read (:func:`read_yield_columns`, or any
    table with those columns), one per file, combined as there."""
    per_sample: dict[str, int] = defaultdict(int)
    for t in tables:
        for s in set(t.column("sample").to_pylist()):
            per_sample[s] += t.num_rows
    out = YieldTable(samples=sorted(per_sample, key=lambda s: (s != SIGNAL, s)),
                     events=dict(per_sample))
    for t in tables:
        sample = np.asarray(t.column("sample").to_pylist(), dtype=object)
        share = np.array([t.num_rows / per_sample[s] for s in sample]) if len(sample) else 0.0
        w = event_weights(t) * share
        sr = np.asarray(t["in_sr"])
        reco = np.asarray(t["reco_channel"].to_pylist(), dtype=object)
        truth = np.asarray(t["truth_channel"].to_pylist(), dtype=object)
        for s in set(sample):
            # the typical weight of one selected MC event (fake rates included), for limits
            pick = (sample == s) & sr if np.any((sample == s) & sr) else sample == s
            unit = float(np.mean(w[pick]))
            for ch in (c for cs in TRIGGER_GROUPS.values() for c in cs):
                m = sr & (sample == s) & (reco == ch)
                if s == SIGNAL:
                    row = out.signal.setdefault(ch, {})
                    for g, members in TRUTH_GROUPS.items():
                        row.setdefault(g, Yield(unit=unit)).add(w[m & np.isin(truth, members)])
                else:
                    out.background.setdefault(ch, {}).setdefault(s, Yield(unit=unit)).add(w[m])
    return out


# --- signal composition by truth decay mode and the cut-flow ------------------------------

#: Truth decay-mode classes of one tau leg, from the truth columns ``decay_mode_*``,
#: ``n_charged_*``, ``n_pi0_*``, ``n_neutral_*`` and ``chg_pdg_*`` (direct decay products of
#: the tau, :mod:`ditau.generate.truth`), with their display names.
TRUTH_MODES: dict[str, str] = {
    "pi": "π", "rho": "ρ (π π⁰)", "e": "e", "mu": "μ",
    "pi2pi0": "π ≥2π⁰", "kaon": "K± (+ π⁰s)", "1prong_other": "1-prong + K⁰/η/ω/γ",
    "3prong": "3-prong", "3prong_neu": "3-prong + neutrals", "other": "other",
}
#: PDG id of the charged kaon (PDG "Monte Carlo particle numbering scheme").
_KAON = 321

#: The reference's signal-region yields per fb^-1 with truth channel = reconstructed channel
#: (the diagonal of the signal table, shared/seeds/001_*.txt, "Signal Region Yields"; the
#: lepton flavours of its l pi / l rho columns follow the row). Their sum is 4 966.61; the
#: table's "Total: 4996.61" matches it but for one digit, so the reference's total counts only
#: these diagonal cells (its off-diagonal cells add 106.8 more).
REFERENCE_SR_DIAGONAL: dict[str, float] = {
    "pipi": 89.43, "pirho": 206.39, "rhorho": 629.99, "epi": 378.90, "erho": 1233.90,
    "mupi": 565.94, "murho": 1862.06,
}

_LEG_NAMES = {"pi": "π", "rho": "ρ", "e": "e", "mu": "μ"}


def truth_leg_modes(table: pa.Table, leg: str) -> np.ndarray:
    """Truth decay-mode class (:data:`TRUTH_MODES` key) of the ``leg`` ("p" or "m") tau of
    every event, from the truth columns: the analyser modes from ``decay_mode_*``; otherwise
    1-prong with a charged kaon (``chg_pdg``), with other neutrals than pi0s (K0, eta, omega,
    photons: ``n_neutral > n_pi0``), or pi+- with >= 2 pi0; 3-prong without / with neutrals;
    anything else (5-prong, no tau) "other"."""
    def col(name: str) -> np.ndarray:
        return np.asarray(table[f"{name}_{leg}"].to_numpy(zero_copy_only=False))

    mode = col("decay_mode").astype(str)
    n_chg, n_pi0, n_neu = col("n_charged"), col("n_pi0"), col("n_neutral")
    pdg = np.abs(col("chg_pdg"))
    out = np.full(len(mode), "other", dtype=object)
    one, three = n_chg == 1, n_chg == 3
    out[one & (n_neu > n_pi0)] = "1prong_other"
    out[one & (n_neu == n_pi0) & (n_pi0 >= 2)] = "pi2pi0"
    out[one & (pdg == _KAON)] = "kaon"
    out[three & (n_neu == 0)] = "3prong"
    out[three & (n_neu > 0)] = "3prong_neu"
    for m in ("pi", "rho", "e", "mu"):
        out[mode == m] = m
    return out


_SIGNAL_COLUMNS = (*_NEEDED, "reco_mode_p", "reco_mode_m", "trig_ditau", "trig_etau",
                   "trig_single_e", "trig_mutau", "trig_single_mu")
_TRUTH_COLUMNS = tuple(f"{c}_{leg}" for leg in ("p", "m") for c in (
    "decay_mode", "n_charged", "n_pi0", "n_neutral", "chg_pdg", "chg_px", "chg_py", "chg_pz",
    "neu_px", "neu_py", "neu_pz"))


@dataclass
class _Signal:
    """The signal events of detector-level files: columns as numpy arrays and each event's
    weight per fb^-1 (fake-rate and spin weights, several files of one sample shared)."""

    cols: dict[str, np.ndarray]
    w: np.ndarray
    select: dict[str, object]
    meta: dict[str, object]


def _read_signal(paths: Sequence[str | Path]) -> _Signal:
    """The signal (``sample`` = the signal's name) events of ``paths``; SchemaError naming a
    file without the reco or truth columns, or without signal events."""
    tables, metas = [], []
    for p in (Path(x) for x in paths):
        names = _reco_names(p)  # the reco-column check with its message
        missing = [c for c in _TRUTH_COLUMNS if c not in names]
        if missing:
            raise SchemaError(f"{p}: no truth columns {missing[:4]}: the composition and the "
                              "cut-flow need the generated truth (a signal file)")
        t = read_events(p, columns=[*_SIGNAL_COLUMNS, *_TRUTH_COLUMNS, *_spin_column(names)],
                        kind="detector")
        t = t.filter(pa.compute.equal(t["sample"], SIGNAL))
        if t.num_rows == 0:
            raise SchemaError(f"{p}: no signal ({SIGNAL}) events")
        tables.append(t)
        metas.append(read_metadata(p))
    n_all = sum(t.num_rows for t in tables)
    cols: dict[str, list[np.ndarray]] = defaultdict(list)
    ws = []
    for t in tables:
        ws.append(event_weights(t) * (t.num_rows / n_all))
        for leg in ("p", "m"):
            cols[f"truth_mode_{leg}"].append(truth_leg_modes(t, leg))
        for c in t.column_names:
            cols[c].append(np.asarray(t[c].to_numpy(zero_copy_only=False)))
    merged = {c: np.concatenate(v) for c, v in cols.items()}
    for c in ("truth_channel", "reco_channel", "reco_mode_p", "reco_mode_m", "decay_mode_p",
              "decay_mode_m"):
        merged[c] = merged[c].astype(str)
    sel = metas[0].get("select_config")
    return _Signal(merged, np.concatenate(ws), dict(sel) if isinstance(sel, dict) else {},
                   metas[0])


@dataclass
class Composition:
    """Signal-region composition by truth decay mode.

    ``legs[(channel, reco_mode)][truth_mode]``: the SR yield per fb^-1 of the legs
    reconstructed as ``reco_mode`` in reconstructed ``channel`` whose tau decayed to
    ``truth_mode`` (:data:`TRUTH_MODES`). The reco leg of slot ``_p`` (the positively charged
    measured leg) is matched to the truth tau+: for the signal's real taus its charge is the
    sum of that tau's own tracks. ``events[channel]``: the channel's SR yield split into
    "same" (truth channel = reco channel), "migrated" (both truth legs analysers, another
    channel) and "non-analyser" (a truth leg without a polarimeter: a background to the spin
    measurement).
    """

    legs: dict[tuple[str, str], dict[str, Yield]] = field(default_factory=dict)
    events: dict[str, dict[str, Yield]] = field(default_factory=dict)
    n_events: int = 0

    def fraction(self, channel: str, reco_mode: str, truth_mode: str) -> float:
        """Share of the (channel, reco_mode) legs' SR yield from ``truth_mode`` legs."""
        row = self.legs.get((channel, reco_mode), {})
        tot = sum(y.sum_w for y in row.values())
        return row[truth_mode].sum_w / tot if tot > 0 and truth_mode in row else 0.0

    def to_markdown(self) -> str:
        """Two tables: per reconstructed leg, the truth modes (% of the legs' SR yield); per
        reconstructed channel, the truth-channel categories."""
        modes = [m for m in TRUTH_MODES if any(r.get(m, Yield()).n for r in self.legs.values())]
        lines = ["### Signal-region composition by truth decay mode (% of the legs' SR yield)",
                 "", "| reco channel: leg | SR legs /fb⁻¹ | MC legs | "
                 + " | ".join(TRUTH_MODES[m] for m in modes) + " |",
                 "|---" * (len(modes) + 3) + "|"]
        for (ch, rm), row in self.legs.items():
            tot = total(row.values())
            if not tot.n:
                continue
            cells = [f"{100 * row[m].sum_w / tot.sum_w:.1f}" if row.get(m, Yield()).n else "–"
                     for m in modes]
            lines.append(f"| {_CHANNEL_NAMES[ch]}: {_LEG_NAMES.get(rm, rm)} | "
                         f"{tot.sum_w:.0f} | {tot.n} | " + " | ".join(cells) + " |")
        lines += ["", "### Signal-region events by truth channel (% of the channel's SR yield)",
                  "", "| reco channel | SR /fb⁻¹ | MC events | truth = reco | other analyser "
                  "channel | a non-analyser leg |", "|---|---|---|---|---|---|"]
        for ch, row in self.events.items():
            tot = total(row.values())
            if not tot.n:
                continue
            lines.append(f"| {_CHANNEL_NAMES[ch]} | {tot.sum_w:.0f} ± {tot.error:.0f} | "
                         f"{tot.n} | " + " | ".join(f"{100 * row[k].sum_w / tot.sum_w:.1f}"
                                                    for k in ("same", "migrated",
                                                              "non-analyser")) + " |")
        lines += ["", f"{self.n_events} signal events read. A leg of reco channel X is matched "
                  "to the truth tau of the same charge."]
        return "\n".join(lines)


def composition(paths: Sequence[str | Path]) -> Composition:
    """Signal-region composition of each reconstructed channel by truth decay mode
    (:class:`Composition`) from detector-level signal files with truth (several files of one
    sample are combined as in :func:`compute_yields`)."""
    sig = _read_signal(paths)
    c, w = sig.cols, sig.w
    out = Composition(n_events=len(w))
    analyser = np.isin(c["decay_mode_p"], ("pi", "rho", "e", "mu")) \
        & np.isin(c["decay_mode_m"], ("pi", "rho", "e", "mu"))
    for ch in (x for cs in TRIGGER_GROUPS.values() for x in cs):
        m = c["in_sr"] & (c["reco_channel"] == ch)
        same = c["truth_channel"] == ch
        out.events[ch] = {k: Yield() for k in ("same", "migrated", "non-analyser")}
        out.events[ch]["same"].add(w[m & same])
        out.events[ch]["migrated"].add(w[m & ~same & analyser])
        out.events[ch]["non-analyser"].add(w[m & ~same & ~analyser])
        for rm in dict.fromkeys(_modes_of(ch)):
            row = out.legs.setdefault((ch, rm), {k: Yield() for k in TRUTH_MODES})
            for leg in ("p", "m"):
                lm = m & (c[f"reco_mode_{leg}"] == rm)
                for tm in TRUTH_MODES:
                    row[tm].add(w[lm & (c[f"truth_mode_{leg}"] == tm)])
    return out


def _modes_of(channel: str) -> tuple[str, str]:
    """The two leg modes of an analysis channel ("murho" -> ("mu", "rho"))."""
    for lep in ("e", "mu", "pi", "rho"):
        if channel.startswith(lep) and channel[len(lep):] in ("pi", "rho"):
            return lep, channel[len(lep):]
    raise ValueError(f"not an analysis channel: {channel!r}")


#: Steps of the cut-flow (cumulative), with their descriptions.
CUTFLOW_STEPS: dict[str, str] = {
    "generated": "events of the truth channel (after the generator filter, if any)",
    "trigger": "the channel's trigger fired on identified offline objects",
    "object ID": "paired: exactly one lepton + >= 1 tau_h, or no lepton + >= 2 tau_h",
    "channel": "reconstructed channel = truth channel",
    "SR": "signal region (opposite charge, trigger, lep-had m_T and sum cos dphi)",
}


@dataclass
class CutFlow:
    """Per truth channel, the signal yield per fb^-1 after each step of
    :data:`CUTFLOW_STEPS` (cumulative) and the truth-level fiducial yield (both visible legs
    above the channel's object and trigger thresholds: an acceptance, not a step)."""

    steps: dict[str, dict[str, Yield]] = field(default_factory=dict)
    fiducial: dict[str, Yield] = field(default_factory=dict)
    cross_section_pb: float | None = None
    filter_efficiency: float | None = None

    def to_markdown(self) -> str:
        """The cut-flow table with the step efficiencies and the reference's SR yields."""
        names = list(CUTFLOW_STEPS)
        lines = ["### Signal cut-flow per truth channel (per fb⁻¹; step efficiency in "
                 "brackets)", ""]
        if self.cross_section_pb is not None:
            flt = (f", generator-filter efficiency {self.filter_efficiency:.3f} (unfiltered "
                   f"{self.cross_section_pb / self.filter_efficiency:.0f} pb)"
                   if self.filter_efficiency else "")
            lines += [f"Cross section of the sample: {self.cross_section_pb:.0f} pb{flt}.", ""]
        lines += ["| truth channel | " + " | ".join(names) + " | truth fiducial | reference SR "
                  "| ours / reference |", "|---" * (len(names) + 4) + "|"]
        sums = {s: Yield() for s in names}
        fid = Yield()
        for ch, row in self.steps.items():
            cells = []
            for i, s in enumerate(names):
                prev = row[names[i - 1]].sum_w if i else 0.0
                eff = f" ({row[s].sum_w / prev:.2f})" if i and prev > 0 else ""
                cells.append(f"{row[s].sum_w:.0f}{eff}")
                sums[s] = total([sums[s], row[s]])
            fid = total([fid, self.fiducial[ch]])
            ref = REFERENCE_SR_DIAGONAL[ch]
            lines.append(f"| {_CHANNEL_NAMES[ch]} | " + " | ".join(cells)
                         + f" | {self.fiducial[ch].sum_w:.0f} | {ref:g} | "
                         f"{row['SR'].sum_w / ref:.2f} ± {row['SR'].error / ref:.2f} |")
        ref_tot = sum(REFERENCE_SR_DIAGONAL.values())
        lines.append("| total | " + " | ".join(f"{sums[s].sum_w:.0f}" for s in names)
                     + f" | {fid.sum_w:.0f} | {ref_tot:.0f} | "
                     f"{sums['SR'].sum_w / ref_tot:.2f} ± {sums['SR'].error / ref_tot:.2f} |")
        lines += [""] + [f"- {k}: {v}" for k, v in CUTFLOW_STEPS.items()]
        lines += ["- truth fiducial: both truth visible legs inside the object cuts and above "
                  "the channel's trigger thresholds (not a step: smearing moves events across)",
                  "- reference SR: the reference's truth = reco cells (shared/seeds/001)"]
        return "\n".join(lines)


def cutflow(paths: Sequence[str | Path]) -> CutFlow:
    """Per truth channel, the signal cut-flow :data:`CUTFLOW_STEPS` from detector-level signal
    files (truth and reco columns; their stored selection: thresholds from the files'
    ``select_config`` metadata), next to the reference's SR yields."""
    from ditau.physics import pt_eta

    sig = _read_signal(paths)
    c, w = sig.cols, sig.w
    cfg = SelectConfig.from_dict(sig.select, source="select_config") if sig.select \
        else SelectConfig()
    vis = {leg: pt_eta(*(c[f"chg_{x}_{leg}"] + c[f"neu_{x}_{leg}"] for x in ("px", "py", "pz")))
           for leg in ("p", "m")}
    paired = np.isin(c["reco_channel"], [x for cs in TRIGGER_GROUPS.values() for x in cs])
    out = CutFlow(cross_section_pb=_number(sig.meta.get("cross_section_pb")))
    considered = _number(sig.meta.get("filter_considered"))
    vetoed = _number(sig.meta.get("filter_vetoed"))
    if considered and vetoed is not None:
        out.filter_efficiency = 1.0 - vetoed / considered
    for ch in (x for cs in TRIGGER_GROUPS.values() for x in cs):
        gen = c["truth_channel"] == ch
        trig, fid = _trigger_and_fiducial(ch, c, vis, cfg)
        masks = {"generated": gen, "trigger": gen & trig}
        masks["object ID"] = masks["trigger"] & paired
        masks["channel"] = masks["object ID"] & (c["reco_channel"] == ch)
        masks["SR"] = masks["channel"] & c["in_sr"]
        out.steps[ch] = {}
        for s, m in masks.items():
            out.steps[ch][s] = Yield()
            out.steps[ch][s].add(w[m])
        out.fiducial[ch] = Yield()
        out.fiducial[ch].add(w[gen & fid])
    return out


def _number(x: object) -> float | None:
    return float(x) if isinstance(x, int | float) else None


def _trigger_and_fiducial(ch: str, c: dict[str, np.ndarray],
                          vis: dict[str, tuple[np.ndarray, np.ndarray]], cfg: SelectConfig
                          ) -> tuple[np.ndarray, np.ndarray]:
    """The channel's offline trigger decision and its truth-level fiducial mask (both visible
    legs inside the object cuts of ``cfg`` and above its trigger thresholds)."""
    (pt_p, eta_p), (pt_m, eta_m) = vis["p"], vis["m"]
    tau_ok = {leg: (pt > cfg.tau_pt_min) & (np.abs(eta) < cfg.tau_eta_max)
              for leg, (pt, eta) in vis.items()}
    if ch in HADHAD:
        lead, sub = np.maximum(pt_p, pt_m), np.minimum(pt_p, pt_m)
        hi, lo = cfg.ditau_trigger
        return c["trig_ditau"], tau_ok["p"] & tau_ok["m"] & (lead > hi) & (sub > lo)
    lep = "e" if ch.startswith("e") else "mu"
    lep_is_p = c["decay_mode_p"] == lep
    lpt, leta = np.where(lep_is_p, pt_p, pt_m), np.abs(np.where(lep_is_p, eta_p, eta_m))
    tpt = np.where(lep_is_p, pt_m, pt_p)
    t_ok = np.where(lep_is_p, tau_ok["m"], tau_ok["p"])
    if lep == "e":
        l_ok = (lpt > cfg.e_pt_min) & (leta < cfg.e_eta_max)
        (l_thr, t_thr), single = cfg.etau_trigger, cfg.single_e_trigger
        trig = c["trig_etau"] | c["trig_single_e"]
    else:
        l_ok = (lpt > cfg.mu_pt_min) & (leta < cfg.mu_eta_max)
        (l_thr, t_thr), single = cfg.mutau_trigger, cfg.single_mu_trigger
        trig = c["trig_mutau"] | c["trig_single_mu"]
    fid = l_ok & t_ok & (((lpt > l_thr) & (tpt > t_thr)) | (lpt > single))
    return trig, fid
