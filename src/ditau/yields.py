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
from ditau.schema import SchemaError, read_events, read_metadata
from ditau.select import HADHAD

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


def _selected(path: Path) -> pa.Table:
    """The columns the yields need from a detector-level file (SchemaError naming the file and
    the missing columns otherwise: the yields never run the detector themselves)."""
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
    cols = list(_NEEDED) + (["spin_weight"] if "spin_weight" in names else [])
    return read_events(path, columns=cols, kind="detector")


def compute_yields(paths: Sequence[str | Path]) -> YieldTable:
    """Signal-region yields per fb^-1 from detector-level event files (their stored reco
    columns: to change the selection, re-run ``ditau detector --select``).

    Several files of the same sample are combined: each file's weights (normalised to its own
    event count) are scaled by its share of the sample's events.
    """
    tables = {Path(p): _selected(Path(p)) for p in paths}
    per_sample: dict[str, int] = defaultdict(int)
    for path, t in tables.items():
        read_metadata(path)  # validates the file's schema version
        for s in set(t.column("sample").to_pylist()):
            per_sample[s] += t.num_rows
    out = YieldTable(samples=sorted(per_sample, key=lambda s: (s != SIGNAL, s)),
                     events=dict(per_sample))
    for t in tables.values():
        sample = np.asarray(t.column("sample").to_pylist(), dtype=object)
        share = np.array([t.num_rows / per_sample[s] for s in sample]) if len(sample) else 0.0
        # spin_weight: 1 for exact decays, the weight to the SM state for --spin weights samples
        spin = np.asarray(t["spin_weight"]) if "spin_weight" in t.column_names else 1.0
        w = np.asarray(t["weight"]) * np.asarray(t["reco_weight"]) * spin * share
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
