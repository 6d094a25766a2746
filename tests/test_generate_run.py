"""Configuration, job planning, determinism, parallel back-ends and failure handling."""

import hashlib

import numpy as np
import pytest
import yaml

from ditau.generate import ConfigError, GenerateConfig, GenerationError, plan_jobs, run
from ditau.schema import read_events, read_metadata

SMALL = {"events": 40, "events_per_job": 20, "batch_size": 10}


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_default_is_correlated_exact_tau_decays_at_13tev():
    s = GenerateConfig().pythia_settings(seed=5)
    assert "TauDecays:mode = 1" in s
    assert not any(x.startswith("TauDecays:mMinForZ") for x in s)
    assert "Beams:eCM = 13000" in s and "PhaseSpace:mHatMin = 60" in s
    assert "Random:seed = 5" in s


def test_massless_me_is_opt_in_and_recorded():
    s = GenerateConfig(tau_me_massless_above=10.0).pythia_settings(seed=1)
    assert "TauDecays:mMinForZ = 10" in s


@pytest.mark.parametrize(("changes", "field"), [
    ({"process": "zmumu"}, "process: unknown process 'zmumu'"),
    ({"events": -5}, "events: must be a positive integer"),
    ({"events": 0}, "events: must be a positive integer"),
    ({"mass_window": (120.0, 60.0)}, "mass_window"),
    ({"force_decays": ("pi", "kaon")}, "force_decays: unknown mode"),
    ({"seed": -1}, "seed"),
])
def test_bad_config_names_the_field(changes, field):
    with pytest.raises(ConfigError, match=field):
        GenerateConfig(**changes)


def test_yaml_config_roundtrip_and_unknown_key(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"events": 300, "force_decays": ["pi", "rho"],
                                    "mass_window": [70, 110]}))
    cfg = GenerateConfig.from_yaml(good)
    assert cfg.events == 300 and cfg.force_decays == ("pi", "rho")
    assert cfg.mass_window == (70.0, 110.0)
    assert GenerateConfig.from_dict(cfg.to_dict()) == cfg
    bad = tmp_path / "bad.yaml"
    bad.write_text("events: 10\nnevents: 20\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key.*nevents"):
        GenerateConfig.from_yaml(bad)


def test_job_seeds_are_reproducible_distinct_and_cover_all_events():
    cfg = GenerateConfig(events=2500, events_per_job=1000, seed=7)
    jobs = plan_jobs(cfg)
    assert [j.events for j in jobs] == [1000, 1000, 500]
    assert [j.first_event_id for j in jobs] == [0, 1000, 2000]
    assert len({j.seed for j in jobs}) == 3
    assert jobs == plan_jobs(cfg)
    assert {j.seed for j in jobs}.isdisjoint({j.seed for j in plan_jobs(cfg.replace(seed=8))})
    assert all(1 <= j.seed <= 900_000_000 for j in jobs)


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    path = tmp_path_factory.mktemp("det") / "w1.parquet"
    run(GenerateConfig(seed=5, **SMALL), path, workers=1, progress=False)
    return path


def test_same_seed_same_bytes_whatever_the_worker_count(one_worker, tmp_path):
    two = tmp_path / "w2.parquet"
    run(GenerateConfig(seed=5, **SMALL), two, workers=2, progress=False)
    assert _sha(one_worker) == _sha(two)


def test_different_seed_different_events(one_worker, tmp_path):
    other = tmp_path / "s6.parquet"
    run(GenerateConfig(seed=6, **SMALL), other, workers=1, progress=False)
    a = read_events(one_worker, columns=["tau_px_m"])["tau_px_m"].to_numpy()
    b = read_events(other, columns=["tau_px_m"])["tau_px_m"].to_numpy()
    assert not np.any(np.isclose(a, b))
    # jobs inside one file are independent too
    assert not np.any(np.isclose(a[:20], a[20:]))


def test_dask_local_cluster_gives_identical_file(one_worker, tmp_path):
    from dask.distributed import Client, LocalCluster

    out = tmp_path / "dask.parquet"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        run(GenerateConfig(seed=5, **SMALL), out, scheduler=client.scheduler.address,
            progress=False)
    assert _sha(out) == _sha(one_worker)


def test_metadata_records_what_was_run(one_worker):
    meta = read_metadata(one_worker)
    assert meta["stage"] == "generate" and meta["n_events"] == 40
    assert meta["config"]["seed"] == 5
    assert [j["events"] for j in meta["jobs"]] == [20, 20]
    assert meta["generator"].startswith("Pythia 8.317")
    assert "TauDecays:mode = 1" in meta["pythia_settings"]
    assert 500 < meta["cross_section_pb"] < 5000
    assert meta["tau_decay_fraction"] == {"tau+": 1.0, "tau-": 1.0}


