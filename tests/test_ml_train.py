"""ML training: it learns a known answer (both objectives), resumes exactly, stops early,
refuses bad files and configs, and runs data-parallel (slow)."""

from __future__ import annotations

import math
import socket

import numpy as np
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")

from ditau.ml.data import split_mask  # noqa: E402
from ditau.ml.features import TARGETS  # noqa: E402
from ditau.ml.infer import predict  # noqa: E402
from ditau.ml.io import ModelFileError, load_model, read_blob, write_blob  # noqa: E402
from ditau.ml.model import ModelConfig  # noqa: E402
from ditau.ml.synthetic import write_synthetic  # noqa: E402
from ditau.ml.train import TrainConfig, train  # noqa: E402
from ditau.reconstruct.ml import ml  # noqa: E402
from test_ml_core import rotate_table  # noqa: E402

torch.set_num_threads(1)


def tiny_config(data, out_dir, **kw):
    model = {"d_model": 16, "n_blocks": 1, "n_heads": 2, "d_head": 16, "head_blocks": 1,
             **kw.pop("model", {})}
    base = {"data": [str(data)], "out_dir": str(out_dir), "model": ModelConfig(**model),
            "max_steps": 12, "batch_size": 32, "warmup_steps": 3, "eval_every": 4,
            "checkpoint_every": 4, "log_every": 4, "patience": None, "lr": 1e-2,
            "ema_decay": 0.9, "threads": 1, "device": "cpu"}
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("mltrain") / "small.parquet", 240, seed=3)


# --- learning a known answer ------------------------------------------------------------------


@pytest.mark.parametrize("objective,frame", [("fm", "canonical"), ("diffusion", "lab")])
def test_tiny_model_learns_the_collinear_answer(tmp_path, objective, frame):
    """nu = (1 - x)/x vis with x fixed per decay mode: a deterministic, channel-dependent
    answer. The lab-frame model learns it from rotation augmentation only, so predicting on
    rotated events also checks the (statistical) rotation equivariance."""
    path = write_synthetic(tmp_path / "train.parquet", 400, seed=1)
    cfg = tiny_config(path, tmp_path / "run", max_steps=300, batch_size=64, lr=3e-3,
                      warmup_steps=20, eval_every=50, checkpoint_every=300, ema_decay=0.99,
                      val_fraction=0.1,
                      model={"d_model": 32, "d_head": 32, "head_blocks": 2,
                             "objective": objective, "frame": frame})
    res = train(cfg, progress=False)
    vals = [h["val_loss"] for h in res.history]
    assert vals[-1] < 0.5 * vals[0], vals
    table = pq.read_table(path)
    for a in (0.0, 1.3):
        t = rotate_table(table, a) if a else table
        p = predict(t, model=res.model_path, candidates=8, device="cpu", seed=2)
        truth = np.stack([t[c].to_numpy() for c in TARGETS], 1)[p.rows]
        rel = np.abs(p.point - truth).mean(0) / np.abs(truth).mean(0)
        assert np.all(rel < 0.3), (a, rel)  # predicting 0 would give 1
        m_true = t["m_tautau"].to_numpy()[p.rows]
        assert np.median(np.abs(p.m_point / m_true - 1)) < 0.05
        # the candidate spread is an uncertainty: it tracks the actual error
        err = np.abs(p.point - truth)
        assert np.median(err) < 3 * np.median(p.nu_std)


# --- exact resume -------------------------------------------------------------------------------


