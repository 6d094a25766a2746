"""The ditau event schema: one row per event, one Parquet file per sample.

Every stage reads and writes this schema. Columns come in groups:

``id``
    identity and normalisation (always required).
``truth``
    generator truth of the signal: both tau four-momenta just before decay (after FSR), each
    leg's invisible system (sum of its neutrinos) and, for leptonic legs, its lepton-flavour
    neutrino alone (``nul_*``, since 1.2.0), its visible products split into the charged part
    (pi+- or lepton, or the sum of charged prongs) and the neutral part (pi0s, photons, ...),
    decay modes, channel, the hard process, the event-level invisible/out-of-acceptance sums
    and the spin weight (``spin_weight``, since 1.2.0).
``particles``
    the visible final state (list columns, float32), which the detector stage needs to re-run
    with other settings; each particle is tagged with the tau leg it descends from (if any).
``reco``
    detector-level quantities filled by the detector/selection stage; absent in truth files.
``method``
    a reconstruction method's output table (one file per method): ``event_id`` plus these
    columns, one row per event (per candidate for sampling methods), with a ``rec_status``.

Naming: ``_p`` = tau+ leg, ``_m`` = tau- leg. Frame: the laboratory frame, z along beam 1
(the "+z" proton), units GeV. Label columns are strings from :data:`ditau.physics.DECAY_MODES`
and :data:`ditau.physics.CHANNELS`.

Files carry footer key-value metadata under ``ditau`` (JSON): schema version, the producing
stage and its configuration (generator settings, seed, per-job seeds), cross section, number of
generated events, the file's ``run_id`` and the identity of its inputs (see
:mod:`ditau.provenance`) and ``event_ids``, a checksum of its ``event_id`` column. With plain
pyarrow: ``json.loads(pq.ParquetFile(path).metadata.metadata[b"ditau"])``. Writes are atomic: a
temporary file in the target directory, renamed on success.

A file is of one of three kinds (:data:`FILE_KINDS`), each with its own required columns:
generated events (``id`` + ``truth``, optionally ``particles``), detector-level events (``id`` +
``reco``, optionally ``truth`` and ``particles``: a Delphes import may have no truth) and
reconstruction output (``event_id`` + ``method``). :func:`validate_file` checks a file against
its kind (``ditau info``); :func:`read_events` with ``kind`` does the same before reading.

Versions: ``MAJOR.MINOR.PATCH``; a file of another major version is refused. A minor version
adds columns: each column records the version that introduced it (``Column.since``) and the
value it takes in older files (``Column.fill``). Files of an older minor version are valid
without those columns and :func:`read_events` (and the detector and merge stages, through
:func:`upgrade`) add them with their fill values, so downstream code sees one column set.
1.2.0 (issue #14) added ``nul_{px,py,pz,e}_{p,m}`` (NaN in older files: unknown, so the
lepton polarimeter falls back to its approximation) and ``spin_weight`` (1 in older files,
which were all generated with Pythia's exact correlated decays or deliberately unpolarised).
1.3.0 (issue #16) added the vertices and track impact parameters, all NaN where unknown
(older files, producers without the information): the truth primary vertex ``pv_{x,y,z}``
and tau decay vertices ``tau_dv_{x,y,z}_{p,m}``, each visible particle's production vertex
relative to the primary vertex ``fs_v{x,y,z}`` (lists like ``fs_px``), and per leg the
charged track's transverse and longitudinal impact parameters with their errors
``reco_{d0,z0}_{p,m}``, ``reco_{d0,z0}_err_{p,m}``. Units mm, laboratory frame. These
columns are *optional* (``Column.optional``): a file of any version may lack them (a
hand-made table, a toy) and readers then see their fill value (:func:`complete`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numpy.typing import NDArray

from ditau.physics import CHANNELS, DECAY_MODES

SCHEMA_VERSION: Final[str] = "1.3.0"
METADATA_KEY: Final[bytes] = b"ditau"


class SchemaError(ValueError):
    """An event table or file does not follow the ditau schema; the message says where."""


@dataclass(frozen=True)
class Column:
    """One column of the schema."""

    name: str
    dtype: pa.DataType
    unit: str
    group: str
    doc: str
    nan_allowed: bool = False
    allowed: tuple[str, ...] | None = None
    #: Schema version that introduced the column (older files may lack it).
    since: str = "1.0.0"
    #: The value of the column in files older than ``since`` (see :func:`upgrade`); for a
    #: list column, the value of every element (lists as long as those of ``fill_like``).
    fill: float | None = None
    #: True: the column may be absent from a file of any version (its producer may not have
    #: the information: a toy, a hand-made table); readers then see ``fill`` (:func:`complete`)
    #: and no file kind requires it.
    optional: bool = False
    #: For a list column: the list column whose list lengths its fill values take.
    fill_like: str | None = None


_LEGS: Final[dict[str, str]] = {"p": "tau+", "m": "tau-"}
_XYZE: Final[tuple[str, ...]] = ("px", "py", "pz", "e")


def _vec(prefix: str, what: str, group: str, nan_allowed: bool = False,
         since: str = "1.0.0", fill: float | None = None) -> list[Column]:
    cols = []
    for leg, name in _LEGS.items():
        for c in _XYZE:
            cols.append(Column(f"{prefix}_{c}_{leg}", pa.float64(), "GeV", group,
                               f"{what} of the {name} leg, {c}", nan_allowed, since=since,
                               fill=fill))
    return cols


def _build_columns() -> list[Column]:
    f64, i8, i32, i64 = pa.float64(), pa.int8(), pa.int32(), pa.int64()
    cols: list[Column] = [
        Column("event_id", i64, "", "id", "unique event number within the sample"),
        Column("sample", pa.string(), "", "id", "sample name (e.g. ztautau)"),
        Column("weight", f64, "fb", "id",
               "normalisation: events per fb^-1 this event stands for (sum = expected yield)"),
        Column("gen_weight", f64, "", "id", "generator event weight (1 for unweighted)"),
        Column("truth_channel", pa.string(), "", "truth", "truth analysis channel",
               allowed=CHANNELS),
        # Hard process.
        Column("hard_id1", i32, "", "truth", "PDG id of the incoming parton from beam 1 (+z)"),
        Column("hard_id2", i32, "", "truth", "PDG id of the incoming parton from beam 2 (-z)"),
        Column("quark_pz_sign", i8, "", "truth",
               "+1 if the incoming quark (not antiquark) of the hard process moves along +z"),
        Column("m_hat", f64, "GeV", "truth",
               "invariant mass of the hard process (the gamma*/Z for Drell-Yan samples)"),
        Column("m_tautau", f64, "GeV", "truth",
               "invariant mass of the two taus (after FSR); NaN without a tau pair", True),
        Column("pt_tautau", f64, "GeV", "truth",
               "transverse momentum of the tau pair; NaN without a tau pair", True),
    ]
    # Leg columns are NaN where the event has no such tau (background samples: n_nu = 0).
    cols += _vec("tau", "tau four-momentum just before decay (after FSR)", "truth", True)
    cols += _vec("nu", "sum of the leg's neutrinos (invisible system)", "truth", True)
    cols += _vec("nul", "lepton-flavour neutrino of a leptonic (e, mu) leg: nu_l for the "
                 "tau+ (tau+ -> l+ nu_l nubar_tau), nubar_l for the tau- (tau- -> l- nubar_l "
                 "nu_tau); NaN for other legs and where the record does not give it", "truth",
                 True, since="1.2.0", fill=float("nan"))
    cols += _vec("chg", "charged visible decay products (pi+- or lepton; sum of prongs)",
                 "truth", True)
    cols += _vec("neu", "neutral visible decay products (pi0s, photons, ...; 0 if none)",
                 "truth", True)
    for leg, name in _LEGS.items():
        cols += [
            Column(f"n_nu_{leg}", i8, "", "truth", f"number of neutrinos from the {name}"),
            Column(f"n_charged_{leg}", i8, "", "truth",
                   f"charged direct decay products of the {name}"),
            Column(f"n_pi0_{leg}", i8, "", "truth",
                   f"pi0s among the direct decay products of the {name}"),
            Column(f"n_neutral_{leg}", i8, "", "truth",
                   f"neutral visible direct decay products of the {name}"),
            Column(f"chg_pdg_{leg}", i32, "", "truth",
                   f"PDG id of the single charged decay product of the {name} (0 if multi-prong)"),
            Column(f"decay_mode_{leg}", pa.string(), "", "truth", f"decay mode of the {name}",
                   allowed=DECAY_MODES),
        ]
    cols += [
        Column("nu_other_px", f64, "GeV", "truth", "px sum of final neutrinos not from the taus"),
        Column("nu_other_py", f64, "GeV", "truth", "py sum of final neutrinos not from the taus"),
        Column("vis_out_px", f64, "GeV", "truth",
               "px sum of visible final particles outside the stored |eta| range"),
        Column("vis_out_py", f64, "GeV", "truth",
               "py sum of visible final particles outside the stored |eta| range"),
        Column("spin_weight", f64, "", "truth",
               "tau-pair spin weight: the LO Standard-Model spin state over unpolarised decays "
               "for samples generated with spin='weights' (ditau.spin.spin_weight), else 1; "
               "multiply 'weight' by it for spin-sensitive distributions",
               since="1.2.0", fill=1.0),
    ]
    # Vertices (1.3.0, issue #16): laboratory frame, mm; NaN where unknown.
    nan = float("nan")
    for c in ("x", "y", "z"):
        cols.append(Column(f"pv_{c}", f64, "mm", "truth",
                           f"primary (hard-scatter) vertex, {c}: the generator's collision "
                           "point including the beam spot", True, since="1.3.0", fill=nan,
                           optional=True))
    for leg, name in _LEGS.items():
        for c in ("x", "y", "z"):
            cols.append(Column(f"tau_dv_{c}_{leg}", f64, "mm", "truth",
                               f"decay vertex of the {name} (the production vertex of its "
                               f"decay products), {c}; NaN without such a tau", True,
                               since="1.3.0", fill=nan, optional=True))
    lf32, li32, li8 = pa.list_(pa.float32()), pa.list_(pa.int32()), pa.list_(pa.int8())
    cols += [
        Column("fs_px", lf32, "GeV", "particles", "visible final-state particles: px"),
        Column("fs_py", lf32, "GeV", "particles", "visible final-state particles: py"),
        Column("fs_pz", lf32, "GeV", "particles", "visible final-state particles: pz"),
        Column("fs_e", lf32, "GeV", "particles", "visible final-state particles: energy"),
        Column("fs_pid", li32, "", "particles", "visible final-state particles: PDG id"),
        Column("fs_tau", li8, "", "particles",
               "visible final-state particles: +1/-1 if from the tau+/tau- decay, else 0"),
    ]
    for c in ("x", "y", "z"):
        cols.append(Column(f"fs_v{c}", lf32, "mm", "particles",
                           f"visible final-state particles: production vertex minus the "
                           f"primary vertex (pv_{c}), {c}, to 0.1 um (0 for particles made at "
                           "the primary vertex; NaN where unknown)", since="1.3.0", fill=nan,
                           optional=True, fill_like="fs_px"))
    # Reco group: filled by the detector/selection stage. NaN marks an absent object.
    cols += _vec("reco_chg", "measured charged track / lepton", "reco", nan_allowed=True)
    cols += _vec("reco_neu", "measured neutral (pi0/photon) cluster sum", "reco", nan_allowed=True)
    for leg, name in _LEGS.items():
        cols += [
            Column(f"reco_mode_{leg}", pa.string(), "", "reco",
                   f"reconstructed decay mode of the {name} leg", allowed=DECAY_MODES),
            Column(f"reco_charge_{leg}", i8, "", "reco", f"measured charge of the {name} leg"),
            Column(f"reco_n_neu_{leg}", i8, "", "reco", f"neutral clusters of the {name} leg"),
            Column(f"reco_origin_{leg}", i8, "", "reco",
                   f"what the {name} leg object is: 0 real tau product, 1 jet, 2 electron, "
                   "3 muon faking a tau_had"),
        ]
    # Track impact parameters (1.3.0, issue #16), ATLAS perigee convention w.r.t. the primary
    # vertex: d0 = signed transverse distance of closest approach (positive when the point of
    # closest approach lies at azimuth phi + 90 deg of the track direction phi), z0 = z of
    # that point minus the vertex z. NaN: no leg, or no impact parameter known.
    for leg, name in _LEGS.items():
        for q, what in (("d0", "transverse impact parameter d0"),
                        ("z0", "longitudinal impact parameter z0")):
            obj = (f"of the {name} leg's charged track (the lepton's, or the tau_had's "
                   "leading track) w.r.t. the primary vertex")
            cols.append(Column(f"reco_{q}_{leg}", f64, "mm", "reco", f"{what} {obj}", True,
                               since="1.3.0", fill=nan, optional=True))
            cols.append(Column(f"reco_{q}_err_{leg}", f64, "mm", "reco",
                               f"uncertainty (resolution) of reco_{q}_{leg}", True,
                               since="1.3.0", fill=nan, optional=True))
    for j in (1, 2, 3):
        for c in _XYZE:
            cols.append(Column(f"jet{j}_{c}", f64, "GeV", "reco",
                               f"jet {j} (pT-ordered, NaN if absent), {c}", nan_allowed=True))
    cols += [
        Column("n_jets", i8, "", "reco", "number of selected jets (all, not only the 3 stored)"),
        Column("met_x", f64, "GeV", "reco", "missing transverse momentum, x"),
        Column("met_y", f64, "GeV", "reco", "missing transverse momentum, y"),
        Column("met_sumet", f64, "GeV", "reco", "scalar sum of transverse energy"),
        Column("met_cov_xx", f64, "GeV^2", "reco", "MET covariance, xx"),
        Column("met_cov_xy", f64, "GeV^2", "reco", "MET covariance, xy"),
        Column("met_cov_yy", f64, "GeV^2", "reco", "MET covariance, yy"),
        Column("trig_ditau", pa.bool_(), "", "reco", "di-tau trigger fired"),
        Column("trig_etau", pa.bool_(), "", "reco", "e+tau trigger fired"),
        Column("trig_mutau", pa.bool_(), "", "reco", "mu+tau trigger fired"),
        Column("trig_single_e", pa.bool_(), "", "reco", "single-electron trigger fired"),
        Column("trig_single_mu", pa.bool_(), "", "reco", "single-muon trigger fired"),
        Column("reco_channel", pa.string(), "", "reco", "reconstructed channel", allowed=CHANNELS),
        Column("in_sr", pa.bool_(), "", "reco", "event passes the signal-region selection"),
        Column("reco_weight", f64, "", "reco",
               "detector-level weight factor: product of the fake rates of fake tau_had legs, "
               "else 1 (expected events per fb^-1 = weight x reco_weight)"),
    ]
    # Method group: the reconstruction-output table of a method (collinear, MMC, FastMTT, ML),
    # one row per event (and per candidate for sampling methods), keyed by event_id.
    cols += [
        Column("method", pa.string(), "", "method", "reconstruction method name"),
        Column("candidate", pa.int16(), "", "method",
               "candidate index (0 for methods with one answer per event)"),
    ]
    cols += _vec("rec_tau", "reconstructed tau four-momentum", "method", True)
    for leg, name in _LEGS.items():
        for c in _XYZE[:3]:
            cols.append(Column(f"rec_nu_{c}_{leg}", f64, "GeV", "method",
                               f"reconstructed invisible momentum of the {name} leg, {c}",
                               True))
    cols += [
        Column("rec_m_tautau", f64, "GeV", "method", "reconstructed di-tau mass", True),
        Column("rec_status", pa.string(), "", "method",
               "ok, no_solution (the method found none) or failed (bad input)",
               allowed=RECO_STATUS),
        Column("rec_reason", pa.string(), "", "method",
               "why the status is not ok (empty if ok)"),
    ]
    return cols


#: Status values of a reconstruction-output row.
RECO_STATUS: Final[tuple[str, ...]] = ("ok", "no_solution", "failed")

COLUMNS: Final[tuple[Column, ...]] = tuple(_build_columns())
BY_NAME: Final[dict[str, Column]] = {c.name: c for c in COLUMNS}
GROUPS: Final[tuple[str, ...]] = ("id", "truth", "particles", "reco", "method")


def version_tuple(version: str) -> tuple[int, ...]:
    """``"1.2.0"`` -> ``(1, 2, 0)``; raises :class:`SchemaError` for anything else."""
    try:
        return tuple(int(x) for x in str(version).split("."))
    except ValueError as err:
        raise SchemaError(f"schema version {version!r} is not MAJOR.MINOR.PATCH") from err


def group_columns(*groups: str, version: str | None = None) -> list[Column]:
    """Columns of the given groups, in schema order; with ``version``, only those that
    existed in that schema version (``Column.since`` <= version)."""
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown column group(s) {sorted(unknown)}; groups are {GROUPS}")
    v = version_tuple(version) if version is not None else None
    return [c for c in COLUMNS if c.group in groups
            and (v is None or version_tuple(c.since) <= v)]


def required_columns(*groups: str, version: str | None = None) -> list[Column]:
    """The columns of :func:`group_columns` a file must have: all but the optional ones
    (``Column.optional``)."""
    return [c for c in group_columns(*groups, version=version) if not c.optional]


def added_after(version: str) -> list[Column]:
    """Columns introduced after schema ``version`` (absent from files of that version)."""
    v = version_tuple(version)
    return [c for c in COLUMNS if version_tuple(c.since) > v]


def upgrade(table: pa.Table, version: str) -> pa.Table:
    """``table`` (read from a file of schema ``version``) with the columns introduced since
    then appended with their fill values (``Column.fill``), for every group the table has
    other columns of; a table of the current version is returned unchanged."""
    if version_tuple(version) >= version_tuple(SCHEMA_VERSION):
        return table
    names = set(table.column_names)
    have = {BY_NAME[n].group for n in names if n in BY_NAME}
    for col in added_after(version):
        if (col.name in names or col.group not in have or col.fill is None
                or (col.fill_like is not None and col.fill_like not in names)):
            continue
        table = _append_filled(table, col)
    return table


def complete(table: pa.Table) -> pa.Table:
    """``table`` with the optional columns (``Column.optional``) it lacks appended with their
    fill values, for every group the table has other columns of (a list column only when the
    column its lengths follow, ``Column.fill_like``, is there)."""
    names = set(table.column_names)
    have = {BY_NAME[n].group for n in names if n in BY_NAME}
    for col in COLUMNS:
        if (col.optional and col.name not in names and col.group in have
                and col.fill is not None and (col.fill_like is None or col.fill_like in names)):
            table = _append_filled(table, col)
    return table


def _filled(col: Column, n: int, like: pa.ChunkedArray | pa.Array | None = None) -> pa.Array:
    """``n`` rows of the fill value of ``col``; a list column takes its list lengths from
    ``like`` (the ``Column.fill_like`` column: every element filled)."""
    if not pa.types.is_list(col.dtype):
        return pa.array(np.full(n, col.fill), type=col.dtype)
    if like is None:
        raise SchemaError(f"column '{col.name}': its fill needs the column '{col.fill_like}'")
    arr = like.combine_chunks() if isinstance(like, pa.ChunkedArray) else like
    offsets = np.asarray(arr.offsets, dtype=np.int32)
    values = pa.array(np.full(int(offsets[-1] - offsets[0]), col.fill),
                      type=col.dtype.value_type)
    return pa.ListArray.from_arrays(pa.array(offsets - offsets[0], pa.int32()), values)


def _append_filled(table: pa.Table, col: Column,
                   like: pa.ChunkedArray | pa.Array | None = None) -> pa.Table:
    """``table`` with the column ``col`` appended, its fill value (``Column.fill``) in every
    row (a list column: in every element, lists as long as those of ``Column.fill_like``,
    taken from ``like`` or else from the table)."""
    if like is None and col.fill_like is not None and col.fill_like in table.column_names:
        like = table.column(col.fill_like)
    return table.append_column(pa.field(col.name, col.dtype, nullable=False),
                               _filled(col, table.num_rows, like))


def upgraded_schema(schema: pa.Schema, version: str) -> pa.Schema:
    """The Arrow schema of :func:`upgrade` applied to a table of ``schema``."""
    return upgrade(schema.empty_table(), version).schema


def arrow_schema(*groups: str) -> pa.Schema:
    """The Arrow schema of the given groups (field order = schema order)."""
    return pa.schema([pa.field(c.name, c.dtype, nullable=False) for c in group_columns(*groups)])


@dataclass(frozen=True)
class FileKind:
    """A kind of ditau file: the column groups it must have and those it may have.

    An optional group is all or nothing: a file with some of its columns must have all of
    them (a truth group without ``m_hat`` is an error, a file without truth is not).
    """

    name: str
    doc: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    #: Columns required beyond the groups (``event_id`` of a reconstruction output).
    extra: tuple[str, ...] = ()

    def required_columns(self, version: str | None = None) -> list[str]:
        """Names of the columns every file of this kind (of schema ``version``, default the
        current one) has, in schema order."""
        return [*self.extra,
                *(c.name for c in required_columns(*self.required, version=version))]


#: The kinds of ditau files, by name (``kind=`` of :func:`read_events` and
#: :func:`validate_file`).
FILE_KINDS: Final[dict[str, FileKind]] = {k.name: k for k in (
    FileKind("generated", "generated events ('ditau generate')", ("id", "truth"),
             ("particles",)),
    FileKind("detector", "detector-level events ('ditau detector', 'ditau import-delphes')",
             ("id", "reco"), ("truth", "particles")),
    FileKind("recon", "reconstruction output ('ditau reconstruct')", ("method",), (),
             ("event_id",)),
)}

#: Stages whose output is detector-level / reconstruction output (metadata ``stage``).
_DETECTOR_STAGES: Final[frozenset[str]] = frozenset({"detector", "import-delphes"})


def file_kind(names: Iterable[str], metadata: dict[str, Any] | None = None) -> str:
    """The kind of a file (a key of :data:`FILE_KINDS`) from its column ``names`` and its
    ``ditau`` metadata: the producing stage where recorded (a merged file: the stage of its
    sources), else the columns (``rec_status``: reconstruction output, ``reco_channel``:
    detector level, else generated)."""
    meta = metadata or {}
    stage = meta.get("merged_stage") if meta.get("stage") == "merge" else meta.get("stage")
    cols = set(names)
    if stage == "reconstruct" or "rec_status" in cols:
        return "recon"
    if stage in _DETECTOR_STAGES or "reco_channel" in cols:
        return "detector"
    return "generated"


def check_columns(schema: pa.Schema, kind: str | None = None, source: str = "file",
                  require: Sequence[str] = (), version: str | None = None) -> None:
    """Check a file's Arrow ``schema`` (no data read): every schema column it has has its
    schema dtype; with ``kind``, every required column of that kind is there and the optional
    groups it has are complete; every column of the groups in ``require`` is there.
    ``version``: the file's schema version (default: the current one); columns introduced
    after it are not required, nor are optional columns (``Column.optional``).

    Raises :class:`SchemaError` naming ``source``, the kind and the column(s).
    """
    names = set(schema.names)
    for field_ in schema:
        col = BY_NAME.get(field_.name)
        if col is not None and not field_.type.equals(col.dtype):
            raise SchemaError(f"{source}: column '{field_.name}' has dtype {field_.type}, "
                              f"schema {SCHEMA_VERSION} requires {col.dtype}")
    if kind is not None:
        if kind not in FILE_KINDS:
            raise ValueError(f"unknown file kind {kind!r}; kinds are {list(FILE_KINDS)}")
        k = FILE_KINDS[kind]
        _require_present(names, k.required_columns(version), source, f"a {k.doc} file")
        for group in k.optional:
            cols = [c.name for c in required_columns(group, version=version)]
            if names & set(cols):
                _require_present(names, cols, source,
                                 f"the '{group}' group of a {k.doc} file (it has part of it)")
    _require_present(names, [c.name for c in required_columns(*require, version=version)],
                     source, f"groups {list(require)} (schema {version or SCHEMA_VERSION})")


def _require_present(names: set[str], needed: Sequence[str], source: str, what: str) -> None:
    missing = [c for c in needed if c not in names]
    if missing:
        shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise SchemaError(f"{source}: missing required column(s) {shown} "
                          f"({len(missing)} missing, {what})")


# --------------------------------------------------------------------------------------------
# Validation


def validate(table: pa.Table, require: Sequence[str] = ("id",), source: str = "table") -> None:
    """Check ``table`` against the schema.

    Every column of the groups in ``require`` must be present (optional ones may be absent,
    ``Column.optional``); every present schema column must have its dtype; floats outside
    ``nan_allowed`` columns must be finite-or-inf, never NaN; label columns must hold known
    labels; no schema column may contain nulls. Columns not in the schema are allowed
    (downstream extensions) and left alone.

    Raises :class:`SchemaError` naming ``source`` and the column.
    """
    _require_present(set(table.column_names), [c.name for c in required_columns(*require)],
                     source, f"groups {list(require)}")
    for name in table.column_names:
        col = BY_NAME.get(name)
        if col is None:
            continue
        arr = table.column(name)
        if not arr.type.equals(col.dtype):
            raise SchemaError(f"{source}: column '{name}' has dtype {arr.type}, "
                              f"schema {SCHEMA_VERSION} requires {col.dtype}")
        if arr.null_count:
            raise SchemaError(f"{source}: column '{name}' has {arr.null_count} null value(s)")
        if pa.types.is_floating(col.dtype) and not col.nan_allowed:
            nan = pc.sum(pc.is_nan(arr).cast(pa.int64())).as_py() or 0
            if nan:
                first = int(np.flatnonzero(np.isnan(arr.to_numpy()))[0])
                raise SchemaError(f"{source}: column '{name}' has {nan} NaN value(s) "
                                  f"(first at row {first}); NaN is not allowed there")
        if col.allowed is not None:
            bad = pc.invert(pc.is_in(arr, value_set=pa.array(col.allowed)))
            nbad = pc.sum(bad.cast(pa.int64())).as_py() or 0
            if nbad:
                values = sorted(set(pc.filter(arr, bad).to_pylist()))[:5]
                raise SchemaError(f"{source}: column '{name}' has unknown label(s) {values}; "
                                  f"allowed: {list(col.allowed)}")


def conform(table: pa.Table) -> pa.Table:
    """Cast schema columns to their schema dtypes where the cast is lossless, keep others."""
    out = table
    for i, name in enumerate(table.column_names):
        col = BY_NAME.get(name)
        if col is not None and not table.column(i).type.equals(col.dtype):
            out = out.set_column(i, pa.field(name, col.dtype, nullable=False),
                                 table.column(i).cast(col.dtype, safe=True))
    return out


# --------------------------------------------------------------------------------------------
# Files


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Fail early, with a clear message, if ``path`` cannot be written."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise SchemaError(f"output path {p} is a directory, expected a file name")
    if p.exists() and not p.is_file():
        raise SchemaError(f"output path {p} exists and is not a regular file (a device or "
                          "pipe?): give a file name")
    if not parent.is_dir():
        raise SchemaError(f"cannot write {p}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise SchemaError(f"cannot write {p}: directory {parent} is not writable")
    return p


def check_not_input(out: str | os.PathLike[str],
                    inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
                    prefix: str = "") -> None:
    """SchemaError if the output ``out`` is the input (one path) or one of the ``inputs`` (resolved
    paths, so links and relative paths count, or the same file by inode): writing it would
    destroy an input. ``prefix``: the message's start (e.g. ``"merge: "``)."""
    one = isinstance(inputs, str | os.PathLike)
    ins = [Path(inputs)] if one else [Path(p) for p in inputs]  # type: ignore[union-attr]
    target = Path(out)
    for p in ins:
        if p.resolve() == target.resolve() or (
                p.exists() and target.exists() and os.path.samefile(p, target)):
            what = "the input file" if one else f"also an input ({p})"
            raise SchemaError(f"{prefix}output {out} is {what}: give another name")


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    target = check_writable(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file 0600: give the output the usual permissions (0666 & ~umask)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class EventIdDigest:
    """A running checksum of an ``event_id`` column: SHA-256 of its int64 little-endian bytes
    in row order (chunking does not change it). :meth:`value` is what files record under
    ``event_ids``: ``{"n": rows, "sha256": first 16 hex digits}``."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.n = 0

    def update(self, ids: Any) -> None:
        """Add the event ids ``ids`` (any int array or Arrow column, shape (n,))."""
        if isinstance(ids, pa.ChunkedArray | pa.Array):
            ids = ids.to_numpy()
        arr = np.ascontiguousarray(np.asarray(ids, dtype="<i8"))
        self._h.update(arr.tobytes())
        self.n += len(arr)

    def value(self) -> dict[str, Any]:
        """``{"n": rows, "sha256": ...}``."""
        return {"n": self.n, "sha256": self._h.hexdigest()[:16]}


class EventWriter:
    """Stream validated event tables into one Parquet file, atomically.

    Use as a context manager; metadata passed to :meth:`close` (e.g. a combined cross section
    known only at the end) is merged into the file's ``ditau`` metadata. The writer records
    the checksum of the ``event_id`` column it wrote (:class:`EventIdDigest`) under
    ``event_ids``.
    """

    def __init__(self, path: str | os.PathLike[str], schema: pa.Schema,
                 metadata: dict[str, Any], require: Sequence[str] = ("id",)) -> None:
        self.path = Path(path)
        self._require = tuple(require)
        self._metadata = dict(metadata)
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        # The ditau metadata goes into the footer at close only: a copy in the serialised Arrow
        # schema would shadow values (e.g. the cross section) known only at the end.
        self._schema = schema.remove_metadata()
        try:
            self._writer = pq.ParquetWriter(self._tmp, self._schema, compression="zstd")
        except BaseException as err:  # no writer: remove the temporary file before going on
            self._ctx.__exit__(type(err), err, err.__traceback__)
            raise
        self._ids = EventIdDigest() if "event_id" in self._schema.names else None
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        table = conform(table)
        validate(table, self._require, source=f"{self.path} (rows {self.rows}+)")
        self._writer.write_table(table.select(self._schema.names).cast(self._schema))
        if self._ids is not None:
            self._ids.update(table.column("event_id"))
        self.rows += table.num_rows

    def close(self, metadata: dict[str, Any] | None = None) -> None:
        if self._ids is not None:
            self._metadata["event_ids"] = self._ids.value()
        self._metadata.update(metadata or {})
        meta = {"schema_version": SCHEMA_VERSION, **self._metadata}
        self._writer.add_key_value_metadata(
            {METADATA_KEY: json.dumps(meta, sort_keys=True).encode()})
        self._writer.close()
        self._ctx.__exit__(None, None, None)

    def abort(self) -> None:
        self._writer.close()
        try:
            self._ctx.__exit__(SchemaError, SchemaError("aborted"), None)
        except SchemaError:
            pass

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_events(table: pa.Table, path: str | os.PathLike[str], metadata: dict[str, Any],
                 require: Sequence[str] = ("id",)) -> Path:
    """Validate ``table`` and write it atomically with ``metadata``."""
    table = conform(table)
    with EventWriter(path, table.schema, metadata, require) as w:
        w.write(table)
    return Path(path)


def _open(path: str | os.PathLike[str]) -> pq.ParquetFile:
    p = Path(path)
    if not p.is_file():
        raise SchemaError(f"{p}: no such file")
    try:
        return pq.ParquetFile(p)
    except (pa.ArrowInvalid, OSError) as err:
        raise SchemaError(f"{p}: not a readable Parquet file (truncated or corrupt?): "
                          f"{err}") from err


def _metadata(pf: pq.ParquetFile, path: str | os.PathLike[str]) -> dict[str, Any]:
    # Footer key-value metadata (pyarrow: ParquetFile(path).metadata.metadata).
    meta = pf.metadata.metadata or {}
    if METADATA_KEY not in meta:
        raise SchemaError(f"{path}: no ditau metadata; not written by ditau")
    out: dict[str, Any] = json.loads(meta[METADATA_KEY])
    version = str(out.get("schema_version", "0"))
    major = version.split(".")[0]
    if major != SCHEMA_VERSION.split(".")[0]:
        raise SchemaError(f"{path}: schema version {out.get('schema_version')} is incompatible "
                          f"with this ditau (schema {SCHEMA_VERSION})")
    try:
        version_tuple(version)
    except SchemaError as err:
        raise SchemaError(f"{path}: {err}") from err
    return out


def file_version(metadata: dict[str, Any]) -> str:
    """The schema version recorded in a file's ``ditau`` metadata."""
    return str(metadata.get("schema_version", SCHEMA_VERSION))


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``ditau`` metadata of a file (schema version, stage configuration, cross section)."""
    return _metadata(_open(path), path)


def read_events(path: str | os.PathLike[str], columns: Iterable[str] | None = None,
                require: Sequence[str] | None = None, kind: str | None = None) -> pa.Table:
    """Read and validate an event file (optionally only some ``columns``).

    ``kind`` (a key of :data:`FILE_KINDS`: ``generated``, ``detector``, ``recon``): the file
    must have every required column of that kind (:func:`check_columns`). ``require``: groups
    that must be there (default ``("id",)`` without ``kind``, none with it). Every schema
    column of the file must have its dtype, whether read or not, so asking for a subset of
    columns does not hide a malformed file; the columns read are validated in full
    (:func:`validate`). A file of an older minor version is read with the columns added since
    (requested ones, or all of its groups' without ``columns``) filled in (:func:`upgrade`),
    and so is a file without optional columns (:func:`complete`).
    Raises :class:`SchemaError` naming the file and the column.
    """
    pf = _open(path)
    version = file_version(_metadata(pf, path))
    groups = tuple(require) if require is not None else (() if kind else ("id",))
    check_columns(pf.schema_arrow, kind, source=str(path), require=groups, version=version)
    names = set(pf.schema_arrow.names)
    cols = list(columns) if columns is not None else None
    later = {c.name for c in added_after(version)} | {
        c.name for c in COLUMNS if c.optional and c.fill is not None}
    if cols is not None:
        absent = [c for c in cols if c not in names and c not in later]
        if absent:
            raise SchemaError(f"{path}: requested column(s) {absent} not in file")
    try:
        table = pf.read(columns=[c for c in cols if c in names] if cols is not None else None)
    except (pa.ArrowInvalid, OSError) as err:
        raise SchemaError(f"{path}: cannot read data (truncated or corrupt?): {err}") from err
    validate(table, require=(), source=str(path))
    if later - names:
        if cols is None:
            table = complete(upgrade(table, version))
        else:  # the requested columns the file lacks (each in ``later``, checked above)
            for c in cols:
                if c not in table.column_names:
                    col = BY_NAME[c]
                    like = None
                    if col.fill_like is not None and col.fill_like not in table.column_names:
                        if col.fill_like not in names:
                            raise SchemaError(f"{path}: column '{c}' is not in the file and "
                                              f"its fill needs '{col.fill_like}', which is "
                                              "not either")
                        like = pf.read(columns=[col.fill_like]).column(0)
                    table = _append_filled(table, col, like)
            table = table.select(cols)
    return table


def validate_file(path: str | os.PathLike[str], kind: str | None = None,
                  batch_rows: int = 20_000) -> tuple[str, dict[str, Any]]:
    """Validate the whole file ``path`` as a file of ``kind`` (default: its own kind,
    :func:`file_kind`): footer metadata and schema version, the kind's required columns,
    every schema column's dtype, then every row in batches of ``batch_rows`` (NaN, nulls,
    unknown labels; memory bounded by the batch). Returns ``(kind, metadata)``.

    Raises :class:`SchemaError` naming the file, the kind and the column.
    """
    pf = _open(path)
    meta = _metadata(pf, path)
    kind = kind or file_kind(pf.schema_arrow.names, meta)
    check_columns(pf.schema_arrow, kind, source=str(path), version=file_version(meta))
    first = 0
    try:
        for batch in pf.iter_batches(batch_size=batch_rows):
            validate(pa.Table.from_batches([batch]), require=(),
                     source=f"{path} (rows {first}+)")
            first += batch.num_rows
    except (pa.ArrowInvalid, OSError) as err:
        raise SchemaError(f"{path}: cannot read data (truncated or corrupt?): {err}") from err
    return kind, meta


def event_id_digest(path: str | os.PathLike[str], column: str = "event_id",
                    batch_rows: int = 200_000) -> dict[str, Any] | None:
    """``{"n", "sha256"}`` of the ``column`` of a Parquet file (:class:`EventIdDigest`),
    computed from the data (for files that do not record ``event_ids``); None if the file
    has no such column."""
    pf = _open(path)
    if column not in pf.schema_arrow.names:
        return None
    digest = EventIdDigest()
    for batch in pf.iter_batches(batch_size=batch_rows, columns=[column]):
        digest.update(batch.column(0))
    return digest.value()


def column_array(table: Any, name: str) -> NDArray[Any]:
    """Column ``name`` of a pyarrow table, pandas frame or mapping of arrays, as numpy."""
    x = table[name]
    if isinstance(x, pa.ChunkedArray | pa.Array):
        return np.asarray(x.to_numpy(zero_copy_only=False))
    if hasattr(x, "to_numpy"):  # pandas
        return np.asarray(x.to_numpy())
    return np.asarray(x)


def column_names(table: Any) -> list[str]:
    """Column names of a pyarrow table, pandas frame or mapping of arrays."""
    if hasattr(table, "column_names"):
        return list(table.column_names)
    if hasattr(table, "columns"):
        return [str(c) for c in table.columns]
    return list(table)


def spin_weights(table: Any) -> NDArray[np.float64]:
    """Each event's ``spin_weight``: 1 for Pythia's exact correlated decays, the weight to the
    Standard-Model state for samples generated with ``--spin weights`` (unpolarised decays;
    :func:`ditau.spin.truth_weights`); ones for a table without the column."""
    if "spin_weight" not in column_names(table):
        return np.ones(len(column_array(table, column_names(table)[0])))
    return np.asarray(column_array(table, "spin_weight"), float)


def event_weights(table: Any) -> NDArray[np.float64]:
    """Events per fb^-1 of each event of a detector-level table: ``weight`` x ``reco_weight``
    (fake rates) x ``spin_weight`` (:func:`spin_weights`), so weighted distributions are the
    physical ones whatever the spin mode of generation."""
    return np.asarray(column_array(table, "weight"), float) \
        * np.asarray(column_array(table, "reco_weight"), float) * spin_weights(table)


def describe(groups: Sequence[str] = GROUPS) -> str:
    """A Markdown table of the schema (``ditau schema``)."""
    lines = [f"ditau event schema {SCHEMA_VERSION}", "",
             "| column | dtype | unit | group | NaN | description |", "|---|---|---|---|---|---|"]
    for c in group_columns(*groups):
        lines.append(f"| {c.name} | {c.dtype} | {c.unit} | {c.group} | "
                     f"{'yes' if c.nan_allowed else 'no'} | {c.doc}"
                     f"{' (optional; since ' + c.since + ')' if c.optional else ''} |")
    return "\n".join(lines)