def test_pythia_failure_leaves_no_file(tmp_path):
    out = tmp_path / "fail.parquet"
    cfg = GenerateConfig(events=10, extra_settings=("NoSuchGroup:noSuchSetting = 3",))
    with pytest.raises(GenerationError, match="rejected the setting 'NoSuchGroup"):
        run(cfg, out, workers=2, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_shipped_yaml_config_is_the_default():
    from pathlib import Path

    path = Path(__file__).parents[1] / "configs" / "ztautau.yaml"
    assert GenerateConfig.from_yaml(path) == GenerateConfig()


def test_bad_worker_count(tmp_path):
    with pytest.raises(ValueError, match="workers: must be a positive integer"):
        run(GenerateConfig(events=5), tmp_path / "x.parquet", workers=0, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_copy_constructed_pythia_gives_the_same_events_as_a_fresh_one():
    import awkward as ak
    import pythia8mc

    from ditau.generate.runner import _pythia

    cfg = GenerateConfig(mpi=False, hadronisation=False)
    fresh = pythia8mc.Pythia("", False)
    for s in cfg.pythia_settings(77):
        fresh.readString(s)
    fresh.init()
    a, b = _pythia(cfg, 77).nextBatch(3), fresh.nextBatch(3)
    assert ak.all(a.prt.p.px == b.prt.p.px)
    # the per-process template stays pristine (settings were read into the copy only)
    again = _pythia(cfg.replace(mass_window=(80.0, 100.0)), 78)
    assert again.settings.parm("PhaseSpace:mHatMin") == 80.0


def test_tau_filter_keeps_only_passing_events_and_weights_stay_physical(tmp_path):
    from ditau.generate.tau_filter import SIGNAL_REGION_FILTER as flt

    base = GenerateConfig(events=300, events_per_job=300, seed=21, mpi=False,
                          hadronisation=False, keep_particles=False)
    run(base, tmp_path / "all.parquet", workers=1, progress=False)
    run(base.replace(tau_filter=flt), tmp_path / "flt.parquet", workers=1, progress=False)
    every, kept = read_events(tmp_path / "all.parquet"), read_events(tmp_path / "flt.parquet")

    def passes(t):
        return flt.passes(*(np.stack([np.asarray(t[f"tau_{c}_p"]), np.asarray(t[f"tau_{c}_m"])],
                                     axis=-1) for c in ("px", "py", "pz")))

    assert passes(kept).all()
    frac = passes(every).mean()
    assert 0.2 < frac < 0.8  # the filter does something at this threshold
    meta = read_metadata(tmp_path / "flt.parquet")
    vetoed, considered = meta["filter_vetoed"], meta["filter_considered"]
    assert considered >= 300 and vetoed == considered - 300
    # Pythia's sigmaGen counts vetoed events: the filtered sample's total weight is the
    # unfiltered cross section times the pass fraction (each measured independently).
    ratio = np.sum(kept["weight"]) / np.sum(every["weight"])
    err = np.hypot(np.sqrt(frac * (1 - frac) / 300), np.sqrt(vetoed) / considered)
    assert abs(ratio - frac) < 4 * err + 0.03
    assert abs(ratio - (1 - vetoed / considered)) < 0.03


def test_tau_filter_is_for_tau_pairs_and_validated():
    from ditau.generate.tau_filter import TauFilter

    with pytest.raises(ConfigError, match="tau_filter: only for tau-pair"):
        GenerateConfig(process="wlnu", tau_filter=TauFilter(10, 20, 2.5))
    with pytest.raises(ConfigError, match="tau_filter"):
        GenerateConfig.from_dict({"tau_filter": {"pt_min": 30, "pt_lead_min": 20,
                                                 "abs_eta_max": 2.5}})


def test_tau_filter_yaml_spellings():
    """The YAML config accepts the CLI's spellings ('sr', 'a,b,c'), not only a mapping."""
    from ditau.generate.tau_filter import SIGNAL_REGION_FILTER, TauFilter

    assert GenerateConfig.from_dict({"tau_filter": "sr"}).tau_filter == SIGNAL_REGION_FILTER
    flt = GenerateConfig.from_dict({"tau_filter": "10,20,2.5"}).tau_filter
    assert flt == TauFilter(10, 20, 2.5)
    assert GenerateConfig.from_dict({"tau_filter": None}).tau_filter is None
    with pytest.raises(ConfigError, match="tau_filter: expected 'sr'"):
        GenerateConfig.from_dict({"tau_filter": "loose"})
    with pytest.raises(ConfigError, match="tau_filter: expected"):
        GenerateConfig.from_dict({"tau_filter": 3})


def test_tau_filter_spellings_are_parsed_in_python_too():
    """Regression: GenerateConfig(tau_filter="sr") built in Python kept the string and failed
    inside Pythia ("'str' object has no attribute 'passes'"); it is parsed as in YAML/CLI."""
    from ditau.generate.tau_filter import SIGNAL_REGION_FILTER, TauFilter

    assert GenerateConfig(tau_filter="sr").tau_filter == SIGNAL_REGION_FILTER
    assert GenerateConfig(tau_filter="10,20,2.5").tau_filter == TauFilter(10.0, 20.0, 2.5)
    assert GenerateConfig(tau_filter={"pt_min": 5.0, "pt_lead_min": 9.0,
                                      "abs_eta_max": 3.0}).tau_filter.pt_min == 5.0
    with pytest.raises(ConfigError, match="tau_filter"):
        GenerateConfig(tau_filter="loose")
