"""File commands: ``ditau merge``, ``ditau info``, ``ditau schema``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ditau.cli.common import Force, existing, existing_all, reported_warnings, user_errors


def merge(
    inputs: Annotated[list[Path], typer.Argument(help="event files of one sample")],
    out: Annotated[Path, typer.Option("--out", "-o", help="merged Parquet file")],
    force: Force = False,
) -> None:
    """Merge files of one sample (e.g. several seeds): event ids renumbered, weights shared.

    Refuses files that share a generation job seed (the same events twice) or differ in a
    generator, detector or selection setting, naming both files and the seed or setting.
    """
    from ditau.merge import merge_files

    with user_errors(), reported_warnings():
        existing_all(inputs)
        n = merge_files(inputs, out, force=force)
    typer.echo(f"merged {len(inputs)} files ({n} events) into {out}")


#: Columns whose values must be finite for the reconstruction (``ditau info`` reports +-inf).
_FINITE = ("met_x", "met_y", "met_sumet", "met_cov_xx", "met_cov_xy", "met_cov_yy")


def _not_a_ditau_file(path: Path) -> None:
    """ValueError for a directory or a ROOT file given to ``ditau info``."""
    if path.is_dir():
        raise ValueError(f"{path}: a directory; ditau info takes one ditau Parquet file")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic == b"root":
        raise ValueError(f"{path}: a ROOT file, not a ditau Parquet file; import Delphes "
                         "output with 'ditau import-delphes', or reconstruct an ntuple "
                         "directly with 'ditau reconstruct FILE --tree NAME'")


def _data_problems(path: Path) -> list[str]:
    """What the schema allows but the stages refuse or flag in an event file: repeated
    event ids, infinite MET values."""
    import numpy as np
    import pyarrow.parquet as pq

    names = set(pq.ParquetFile(path).schema_arrow.names)
    out = []
    if "event_id" in names:
        ids = np.asarray(pq.read_table(path, columns=["event_id"]).column(0))
        uniq, counts = np.unique(ids, return_counts=True)
        if np.any(counts > 1):
            out.append(f"event_id not unique: {int(np.sum(counts > 1))} id(s) repeated, e.g. "
                       f"{int(uniq[counts > 1][0])} ({int(counts[counts > 1][0])} times); "
                       "reconstruct and evaluate refuse such a file")
    for c in (c for c in _FINITE if c in names):
        x = np.asarray(pq.read_table(path, columns=[c]).column(0), dtype=float)
        for sign, bad in (("+inf", np.isposinf(x)), ("-inf", np.isneginf(x))):
            if bad.any():
                out.append(f"column {c} has {int(bad.sum())} {sign} value(s) (first at row "
                           f"{int(np.flatnonzero(bad)[0])}); those events fail reconstruction")
    return out


def info(path: Annotated[Path, typer.Argument(help="a ditau Parquet file")]) -> None:
    """Validate a ditau file in full against its kind (generated events, detector-level
    events or reconstruction output: every required column, dtype, NaN and label) and print
    its metadata and content. Data the schema allows but the stages refuse or flag (repeated
    event ids, infinite MET) is reported as ``warning:`` lines on stderr."""
    import numpy as np
    import pyarrow.parquet as pq

    from ditau.schema import FILE_KINDS, validate_file

    with user_errors():
        existing(path)
        _not_a_ditau_file(path)
        kind, meta = validate_file(path)
        problems = _data_problems(path) if kind != "recon" else []
    typer.echo(f"{path}: valid {FILE_KINDS[kind].doc} file")
    for p in problems:
        typer.secho(f"warning: {path}: {p}", err=True, fg=typer.colors.YELLOW)
    typer.echo(json.dumps({k: v for k, v in meta.items() if k != "jobs"}, indent=1))
    if kind == "recon":
        t = pq.read_table(path, columns=["method", "candidate", "rec_status"])
        first = np.asarray(t["candidate"]) == 0
        status = np.asarray(t["rec_status"].to_pylist(), dtype=object)[first]
        methods = sorted(set(t["method"].to_pylist()))
        typer.echo(f"{int(first.sum())} events ({t.num_rows} rows); method(s) "
                   f"{', '.join(methods) or '-'}")
        for s in sorted(set(status)):
            typer.echo(f"  {s:12s} {int(np.sum(status == s)):8d} events")
        return
    label = "truth_channel"
    if "truth_channel" not in pq.ParquetFile(path).schema_arrow.names:
        label = "reco_channel"  # detector-level only (e.g. a Delphes import without truth)
    table: Any = pq.read_table(path, columns=[label, "weight"])
    ch = np.asarray(table[label].to_pylist(), dtype=object)
    w = np.asarray(table["weight"])
    typer.echo(f"{table.num_rows} events; yield per fb^-1 = {w.sum():.1f}")
    for c in sorted(set(ch)):
        typer.echo(f"  {c:8s} {np.sum(ch == c):8d} events  {w[ch == c].sum():10.2f} /fb^-1")


def schema(group: Annotated[list[str] | None, typer.Option(
        help="only these groups (id, truth, particles, reco, method)")] = None) -> None:
    """Print the event schema (columns, dtypes, units) as a Markdown table."""
    from ditau.schema import GROUPS, describe

    with user_errors():
        typer.echo(describe(tuple(group) if group else GROUPS))
