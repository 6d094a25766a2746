"""GPU readiness of the training code, checked on CPU: the process group (GPU set before nccl
starts, destroyed after training, also on errors), no host synchronisation per training step,
unchanged logged losses, and the fused EMA update."""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402
from torch import nn  # noqa: E402

import ditau.ml.device as ml_device  # noqa: E402
from ditau.ml.device import DistInfo, close_distributed, init_distributed  # noqa: E402
from ditau.ml.hashing import mix_seeds  # noqa: E402
from ditau.ml.model import ModelConfig, NeutrinoModel  # noqa: E402
from ditau.ml.optim import ema_update  # noqa: E402
from ditau.ml.synthetic import write_synthetic  # noqa: E402
from ditau.ml.train import TrainConfig, _Trainer, batch_loss, train  # noqa: E402
from test_ml_train import tiny_config  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("gpuready") / "small.parquet", 240, seed=3)


# --- process group ----------------------------------------------------------------------------


def _fake_dist(monkeypatch: pytest.MonkeyPatch, calls: list[tuple[str, Any]],
               initialised: bool = False) -> None:
    """torch.cuda.set_device and torch.distributed recording their calls, nothing started."""
    state = {"init": initialised}

    def init_process_group(backend: str | None = None, **kw: Any) -> None:
        calls.append(("init_process_group", backend))
        state["init"] = True

    def destroy_process_group(group: Any = None) -> None:
        calls.append(("destroy_process_group", None))
        state["init"] = False

    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", d)))
    monkeypatch.setattr(dist, "init_process_group", init_process_group)
    monkeypatch.setattr(dist, "destroy_process_group", destroy_process_group)
    monkeypatch.setattr(dist, "is_initialized", lambda: state["init"])
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 3)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 4)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")


def test_cuda_device_is_set_to_the_local_rank_before_nccl_starts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, Any]] = []
    _fake_dist(monkeypatch, calls)
    info = init_distributed(torch.device("cuda", 1))  # what resolve_device("cuda", 1) gives
    assert calls == [("set_device", 1), ("init_process_group", "nccl")]
    assert info == DistInfo(rank=3, world=4, local_rank=1, owns_group=True) and info.enabled
    close_distributed(info)
    assert calls[-1] == ("destroy_process_group", None)


def test_cpu_ranks_use_gloo_without_touching_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, Any]] = []
    _fake_dist(monkeypatch, calls)
    info = init_distributed(torch.device("cpu"))
    assert calls == [("init_process_group", "gloo")] and info.owns_group


def test_a_group_created_elsewhere_is_used_and_left_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, Any]] = []
    _fake_dist(monkeypatch, calls, initialised=True)
    info = init_distributed(torch.device("cuda", 1))
    assert calls == [("set_device", 1)] and not info.owns_group
    close_distributed(info)
    close_distributed(DistInfo())  # a single process: nothing to close
    assert calls == [("set_device", 1)]


@pytest.fixture
def one_process_gloo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """WORLD_SIZE > 1 for init_distributed, but a real one-process gloo group (HashStore)."""
    real_init = dist.init_process_group

    def init_one(backend: str | None = None, **kw: Any) -> None:
        real_init(backend, store=dist.HashStore(), rank=0, world_size=1)

    monkeypatch.setattr(dist, "init_process_group", init_one)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def test_train_destroys_the_group_it_created(one_process_gloo: None, small_file: Path,
                                             tmp_path: Path) -> None:
    res = train(tiny_config(small_file, tmp_path / "run", max_steps=2), progress=False)
    assert res.step == 2 and not dist.is_initialized()


def test_train_destroys_the_group_also_when_it_fails(one_process_gloo: None,
                                                     tmp_path: Path) -> None:
    cfg = TrainConfig(data=[str(tmp_path / "none_*.parquet")], out_dir=str(tmp_path / "r"),
                      device="cpu")
    with pytest.raises(OSError, match="no file matches"):
        train(cfg, progress=False)
    assert not dist.is_initialized()


def test_train_leaves_a_group_it_did_not_create(one_process_gloo: None, small_file: Path,
                                                tmp_path: Path) -> None:
    dist.init_process_group("gloo")  # the patched one: a real group, created by the caller
    train(tiny_config(small_file, tmp_path / "run", max_steps=2), progress=False)
    assert dist.is_initialized()


# --- no host synchronisation per step; losses unchanged ---------------------------------------

_SYNCS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__")


def _count_syncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every tensor-to-host read (``.item()``, ``float(t)``, ``if t:``, ...) made
    directly by ditau's ML code."""
    seen: list[str] = []
    ml_dir = str(Path(ml_device.__file__).parent)

    def spy(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: Any, *a: Any, **kw: Any) -> Any:
            caller = sys._getframe(1).f_code
            if caller.co_filename.startswith(ml_dir):
                seen.append(f"{name} in {Path(caller.co_filename).name}:{caller.co_name}")
            return real(self, *a, **kw)
        return wrapper

    for name in _SYNCS:
        monkeypatch.setattr(torch.Tensor, name, spy(name, getattr(torch.Tensor, name)))
    return seen


