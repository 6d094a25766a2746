"""Run generation jobs (in-process, on local worker processes, or on a Dask cluster).

The sample is cut into fixed-size jobs with seeds derived from (seed, job index), and job
outputs are written in job order, so the output file is byte-identical for a given
configuration whatever the number of workers or the cluster used.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import math
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from ditau.generate.config import PROCESSES, GenerateConfig
from ditau.generate.tau_filter import make_hook
from ditau.generate.truth import extract
from ditau.physics import MB_TO_FB
from ditau.provenance import run_id
from ditau.schema import EventWriter, arrow_schema, check_writable
from ditau.spin import truth_weights

#: Pythia accepts seeds 1 .. 900 000 000.
_PYTHIA_SEED_MAX = 900_000_000
#: Spawn key of the numpy stream of a job's beam-spot vertices (from the job's Pythia seed).
_BEAM_SPOT_STREAM = 1


class GenerationError(RuntimeError):
    """Pythia could not be initialised or failed to produce events."""


@dataclass(frozen=True)
class Job:
    index: int
    first_event_id: int
    events: int
    seed: int


@dataclass
class JobResult:
    job: Job
    table: pa.Table
    sigma_pb: float
    sigma_err_pb: float
    n_tried: int
    #: Events vetoed by the generator-level tau filter / events it considered (0/0: no filter).
    filter_counts: tuple[int, int]
    tau_decay_fraction: dict[str, float]
    seconds: float


@dataclass
class RunSummary:
    path: Path
    events: int
    cross_section_pb: float
    cross_section_err_pb: float
    tau_decay_fraction: dict[str, float]
    seconds: float
    channels: dict[str, int]

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")


def _spin_metadata(config: GenerateConfig) -> dict[str, Any]:
    """How the tau-pair spin was generated (recorded in the file's metadata)."""
    if config.spin == "weights":
        return {"mode": "weights", "state": config.spin_state, "decays": "unpolarised",
                "frame": "Collins-Soper helicity basis {k, r, n} (ditau.physics.helicity)",
                "spin_weight": "1 + B+.h+ + B-.h- + h+ C h- (ditau.spin.truth_weights): the "
                               f"'{config.spin_state}' LO state over unpolarised decays; "
                               "weight stays the normalisation"}
    decays = "correlated (Pythia exact)" if config.tau_spin_correlations else "unpolarised"
    return {"mode": "exact", "decays": decays, "spin_weight": "1"}


def plan_jobs(config: GenerateConfig) -> list[Job]:
    """Split the sample into jobs with independent, reproducible Pythia seeds."""
    n_jobs = math.ceil(config.events / config.events_per_job)
    jobs = []
    for j in range(n_jobs):
        first = j * config.events_per_job
        state = np.random.SeedSequence([config.seed, j]).generate_state(1, dtype=np.uint64)[0]
        jobs.append(Job(j, first, min(config.events_per_job, config.events - first),
                        int(state % _PYTHIA_SEED_MAX) + 1))
    return jobs


@functools.cache
def _template() -> Any:
    """A never-initialised Pythia per process, whose Settings/ParticleData later instances copy.

    Reading Pythia's XML database costs ~1 s; copy-construction ~2 ms (same events: tested).
    """
    import pythia8mc  # imported here: only worker processes need the generator

    return pythia8mc.Pythia("", False)


def _pythia(config: GenerateConfig, seed: int, hook: Any = None) -> Any:
    """An initialised Pythia for ``config``; ``hook`` (a UserHooks) must outlive it."""
    import pythia8mc

    tpl = _template()
    pythia = pythia8mc.Pythia(tpl.settings, tpl.particleData, False)
    for s in config.pythia_settings(seed):
        if not pythia.readString(s):
            raise GenerationError(f"Pythia rejected the setting '{s}'")
    if hook is not None:
        pythia.setUserHooksPtr(hook)
    if not pythia.init():
        raise GenerationError(f"Pythia initialisation failed for process '{config.process}' "
                              f"(settings: {config.pythia_settings(seed)})")
    return pythia


def tau_decay_fractions(pythia: Any) -> dict[str, float]:
    """Fraction of the tau+ and tau- decay width left open (1 unless decays are forced)."""
    entry = pythia.particleData.particleDataEntryPtr(15)
    total = on_m = on_p = 0.0
    for i in range(entry.sizeChannels()):
        ch = entry.channel(i)
        br, mode = ch.bRatio(), ch.onMode()
        total += br
        on_m += br if mode in (1, 2) else 0.0  # onMode 2: on for the particle (tau-) only
        on_p += br if mode in (1, 3) else 0.0  # onMode 3: on for the antiparticle only
    return {"tau+": on_p / total, "tau-": on_m / total}


def beam_spot_rng(job: Job) -> np.random.Generator:
    """The numpy stream of a job's beam-spot vertices: from the job's seed alone, apart from
    Pythia's own stream (which the vertices therefore leave unchanged)."""
    return np.random.default_rng(np.random.SeedSequence(job.seed,
                                                        spawn_key=(_BEAM_SPOT_STREAM,)))


def run_job(config: GenerateConfig, job: Job,
            on_batch: Callable[[int], None] | None = None) -> JobResult:
    """Generate one job's events and return them as a schema table."""
    start = time.perf_counter()
    hook = make_hook(config.tau_filter) if config.tau_filter is not None else None
    pythia = _pythia(config, job.seed, hook)
    spot = beam_spot_rng(job)
    frac = tau_decay_fractions(pythia)
    groups = ("id", "truth", "particles") if config.keep_particles else ("id", "truth")
    schema = arrow_schema(*groups)
    tables = []
    done = 0
    while done < job.events:
        n = min(config.batch_size, job.events - done)
        try:
            batch = pythia.nextBatch(n, 10.0)  # skip failed events, give up after 10x tries
        except Exception as err:
            raise GenerationError(f"job {job.index} (seed {job.seed}): Pythia failed to "
                                  f"generate events: {err}") from err
        # the primary vertex: a Gaussian beam spot (the same shift of every vertex)
        shift = (spot.standard_normal((n, 3)) * np.asarray(config.beam_spot_mm)
                 if config.beam_spot_mm is not None else np.zeros((n, 3)))
        cols = extract(batch, job.first_event_id + done, config.process,
                       config.keep_particles, config.particle_eta_max,
                       tau_pair=PROCESSES[config.process].tau_pair, vertex_shift=shift)
        cols["weight"] = np.zeros(n)  # set below, once the job's cross section is known
        cols["spin_weight"] = (truth_weights(cols, config.spin_state)  # type: ignore[arg-type]
                               if config.spin == "weights" else np.ones(n))
        tables.append(pa.table({f.name: cols[f.name] for f in schema}, schema=schema))
        done += n
        if on_batch is not None:
            on_batch(n)
    info = pythia.infoPython()
    sigma_pb = info.sigmaGen() * MB_TO_FB / 1000.0
    sigma_err_pb = info.sigmaErr() * MB_TO_FB / 1000.0
    table = pa.concat_tables(tables)
    # events per fb^-1: sigma [fb] x open tau fractions x event weight / events in the sample
    # (Pythia's sigmaGen excludes tau branching fractions; ParticleDecays manual).
    norm = sigma_pb * 1000.0 * frac["tau+"] * frac["tau-"] / config.events
    weight = pa.array(np.asarray(table["gen_weight"]) * norm)
    table = table.set_column(table.schema.get_field_index("weight"),
                             schema.field("weight"), weight)
    counts = (hook.vetoed, hook.considered) if hook is not None else (0, 0)
    return JobResult(job, table, sigma_pb, sigma_err_pb, int(info.nTried()), counts, frac,
                     time.perf_counter() - start)


def _ordered(results: Iterator[tuple[int, JobResult]]) -> Iterator[JobResult]:
    """Yield results in job order from an iterator of (index, result) in completion order."""
    pending: dict[int, JobResult] = {}
    nxt = 0
    for idx, res in results:
        pending[idx] = res
        while nxt in pending:
            yield pending.pop(nxt)
            nxt += 1


def _local(config: GenerateConfig, jobs: list[Job], workers: int,
           bar: tqdm) -> Iterator[JobResult]:
    if workers == 1:
        for job in jobs:
            yield run_job(config, job, on_batch=bar.update)
        return
    # fork where available: works from notebooks and stdin scripts, which spawn cannot re-import;
    # the parent holds no Pythia state when the pool starts (Pythia is imported in run_job).
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context(method)) as ex:
        futs = {ex.submit(run_job, config, job): job.index for job in jobs}

        def completed() -> Iterator[tuple[int, JobResult]]:
            for f in cf.as_completed(futs):
                res = f.result()
                bar.update(res.job.events)
                yield futs[f], res

        yield from _ordered(completed())


