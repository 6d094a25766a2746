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


def info(path: Annotated[Path, typer.Argument(help="a ditau Parquet file")]) -> None:
    """Validate a ditau file in full against its kind (generated events, detector-level
    events or reconstruction output: every required column, dtype, NaN and label) and print
    its metadata and content."""
    import numpy as np
    import pyarrow.parquet as pq

    from ditau.schema import FILE_KINDS, validate_file

    with user_errors():
        existing(path)
        kind, meta = validate_file(path)
    typer.echo(f"{path}: valid {FILE_KINDS[kind].doc} file")
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