def _trainer(cfg: TrainConfig) -> _Trainer:
    tr = _Trainer(cfg, DistInfo(), torch.device("cpu"), progress=False)
    tr.load()
    tr.build()
    return tr


@pytest.mark.parametrize("optimizer", ["adamw", "lion"])
def test_training_steps_read_nothing_back_to_the_host(monkeypatch: pytest.MonkeyPatch,
                                                      small_file: Path, tmp_path: Path,
                                                      optimizer: str) -> None:
    tr = _trainer(tiny_config(small_file, tmp_path / "run", optimizer=optimizer))
    seen = _count_syncs(monkeypatch)
    steps = [tr.train_step() for _ in range(3)]
    assert seen == []
    assert all(s.ndim == 0 and not s.requires_grad for s in steps)


def test_validation_reads_back_once_not_per_batch(monkeypatch: pytest.MonkeyPatch,
                                                  small_file: Path, tmp_path: Path) -> None:
    tr = _trainer(tiny_config(small_file, tmp_path / "run", eval_batch_size=4))
    assert len(tr.valid) > 3 * 4  # several batches
    seen = _count_syncs(monkeypatch)
    val = tr.validate()
    assert len(seen) <= 2, seen  # the final `tot[1] > 0` and float(mean)
    # the same number as the per-batch float() sum of the previous version
    monkeypatch.undo()
    c = tr.cfg
    gen = torch.Generator().manual_seed(mix_seeds(c.seed, 0x7A11D))
    tot, n = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(tr.valid), c.eval_batch_size):
            b = tr.valid.index(torch.arange(s, min(s + c.eval_batch_size, len(tr.valid))))
            tot += float(batch_loss(tr.ema, tr.objective, b, tr.stats, tr.scale, gen,
                                    c.model.frame)) * len(b)
            n += len(b)
    assert val == tot / n


def test_logged_losses_are_the_means_of_the_step_losses(small_file: Path,
                                                        tmp_path: Path) -> None:
    """The loss of each log record is the mean of the Python floats of its steps' losses (what
    the per-step float() of the previous version gave), bitwise; 10 steps, log every 4."""
    cfg = tiny_config(small_file, tmp_path / "run", max_steps=10, log_every=4, eval_every=100)
    train(cfg, progress=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text()
           .splitlines()]
    logged = {r["step"]: r["loss"] for r in log if "loss" in r}
    tr = _trainer(tiny_config(small_file, tmp_path / "again", max_steps=10, log_every=4,
                              eval_every=100))
    per_step = [float(tr.train_step()) for _ in range(10)]
    assert logged == {4: float(np.mean(per_step[0:4])), 8: float(np.mean(per_step[4:8])),
                      10: float(np.mean(per_step[8:10]))}


# --- fused EMA ----------------------------------------------------------------------------------


def _tiny_models() -> list[nn.Module]:
    torch.manual_seed(0)
    small = nn.Sequential(nn.Linear(5, 7), nn.LayerNorm(7), nn.GELU(), nn.Linear(7, 3))
    net = NeutrinoModel(ModelConfig(d_model=16, n_blocks=1, n_heads=2, d_head=16,
                                    head_blocks=1))
    return [small, net]


@pytest.mark.parametrize("which", [0, 1])
def test_foreach_ema_equals_the_per_parameter_formula(which: int) -> None:
    model = _tiny_models()[which]
    ema = copy.deepcopy(model)
    with torch.no_grad():
        for e in ema.parameters():
            e.uniform_(-0.5, 0.5)
    ref = {k: v.detach().clone() for k, v in ema.named_parameters()}
    gen = torch.Generator().manual_seed(1)
    for decay in (0.0, 0.5, 0.9, 0.999, 0.9):
        with torch.no_grad():  # new weights in [-0.5, 0.5] (float32 spacing <= 3e-8)
            for p in model.parameters():
                p.copy_(torch.rand(p.shape, generator=gen) - 0.5)
        ema_update(ema, model, decay)
        params = dict(model.named_parameters())
        for k in ref:
            ref[k] = decay * ref[k] + (1.0 - decay) * params[k].detach()
        for k, e in ema.named_parameters():
            torch.testing.assert_close(e.detach(), ref[k], rtol=0.0, atol=1e-7)
    assert all(p.grad is None for p in ema.parameters())


def test_foreach_ema_is_bitwise_the_old_per_parameter_update() -> None:
    """Same roundings as ``e.mul_(decay).add_(p, alpha=1 - decay)``: resumed runs and saved
    models are unchanged by the fused version."""
    model = _tiny_models()[1]
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5).add_(0.25)
    ema = copy.deepcopy(_tiny_models()[1])
    old = copy.deepcopy(ema)
    ema_update(ema, model, 0.937)
    with torch.no_grad():
        for e, p in zip(old.parameters(), model.parameters(), strict=True):
            e.mul_(0.937).add_(p, alpha=1.0 - 0.937)
    assert all(torch.equal(a, b) for a, b in zip(ema.parameters(), old.parameters(),
                                                 strict=True))


def test_ema_refuses_mismatched_models() -> None:
    with pytest.raises(ValueError, match="parameters"):
        ema_update(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), 0.9)
