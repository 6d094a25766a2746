"""``ditau generate``: Pythia 8 events (signal or a background) with full truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ditau.cli.common import comma_list, given, scheduler_option, user_errors


def generate(
    out: Annotated[Path, typer.Option("--out", "-o", help="output Parquet file")],
    events: Annotated[int | None, typer.Option("--events", "-n", help="number of events")] = None,
    process: Annotated[str | None, typer.Option(
        help="process: ztautau (signal), zll, wlnu, wtaunu, ttbar")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed (same seed, same bytes)")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", "-j", help="local worker processes [default: one per core]")] = None,
    scheduler: Annotated[str | None, typer.Option(
        help="Dask scheduler address (tcp://host:port); overrides --workers")] = None,
    mass_window: Annotated[tuple[float, float] | None, typer.Option(
        help="m_hat window in GeV, e.g. --mass-window 60 120")] = None,
    force_decays: Annotated[str | None, typer.Option(
        help="force both taus into these modes, comma-separated subset of pi,rho,e,mu "
             "(weights keep the physical rates)")] = None,
    events_per_job: Annotated[int | None, typer.Option(help="events per job")] = None,
    tau_filter: Annotated[str | None, typer.Option(
        help="generator-level tau filter before hadronisation and decays: 'sr' (looser than "
             "the signal region: pT > 12/22 GeV, |eta| < 2.7) or 'PT_MIN,PT_LEAD_MIN,ABS_ETA_MAX'; "
             "weights stay physical")] = None,
    spin: Annotated[str | None, typer.Option(
        help="tau-pair spin: 'exact' (Pythia's correlated decays, default, the reference) or "
             "'weights' (unpolarised decays plus a per-event spin_weight to the LO state: "
             "2.3x the events per CPU-second, 1.6x in effective events (n_eff/n = 0.68) with "
             "full physics; benchmarks/RESULTS.md)")] = None,
    spin_state: Annotated[str | None, typer.Option(
        help="with --spin weights: the state the weights aim at: 'sm' (default), 'separable' "
             "(same polarisations, C = B+ B-^T) or 'unpolarised' (B = C = 0)")] = None,
    no_particles: Annotated[bool, typer.Option(
        "--no-particles", help="do not store the visible final state (smaller files; the "
                               "detector stage then cannot be re-run)")] = False,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="YAML file of GenerateConfig fields; options override it")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Generate events (signal pp -> Z/gamma* -> tau tau, or a background) with Pythia 8."""
    from ditau.generate import run

    with user_errors():
        from ditau.generate.config import GenerateConfig

        scheduler = scheduler_option(scheduler)
        cfg = GenerateConfig.from_yaml(config) if config else GenerateConfig()
        # tau_filter is parsed by GenerateConfig.from_dict
        changes = given(events=events, process=process, seed=seed, mass_window=mass_window,
                        events_per_job=events_per_job, spin=spin, spin_state=spin_state,
                        tau_filter=tau_filter,
                        force_decays=comma_list(force_decays, "--force-decays",
                                                ("pi", "rho", "e", "mu")),
                        keep_particles=False if no_particles else None)
        cfg = GenerateConfig.from_dict({**cfg.to_dict(), **changes}, source="options")
        summary = run(cfg, out, workers=workers, scheduler=scheduler, progress=not quiet)
    typer.echo(f"wrote {summary.events} events to {summary.path} "
               f"({summary.seconds:.1f} s, {summary.events_per_second:.1f} events/s)")
    from ditau.generate.config import PROCESSES

    typer.echo(f"cross section sigma({PROCESSES[cfg.process].doc}) = "
               f"{summary.cross_section_pb:.1f} +- {summary.cross_section_err_pb:.1f} pb; "
               f"truth channels: {summary.channels}")
