"""``ditau detector`` (response, triggers, channels, signal region) and ``ditau yields``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ditau.cli.common import existing_all, given, scheduler_option, user_errors


def detector(
    inp: Annotated[Path, typer.Argument(help="generated event file (with particles)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output Parquet file")],
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="YAML file of DetectorConfig fields")] = None,
    systematic: Annotated[str | None, typer.Option(
        help="named variation: tes_up/down, jes_up/down, soft_met_scale_up/down, "
             "soft_met_resolution_up/down, ip_res_up/down")] = None,
    seed: Annotated[int | None, typer.Option(
        help="detector random seed; the noise is keyed by it and by the input's events, so "
             "inputs of different generation runs get independent noise")] = None,
    no_smear: Annotated[bool, typer.Option(
        "--no-smear", help="switch all resolutions off (closure studies)")] = False,
    drop_particles: Annotated[bool, typer.Option(
        "--drop-particles", help="do not copy the particle lists to the output")] = False,
    select: Annotated[Path | None, typer.Option(
        "--select", help="YAML file of SelectConfig fields (cuts, triggers, SR)")] = None,
    workers: Annotated[int, typer.Option("--workers", "-j", help="local processes")] = 1,
    scheduler: Annotated[str | None, typer.Option(
        help="Dask scheduler address (tcp://host:port); overrides --workers")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """ATLAS-like detector response, triggers, channel assignment and signal region."""
    from ditau.detector.config import DetectorConfig
    from ditau.detector.run import run_detector
    from ditau.select import SelectConfig

    with user_errors():
        existing_all([inp, config, select])
        scheduler = scheduler_option(scheduler)
        scfg = SelectConfig.from_yaml(select) if select else SelectConfig()
        cfg = DetectorConfig.from_yaml(config) if config else DetectorConfig()
        changes = given(seed=seed, smear=False if no_smear else None)
        cfg = DetectorConfig.from_dict({**cfg.to_dict(), **changes}, source="options")
        summary = run_detector(inp, out, cfg, scfg, systematic=systematic,
                               keep_particles=not drop_particles, workers=workers,
                               scheduler=scheduler,
                               progress=not quiet)
    typer.echo(f"wrote {summary.events} events to {summary.path} ({summary.in_sr} in the "
               f"signal region; {summary.seconds:.1f} s)")


def yields(
    files: Annotated[list[Path], typer.Argument(
        help="detector-level event files ('ditau detector' output; to change the selection, "
             "re-run it with --select)")],
    markdown: Annotated[Path | None, typer.Option(
        "--markdown", help="also write the tables to this Markdown file")] = None,
    composition: Annotated[bool, typer.Option(
        "--composition", help="also the signal-region composition of each reconstructed "
                              "channel by truth decay mode (signal files with truth)")] = False,
    cutflow: Annotated[bool, typer.Option(
        "--cutflow", help="also the signal cut-flow per truth channel (generated, trigger, "
                          "object ID, channel, SR) next to the reference's SR yields")] = False,
) -> None:
    """Signal-region yields per fb^-1 per channel: signal by truth channel, backgrounds;
    optionally the signal's composition by truth decay mode and its cut-flow."""
    from ditau.generate.config import SIGNAL
    from ditau.schema import atomic_path
    from ditau.yields import composition as compose
    from ditau.yields import compute_yields
    from ditau.yields import cutflow as flow

    with user_errors():
        existing_all(files)
        table = compute_yields(files)
        text = table.to_markdown()
        if composition or cutflow:
            signal = [f for f in files if SIGNAL in _samples(f)]
            if not signal:
                raise ValueError(f"--composition / --cutflow need a signal ({SIGNAL}) file "
                                 "among the inputs")
            if composition:
                text += "\n\n" + compose(signal).to_markdown()
            if cutflow:
                text += "\n\n" + flow(signal).to_markdown()
        if markdown is not None:
            with atomic_path(markdown) as tmp:
                tmp.write_text(text + "\n")
    typer.echo(text)


def _samples(path: Path) -> set[str]:
    """The sample names in an event file."""
    import pyarrow.parquet as pq

    return set(pq.read_table(path, columns=["sample"]).column("sample").to_pylist())