def _dask(config: GenerateConfig, jobs: list[Job], scheduler: Any,
          bar: tqdm) -> Iterator[JobResult]:
    from dask.distributed import Client, as_completed

    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        futs = [client.submit(run_job, config, job, pure=False) for job in jobs]
        index = {f.key: job.index for f, job in zip(futs, jobs, strict=True)}

        def completed() -> Iterator[tuple[int, JobResult]]:
            for f in as_completed(futs):
                res = f.result()
                bar.update(res.job.events)
                yield index[f.key], res

        yield from _ordered(completed())
    finally:
        if client is not scheduler:
            client.close()


def run(config: GenerateConfig, out: str | Path, workers: int | None = None,
        scheduler: Any = None, progress: bool = True) -> RunSummary:
    """Generate ``config.events`` events into the Parquet file ``out``.

    ``workers`` local processes (default: one per core, at most one per job), or a Dask
    ``scheduler`` (address or ``Client``). The output does not depend on either. The file
    appears only when complete; on any error nothing is left behind.
    """
    jobs = plan_jobs(config)
    if workers is None:
        workers = max(1, min(os.cpu_count() or 1, len(jobs)))
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers: must be a positive integer, got {workers!r}")
    out = check_writable(out)
    groups = ("id", "truth", "particles") if config.keep_particles else ("id", "truth")
    settings = config.pythia_settings(seed=0)
    metadata: dict[str, Any] = {
        "stage": "generate",
        "generator": f"Pythia {version('pythia8mc')} (pythia8mc)",
        "ditau_version": version("ditau"),
        "config": config.to_dict(),
        "pythia_settings": [s for s in settings if not s.startswith("Random:seed")],
        "frame": "laboratory; z along beam 1; GeV; vertices in mm",
        "beam_spot": ("primary vertex ~ Gaussian(0, beam_spot_mm) per event, drawn with "
                      "numpy from each job's seed (the events themselves are Pythia's)"
                      if config.beam_spot_mm is not None else "none: every event at the "
                      "origin"),
        "weight_definition": "events per fb^-1: sigma_gen x open tau fractions x gen_weight "
                             "/ events in file (each job's own sigma estimate)",
        "spin": _spin_metadata(config),
    }
    # the sample's identity (ditau.provenance): what made it, so the same configuration and
    # seed (the same bytes) give the same id
    metadata["run_id"] = run_id("generate", {k: metadata[k] for k in (
        "generator", "config", "pythia_settings")})
    start = time.perf_counter()
    bar = tqdm(total=config.events, unit="ev", desc=f"generate {config.process}",
               disable=not progress, leave=False)
    results = (_dask(config, jobs, scheduler, bar) if scheduler is not None
               else _local(config, jobs, workers, bar))
    job_meta = []
    channels: dict[str, int] = {}
    frac: dict[str, float] = {}
    writer = EventWriter(out, arrow_schema(*groups), metadata, require=groups)
    try:
        for res in results:
            writer.write(res.table)
            job_meta.append({"index": res.job.index, "seed": res.job.seed,
                             "events": res.job.events, "n_tried": res.n_tried,
                             "filter_vetoed": res.filter_counts[0],
                             "filter_considered": res.filter_counts[1],
                             "sigma_pb": res.sigma_pb, "sigma_err_pb": res.sigma_err_pb})
            frac = res.tau_decay_fraction
            ch, cnt = np.unique(np.asarray(res.table["truth_channel"]), return_counts=True)
            for c, k in zip(ch, cnt, strict=True):
                channels[str(c)] = channels.get(str(c), 0) + int(k)
        n = sum(j["events"] for j in job_meta)
        # Event-weighted mean of the jobs' independent estimates, errors added in quadrature.
        sigma = sum(j["sigma_pb"] * j["events"] for j in job_meta) / n
        err = math.sqrt(sum((j["sigma_err_pb"] * j["events"]) ** 2 for j in job_meta)) / n
        writer.close({"jobs": job_meta, "n_events": n,
                      "n_tried": sum(j["n_tried"] for j in job_meta),
                      "filter_vetoed": sum(j["filter_vetoed"] for j in job_meta),
                      "filter_considered": sum(j["filter_considered"] for j in job_meta),
                      "cross_section_pb": sigma, "cross_section_err_pb": err,
                      "tau_decay_fraction": frac})
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    return RunSummary(out, n, sigma, err, frac, time.perf_counter() - start,
                      dict(sorted(channels.items())))
