"""Shared generated samples (session-scoped: each is generated once per test run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ditau.generate import GenerateConfig, run
from ditau.schema import read_events, read_metadata

FAST = {"mpi": False, "hadronisation": False, "keep_particles": False}


def _sample(tmp_path_factory: pytest.TempPathFactory, name: str, workers: int = 2,
            **cfg: object) -> tuple[dict[str, np.ndarray], dict, Path]:
    path = tmp_path_factory.mktemp(name) / f"{name}.parquet"
    run(GenerateConfig(**cfg), path, workers=workers, progress=False)
    table = read_events(path, require=("id", "truth"))
    cols = {c: table[c].to_numpy(zero_copy_only=False) for c in table.column_names
            if not c.startswith("fs_")}
    return cols, read_metadata(path), path


@pytest.fixture(scope="session")
def inclusive(tmp_path_factory):
    """Unforced decays; MPI and hadronisation off (tau decays do not depend on them)."""
    return _sample(tmp_path_factory, "inclusive", events=1600, seed=11, events_per_job=800,
                   **FAST)


@pytest.fixture(scope="session")
def forced4(tmp_path_factory):
    """Both taus forced into pi, rho, e, mu."""
    return _sample(tmp_path_factory, "forced4", events=1200, seed=12, events_per_job=600,
                   force_decays=("pi", "rho", "e", "mu"), **FAST)


@pytest.fixture(scope="session")
def pipi(tmp_path_factory):
    """Forced pi pi with the default (correlated, exact) tau decays."""
    return _sample(tmp_path_factory, "pipi", events=1200, seed=13, events_per_job=600,
                   force_decays=("pi",), **FAST)


@pytest.fixture(scope="session")
def full(tmp_path_factory):
    """Full physics (ISR/FSR/MPI/hadronisation) with the visible final state stored."""
    return _sample(tmp_path_factory, "full", events=200, seed=14, events_per_job=100)


@pytest.fixture(scope="session")
def signal_particles(tmp_path_factory):
    """Full-physics signal with particles, taus forced into the analysis modes (path)."""
    path = tmp_path_factory.mktemp("detsig") / "signal.parquet"
    run(GenerateConfig(events=2000, seed=21, events_per_job=1000,
                       force_decays=("pi", "rho", "e", "mu")), path, workers=2, progress=False)
    return path


@pytest.fixture(scope="session")
def signal_reco_tes(signal_particles, tmp_path_factory):
    """``signal_particles`` through the detector: (nominal, tau energy scale up) paths."""
    from ditau.detector.run import run_detector

    d = tmp_path_factory.mktemp("sigreco")
    nom = run_detector(signal_particles, d / "nom.parquet", keep_particles=False,
                       progress=False).path
    up = run_detector(signal_particles, d / "tes_up.parquet", systematic="tes_up",
                      keep_particles=False, progress=False).path
    return nom, up


@pytest.fixture(scope="session")
def wtaunu_particles(tmp_path_factory):
    """A small W -> tau nu + jet background sample with particles (path)."""
    path = tmp_path_factory.mktemp("wtaunu") / "wtaunu.parquet"
    run(GenerateConfig(process="wtaunu", events=400, seed=22, events_per_job=200), path,
        workers=2, progress=False)
    return path


@pytest.fixture(scope="session")
def relabel_three_prong():
    """A function (src, dst, n) -> event ids: copies the detector-level file ``src`` to
    ``dst`` with the truth tau+ of its first ``n`` signal-region events whose reco tau+ leg is
    hadronic relabelled as a 3-prong decay (a leg without a polarimeter; reco unchanged)."""
    import pyarrow as pa

    from ditau.schema import write_events

    def relabel(src: Path, dst: Path, n: int) -> np.ndarray:
        t = read_events(src)
        sr = np.asarray(t["in_sr"]) & np.isin(t["reco_mode_p"].to_numpy(zero_copy_only=False),
                                               ("pi", "rho"))
        pick = np.flatnonzero(sr)[:n]
        assert len(pick) == n, "too few signal-region events with a hadronic tau+"
        new = {"decay_mode_p": "other", "truth_channel": "other", "n_charged_p": 3,
               "n_pi0_p": 0, "n_neutral_p": 0, "chg_pdg_p": 0}
        for name, value in new.items():
            col = t[name].to_numpy(zero_copy_only=False).copy()
            col[pick] = value
            t = t.set_column(t.column_names.index(name), name,
                             pa.array(col, type=t.schema.field(name).type))
        write_events(t, dst, read_metadata(src))
        return np.asarray(t["event_id"])[pick]

    return relabel