def _same_state(a, b):
    assert a.keys() == b.keys()
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("optimizer", ["adamw", "lion"])
def test_interrupted_and_resumed_run_ends_bitwise_equal(tmp_path, small_file, optimizer):
    full = train(tiny_config(small_file, tmp_path / "full", optimizer=optimizer),
                 progress=False)
    cfg = tiny_config(small_file, tmp_path / "cut", optimizer=optimizer)
    part = train(cfg, progress=False, _interrupt_after=10)  # killed after step 10
    assert part.model_path is None and part.step == 10
    assert read_blob(tmp_path / "cut" / "last.ckpt", "ckpt")["step"] == 8
    with pytest.raises(ValueError, match="resume"):
        train(cfg, progress=False)  # a fresh run must not overwrite the checkpoint
    resumed = train(cfg, resume=True, progress=False)
    assert resumed.step == full.step == 12
    a = read_blob(tmp_path / "full" / "last.ckpt", "ckpt")
    b = read_blob(tmp_path / "cut" / "last.ckpt", "ckpt")
    for key in ("model", "ema", "best_ema"):
        assert _same_state(a[key], b[key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(),
                      strict=True):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 12
    assert a["history"] == b["history"] and a["best_step"] == b["best_step"]
    ma = load_model(tmp_path / "full" / "model.pt").model.state_dict()
    mb = load_model(tmp_path / "cut" / "model.pt").model.state_dict()
    assert _same_state(ma, mb)
    # and it did train: the weights moved away from the initialisation
    init = train(tiny_config(small_file, tmp_path / "zero", max_steps=1, lr=0.0),
                 progress=False).final_state
    assert not _same_state(init, a["model"])


def test_resume_refuses_a_changed_config(tmp_path, small_file):
    cfg = tiny_config(small_file, tmp_path / "run", max_steps=4)
    train(cfg, progress=False)
    with pytest.raises(ValueError, match=r"config differs .*\['lr'\]"):
        train(tiny_config(small_file, tmp_path / "run", max_steps=4, lr=0.5), resume=True,
              progress=False)
    with pytest.raises(ModelFileError, match="no checkpoint"):
        train(tiny_config(small_file, tmp_path / "other"), resume=True, progress=False)


def test_early_stopping_without_improvement(tmp_path, small_file):
    cfg = tiny_config(small_file, tmp_path / "run", lr=0.0, patience=2, max_steps=100,
                      ema_decay=0.0)
    res = train(cfg, progress=False)
    # lr 0: the first evaluation is the best, the next two bring nothing -> stop at step 12
    assert res.stopped_early and res.step == 12 and res.best_step == 4
    assert load_model(res.model_path).info["stopped_early"] is True


def test_split_is_a_deterministic_hash_of_the_event_id():
    ids = np.arange(20000)
    val = split_mask(ids, 0.1)
    assert abs(val.mean() - 0.1) < 0.01
    assert np.array_equal(val[::-1], split_mask(ids[::-1], 0.1))
    assert np.all(split_mask(ids, 0.2)[val])  # nested: a larger fraction keeps the smaller


# --- bad files and configs ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, small_file):
    out = tmp_path_factory.mktemp("mlmodel")
    return train(tiny_config(small_file, out / "run", max_steps=2), progress=False).model_path


def test_corrupt_truncated_and_foreign_files_give_clear_errors(tmp_path, model_file,
                                                               small_file):
    raw = model_file.read_bytes()
    cases = {
        "truncated.pt": (raw[: len(raw) // 2], "checksum mismatch"),
        "flipped.pt": (raw[:-100] + bytes([raw[-100] ^ 0xFF]) + raw[-99:], "checksum mismatch"),
        "header.pt": (raw[:20], "not a ditau ML model file"),
        "other.pt": (b"PK\x03\x04" + raw[4:], "not a ditau ML model file"),
    }
    for name, (data, msg) in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(ModelFileError, match=msg) as err:
            load_model(p)
        assert str(p) in str(err.value)
    with pytest.raises(ModelFileError, match="is a ditau ML ckpt file"):
        load_model(model_file.parent / "last.ckpt")
    with pytest.raises(ModelFileError, match=r"missing.pt: cannot read"):
        load_model(tmp_path / "missing.pt")
    # a model of another feature set
    payload = read_blob(model_file, "model")
    payload["feature_set"] = "v0-0123456789ab"
    old = write_blob(tmp_path / "old.pt", "model", payload)
    with pytest.raises(ModelFileError, match=r"old.pt: .*feature set 'v0-0123456789ab'"):
        load_model(old)
    with pytest.raises(ModelFileError, match="feature set"):
        ml(pq.read_table(small_file), model=old, device="cpu")


def test_config_errors_name_the_file_and_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data: [x.parquet]\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError, match=r"c.yaml: unknown key\(s\) \['learning_rate'\]"):
        TrainConfig.from_yaml(p)
    p.write_text("data: [x.parquet]\nmodel: {d_model: 16, layers: 3}\n")
    with pytest.raises(ValueError, match=r"model: unknown key\(s\) \['layers'\]"):
        TrainConfig.from_yaml(p)
    p.write_text("data: [x.parquet]\nselection: everything\n")
    with pytest.raises(ValueError, match="selection must be one of"):
        TrainConfig.from_yaml(p)
    with pytest.raises(OSError, match="no file matches"):
        train(TrainConfig(data=[str(tmp_path / "none_*.parquet")], out_dir=str(tmp_path / "r"),
                          device="cpu"), progress=False)


def test_training_file_without_truth_is_refused(tmp_path):
    import pyarrow as pa

    from ditau.ml.synthetic import synthetic_events
    from ditau.schema import write_events

    t = synthetic_events(50, seed=1)
    t = t.drop_columns([c for c in t.column_names if c.startswith("nu_")])
    p = write_events(t, tmp_path / "noTruth.parquet", {"stage": "detector"})
    with pytest.raises(Exception, match="missing truth column"):
        train(tiny_config(p, tmp_path / "r"), progress=False)
    assert isinstance(t, pa.Table)


# --- data parallel ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ddp_worker(rank, world, port, cfg_dict, out):
    import os

    import torch.distributed as dist

    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    try:
        res = train(TrainConfig.from_dict(cfg_dict), progress=False)
        assert not dist.is_initialized()  # train destroyed the group it created
        torch.save(res.final_state, f"{out}/rank{rank}.pt")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.slow
def test_two_cpu_processes_with_gloo_end_with_identical_parameters(tmp_path, small_file):
    import torch.multiprocessing as tmp

    cfg = tiny_config(small_file, tmp_path / "ddp", max_steps=6, eval_every=3)
    tmp.spawn(_ddp_worker, args=(2, _free_port(), cfg.to_dict(), str(tmp_path)), nprocs=2,
              join=True)
    s0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    s1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert _same_state(s0, s1)
    ck = read_blob(tmp_path / "ddp" / "last.ckpt", "ckpt")
    assert _same_state(ck["model"], s0) and ck["step"] == 6
    assert math.isfinite(ck["best_val"])
    single = train(tiny_config(small_file, tmp_path / "one", max_steps=6, eval_every=3),
                   progress=False).final_state
    assert not _same_state(single, s0)  # two shards of a 2x larger global batch: another path


def test_channels_restrict_the_training_data(small_file, tmp_path):
    """A per-channel model sees only its channel's events; the recipe records it."""
    from ditau.ml.data import load_data
    from ditau.ml.features import ONE_HOT_CHANNELS as CHANNELS

    all_tr, all_va, _ = load_data(tiny_config(small_file, tmp_path / "a"))
    present = sorted({CHANNELS[c] for c in np.concatenate([all_tr.channel, all_va.channel])})
    one = present[0]
    tr, va, recipe = load_data(tiny_config(small_file, tmp_path / "b", channels=[one]))
    assert set(np.concatenate([tr.channel, va.channel]).tolist()) == {CHANNELS.index(one)}
    n_one = int(np.sum(all_tr.channel == CHANNELS.index(one))
                + np.sum(all_va.channel == CHANNELS.index(one)))
    assert len(tr) + len(va) == n_one < len(all_tr) + len(all_va)
    assert recipe["channels"] == [one]
    with pytest.raises(ValueError, match="not among"):
        tiny_config(small_file, tmp_path / "c", channels=["tautau"])
