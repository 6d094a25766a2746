"""The ``reconstruct`` stage: run one registered method over an event file, in chunks.

Reads the input file in chunks of the columns the method needs, runs the method on each chunk
(:func:`ditau.stage.run_chunked`: this process, local processes, or a Dask cluster) and writes
one method-output file with the rows in input order, so the output does not depend on the chunk
size, the number of workers or the back-end. The input may be a ditau event file or any Parquet
file (or ROOT TTree) that has the input columns, with ``column_map`` renaming the user's
columns to the schema's names.

ROOT input: a TTree or an RNTuple (``tree`` names it when the file holds several). Its
branches are checked like Parquet columns (numeric types, unique ``event_id``);
``reco_mode_p``/``reco_mode_m`` must hold the decay-mode labels (``pi``, ``rho``, ``e``,
``mu``, ``other``) as strings: integer decay-mode codes are refused with an error naming
the branch, not guessed, since the conventions disagree (CMS HPS 0/1/10/11, ATLAS PanTau
0-4, leptons in neither). uproot writes strings to an RNTuple (its default,
``f["events"] = {...}``), not to a TTree.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ditau.config import StageConfig
from ditau.inputs import INPUT_COLUMNS
from ditau.provenance import INPUT, RUN_ID, identity, input_key, run_id
from ditau.reconstruct.method import Batch, Method, make_method
from ditau.reconstruct.output import recon_schema
from ditau.schema import (
    BY_NAME,
    RECO_STATUS,
    SchemaError,
    check_not_input,
    check_writable,
    read_metadata,
)
from ditau.stage import read_chunks, run_chunked


@dataclass
class ReconstructSummary:
    """What :func:`reconstruct` did."""

    path: Path
    method: str
    events: int
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)
    #: What a user should know about the run (the default model chosen, events left out for
    #: a missing input the model needs), one line each.
    notes: list[str] = field(default_factory=list)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")


def run_on_table(method: str | Method, table: pa.Table,
                 settings: StageConfig | Mapping[str, Any] | None = None,
                 source: str = "table") -> pa.Table:
    """The method-output table of ``method`` (a name, with ``settings``, or a built
    :class:`~ditau.reconstruct.method.Method`) run in this process on the event table
    ``table`` (INPUT_COLUMNS plus the method's columns)."""
    m = make_method(method, settings) if isinstance(method, str) else method
    if table.num_rows == 0:
        return recon_schema().empty_table()
    return m(Batch.from_table(table, source=source))


def _chunk(table: pa.Table, method: Method, only_sr: bool, source: str) -> pa.Table:
    if only_sr:
        table = table.filter(table["in_sr"]).drop_columns(["in_sr"])
    return run_on_table(method, table, source=source)


#: ROOT classes read as event tables: TTree (and its ntuple subclasses) and RNTuple.
TREE_CLASSES: tuple[str, ...] = ("TTree", "TNtuple", "TNtupleD", "ROOT::RNTuple")


def _root_trees(inp: Path, f: Any) -> dict[str, str]:
    """Name -> class of the trees (TTree or RNTuple) at the top of the open ROOT file ``f``."""
    try:
        classes = f.classnames(recursive=False)
    except Exception as err:  # uproot raises many kinds on damaged directories
        raise SchemaError(f"{inp}: cannot list the ROOT file's objects "
                          f"({type(err).__name__}: {err})") from err
    return {k.split(";")[0]: c for k, c in classes.items() if c in TREE_CLASSES}


def _open_root(inp: Path) -> Any:
    import uproot

    try:
        return uproot.open(inp)
    except Exception as err:  # OSError, ValueError, deserialisation errors
        raise SchemaError(f"{inp}: not a readable ROOT file (truncated or corrupt?): "
                          f"{type(err).__name__}: {err}") from err


def _root_tree(inp: Path, f: Any, tree: str | None) -> tuple[str, Any]:
    """The name and the object of the input tree (``--tree``, or the file's only one)."""
    import uproot

    trees = _root_trees(inp, f)
    listed = ", ".join(f"{k} ({c})" for k, c in trees.items()) or "none"
    if tree is None:
        if len(trees) != 1:
            raise SchemaError(f"{inp}: {len(trees)} trees (TTree or RNTuple): {listed}; "
                              "name one with --tree")
        tree = next(iter(trees))
    elif tree not in trees:
        raise SchemaError(f"--tree {tree}: no such TTree or RNTuple in {inp}; it has: "
                          f"{listed}")
    try:
        obj = f[tree]
    except Exception as err:
        if trees[tree] == "ROOT::RNTuple":
            raise SchemaError(f"{inp}: {tree} is an RNTuple, which uproot {uproot.__version__} "
                              f"cannot read ({type(err).__name__}: {err}); upgrade uproot or "
                              "write a TTree") from err
        raise SchemaError(f"{inp}: cannot read the tree {tree} ({type(err).__name__}: "
                          f"{err})") from err
    return tree, obj


def _input_names(inp: Path, tree: str | None) -> tuple[list[str], int, dict[str, Any]]:
    """Column names, row count and ditau metadata ({} for a foreign file) of the input."""
    if inp.suffix == ".root":
        with _open_root(inp) as f:
            name, t = _root_tree(inp, f, tree)
            return list(t.keys()), int(t.num_entries), {"tree": name}
    try:
        meta = read_metadata(inp)
    except SchemaError as err:
        if "no ditau metadata" not in str(err):
            raise
        meta = {}
    pf = pq.ParquetFile(inp)
    return pf.schema_arrow.names, pf.metadata.num_rows, meta


def _default_ml_model(inp: Path, names: list[str], column_map: Mapping[str, str] | None,
                      tree: str | None) -> str:
    """:func:`ditau.ml.shipped.default_model` of the input: it has the impact parameters if it
    has every IP column and a finite d0 in its first row group (Parquet) or first 10 000
    entries (ROOT)."""
    from ditau.ml.features import IP_COLUMNS, has_impact_parameters
    from ditau.ml.shipped import default_model

    cmap = dict(column_map or {})
    file_cols = [cmap.get(c, c) for c in IP_COLUMNS]
    if not set(file_cols) <= set(names):
        return default_model(False)
    if inp.suffix == ".root":
        with _open_root(inp) as f:
            name, _ = _root_tree(inp, f, tree)
        first = _root_read(inp, name, file_cols, 10_000)
    else:
        pf = pq.ParquetFile(inp)
        first = pf.read_row_group(0, columns=file_cols) if pf.num_row_groups else None
    if first is None:
        return default_model(False)
    first = first.rename_columns(list(IP_COLUMNS))
    return default_model(has_impact_parameters(first))


def _root_read(inp: Path, tree: str, cols: list[str], entry_stop: int | None) -> pa.Table:
    """The branches ``cols`` of ``tree`` (entries up to ``entry_stop``) as an Arrow table."""
    import awkward as ak

    with _open_root(inp) as f:
        _, t = _root_tree(inp, f, tree)
        try:
            arrays = t.arrays(cols, entry_stop=entry_stop, library="ak")
            return ak.to_arrow_table(arrays, extensionarray=False)
        except Exception as err:  # uproot cannot interpret a branch
            raise SchemaError(f"{inp}: cannot read the branches {cols[:4]} of {tree} "
                              f"({type(err).__name__}: {err})") from err


def _check_inputs(inp: Path, file_cols: list[str], needed: list[str],
                  tree: str | None = None) -> None:
    """The input columns (ROOT: the branches of ``tree``) have numeric types the methods can
    read (the schema's dtype for a ditau file; any number for a foreign one), the decay
    modes are strings, and the event ids are unique (SchemaError naming the file, the
    column and what is wrong)."""
    id_col = file_cols[needed.index("event_id")]
    if tree is not None:  # the types of the branches, from their first entry
        schema, what = _root_read(inp, tree, file_cols, 1).schema, f"branch {tree}/"
    else:
        schema, what = pq.ParquetFile(inp).schema_arrow, "column "
    for fc, name in zip(file_cols, needed, strict=True):
        t = schema.field(fc).type
        want = BY_NAME[name].dtype if name in BY_NAME else None
        numeric = pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_boolean(t)
        if pa.types.is_string(want) or pa.types.is_large_string(want):
            ok = pa.types.is_string(t) or pa.types.is_large_string(t)
        else:
            ok = numeric
        if ok:
            continue
        if name.startswith("reco_mode_") and numeric:
            raise SchemaError(f"{inp}: {what}{fc} holds numbers ({t}); {name} must be the "
                              "decay-mode label as a string (pi, rho, e, mu, other): integer "
                              "decay-mode codes are not guessed (conventions differ); store "
                              "the labels as strings (a std::string branch, uproot's RNTuple "
                              "writer, or Parquet)")
        raise SchemaError(f"{inp}: {what}{fc} has type {t}, the reconstruction needs "
                          f"{want or 'a number'} for {name}")
    ids_table = (_root_read(inp, tree, [id_col], None) if tree is not None
                 else pq.read_table(inp, columns=[id_col]))
    ids = ids_table.column(0).to_numpy(zero_copy_only=False)
    uniq, counts = np.unique(ids, return_counts=True)
    if np.any(counts > 1):
        raise SchemaError(f"{inp}: event_id not unique ({int(np.sum(counts > 1))} repeated, "
                          f"e.g. {int(uniq[counts > 1][0])})")


def _root_chunks(inp: Path, tree: str, columns: list[str], chunk: int) -> Iterator[pa.Table]:
    import awkward as ak
    import uproot

    with uproot.open(inp) as f:
        for arrays in f[tree].iterate(columns, step_size=chunk, library="ak"):
            yield ak.to_arrow_table(arrays, extensionarray=False)


def _renamed(chunks: Iterator[pa.Table], rename: dict[str, str]) -> Iterator[pa.Table]:
    for t in chunks:
        yield t.rename_columns([rename.get(c, c) for c in t.column_names])


def reconstruct(inp_path: str | Path, out_path: str | Path, method: str, *,
                chunk: int = 20000, workers: int = 1, only_sr: bool = False,
                progress: bool = True, scheduler: str | Any | None = None,
                column_map: Mapping[str, str] | None = None, tree: str | None = None,
                **settings: Any) -> ReconstructSummary:
    """Run ``method`` (``collinear``, ``fastmtt``, ``mmc``, ``ml``) on every event of ``inp_path``
    (only signal-region events with ``only_sr``) and write the method-output file ``out_path``.

    ``inp_path``: a ditau event file, or any Parquet file / ROOT TTree (``tree``) with the
    input columns (:data:`~ditau.inputs.INPUT_COLUMNS` plus the method's);
    ``column_map``: schema name -> the file's column name, for files that name them otherwise.
    ``chunk``: events per chunk; ``workers``: local processes; ``scheduler``: a Dask scheduler
    address or client (overrides ``workers``); ``settings``: the method's settings (its settings
    dataclass fields), recorded in the file's metadata with the input path and the number of
    rows per status. Raises SchemaError naming the missing columns, ValueError for bad
    settings.
    """
    inp = Path(inp_path)
    if not inp.exists():
        raise SchemaError(f"{inp}: no such file")
    if inp.is_dir():
        raise SchemaError(f"{inp}: a directory, not an event file")
    check_not_input(out_path, inp)
    names, n_in, meta_in = _input_names(inp, tree)
    notes: list[str] = []
    if method == "ml" and settings.get("model") is None:
        # the shipped default for this input: with or without the tracks' impact parameters
        from ditau.ml.shipped import DEFAULT_MODEL

        chosen = _default_ml_model(inp, names, column_map, tree)
        settings = {**settings, "model": chosen}
        if chosen != DEFAULT_MODEL:
            notes.append(f"{inp} has no track impact parameters (reco_d0_*, reco_z0_*): the "
                         f"shipped model for such inputs, {chosen}, is used instead of "
                         f"{DEFAULT_MODEL}")
    m = make_method(method, settings)
    if meta_in.get("stage") == "reconstruct":
        raise SchemaError(f"{inp}: a reconstruction output (method {meta_in.get('method')}), "
                          "not an event file: give the detector-level events it was made from")
    if n_in == 0:
        raise SchemaError(f"{inp}: no events")
    needed = list(INPUT_COLUMNS) + list(m.columns) + (["in_sr"] if only_sr else [])
    not_read = sorted(set(column_map or {}) - set(needed))
    if not_read:
        raise SchemaError(f"--columns: {not_read} are not input columns of method {method} "
                          f"(it reads {', '.join(needed)})")
    rename = {v: k for k, v in (column_map or {}).items()}  # file name -> schema name
    unknown = [v for v in rename if v not in names]
    if unknown:
        raise SchemaError(f"{inp}: --columns names column(s) {unknown} that the file does not "
                          "have")
    available = {rename.get(c, c) for c in names}
    missing = [c for c in needed if c not in available]
    if missing:
        hint = ("run 'ditau detector' first" if meta_in.get("stage") else
                "map your column names with --columns SCHEMA=YOURS (ditau schema lists them)")
        raise SchemaError(f"{inp}: missing column(s) {missing[:8]}"
                          f"{' ...' if len(missing) > 8 else ''} needed by method {method}; "
                          f"{hint}")
    back = {rename.get(c, c): c for c in names}  # schema name -> file name
    file_cols = [back[c] for c in needed]
    _check_inputs(inp, file_cols, needed, meta_in["tree"] if inp.suffix == ".root" else None)
    out = check_writable(out_path)
    if inp.suffix == ".root":
        chunks: Iterator[pa.Table] = _root_chunks(inp, meta_in["tree"], file_cols, chunk)
    else:
        chunks = read_chunks(inp, file_cols, chunk)
    chunks = _renamed(chunks, rename) if rename else chunks
    start = time.perf_counter()
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    n_events = n_rows = 0

    def count(t: pa.Table) -> None:
        # one row per event with candidate 0 (the point estimate); methods that sample (ml)
        # add rows 1..K per event: events and status counts are those of the candidate-0 rows
        nonlocal n_events, n_rows
        first = t.filter(pc.equal(t["candidate"], 0))
        status = first["rec_status"].to_numpy(zero_copy_only=False)
        counts.update({s: int(np.sum(status == s)) for s in RECO_STATUS})
        not_ok = first.filter(pc.not_equal(first["rec_status"], "ok"))
        reasons.update(not_ok["rec_reason"].to_pylist())
        n_events += first.num_rows
        n_rows += t.num_rows

    metadata = {
        "stage": "reconstruct",
        "method": method,
        "settings": m.settings.to_dict(),
        "input": str(inp),
        "input_stage": meta_in.get("stage"),
        "input_rows": n_in,
        "column_map": dict(column_map or {}),
        "only_sr": only_sr,
        # provenance: the input's identity and this run's own id (input + method settings)
        INPUT: identity(inp, meta_in, event_id_column=back.get("event_id", "event_id")),
    }
    metadata[RUN_ID] = run_id("reconstruct", {
        "input": input_key(metadata[INPUT]),
        **{k: metadata[k] for k in ("method", "settings", "column_map", "only_sr")}})
    run_chunked(inp, out, functools.partial(_chunk, method=m, only_sr=only_sr, source=str(inp)),
                columns=file_cols, schema=recon_schema(), metadata=metadata,
                require=("method",), chunk=chunk, workers=workers, scheduler=scheduler,
                progress=progress, desc=f"reconstruct {method}", on_chunk=count,
                final_metadata=lambda: {
                    "n_events": n_events, "n_rows": n_rows,
                    "status_counts": {s: counts[s] for s in RECO_STATUS},
                    "reason_counts": dict(reasons.most_common(20))},
                chunks=chunks, total=n_in)
    no_ip = 0
    if method == "ml":
        from ditau.ml.features import NO_IP_REASON

        no_ip = sum(n for r, n in reasons.items() if str(r).startswith(NO_IP_REASON))
    if no_ip:
        notes.append(f"{no_ip} events not reconstructed: a leg without track impact "
                     "parameters, which the ML model uses (--model ditau-cpu-v1 needs none)")
    return ReconstructSummary(out, method, n_events, time.perf_counter() - start,
                              {s: counts[s] for s in RECO_STATUS}, notes)
