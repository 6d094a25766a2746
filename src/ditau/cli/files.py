"""File commands: ``ditau merge``, ``ditau info``, ``ditau schema``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ditau.cli.common import user_errors


def merge(
    inputs: Annotated[list[Path], typer.Argument(help="event files of one sample")],
    out: Annotated[Path, typer.Option("--out", "-o", help="merged Parquet file")],
) -> None:
    """Merge files of one sample (e.g. several seeds): event ids renumbered, weights shared."""
    from ditau.merge import merge_files

    with user_errors():
        n = merge_files(inputs, out)
    typer.echo(f"merged {len(inputs)} files ({n} events) into {out}")


def info(path: Annotated[Path, typer.Argument(help="a ditau Parquet file")]) -> None:
    """Validate a ditau file and print its metadata and channel content."""
    import numpy as np
    import pyarrow.parquet as pq

    from ditau.schema import read_events, read_metadata

    with user_errors():
        meta = read_metadata(path)
        label = "truth_channel"
        if "truth_channel" not in pq.ParquetFile(path).schema_arrow.names:
            label = "reco_channel"  # detector-level only (e.g. a Delphes import without truth)
        table = read_events(path, columns=[label, "weight"])
    typer.echo(json.dumps({k: v for k, v in meta.items() if k != "jobs"}, indent=1))
    ch = np.asarray(table[label])
    w = np.asarray(table["weight"])
    typer.echo(f"{table.num_rows} events; yield per fb^-1 = {w.sum():.1f}")
    for c in sorted(set(ch)):
        typer.echo(f"  {c:8s} {np.sum(ch == c):8d} events  {w[ch == c].sum():10.2f} /fb^-1")


def schema(group: Annotated[list[str] | None, typer.Option(
        help="only these groups (id, truth, particles, reco)")] = None) -> None:
    """Print the event schema (columns, dtypes, units) as a Markdown table."""
    from ditau.schema import GROUPS, describe

    with user_errors():
        typer.echo(describe(tuple(group) if group else GROUPS))
