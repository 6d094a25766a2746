"""``ditau demo``: the whole chain on a small sample, on CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ditau.cli.common import user_errors


def demo(
    outdir: Annotated[Path, typer.Option("--outdir", help="report folder")] = Path("ditau-demo"),
    events: Annotated[int, typer.Option("--events", "-n")] = 4000,
    workers: Annotated[int, typer.Option("--workers", "-j")] = 2,
    seed: Annotated[int, typer.Option()] = 1,
) -> None:
    """Run the whole chain on a small sample, on CPU: generation, detector, selection,
    collinear/FastMTT/MMC/ML, resolution tables, spin tomography -> one report folder."""
    from ditau.demo import run_demo

    with user_errors():
        report = run_demo(outdir, events=events, workers=workers, seed=seed)
    # the summary section on the terminal; the whole report (tables, figures) is in the folder
    summary = report.split("\n## ", 2)
    typer.echo("\n## ".join(summary[:2]).rstrip())
    typer.echo(f"\nfull report: {Path(outdir) / 'report.md'} (figures in {outdir}/evaluation, "
               f"{outdir}/tomography)")
