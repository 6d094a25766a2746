"""Where the ML code runs: the torch device (:func:`resolve_device`) and, under ``torchrun``,
the process group (:class:`DistInfo`, :func:`init_distributed`, :func:`close_distributed`).

Used by training (:mod:`ditau.ml.train`) and inference (:mod:`ditau.ml.infer`); imports no
other ditau module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DistInfo:
    """Rank, world size, local rank; ``enabled`` under torchrun (WORLD_SIZE > 1); ``owns_group``:
    :func:`init_distributed` created the process group (so :func:`close_distributed` ends it)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Initialise the process group from the environment under torchrun (WORLD_SIZE > 1;
    nccl on GPUs, gloo on CPUs); a single process gets the default :class:`DistInfo`.

    On CUDA the process's current GPU is set first (``device``'s index, the local rank's GPU
    for ``auto``/``cuda``), so that NCCL does not put every rank's communicator on GPU 0. An
    existing process group is used as is (and left to its owner to destroy).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    local_rank = env_local_rank()
    if device.type == "cuda":
        torch.cuda.set_device(local_rank if device.index is None else device.index)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, owns)


def close_distributed(info: DistInfo) -> None:
    """Destroy the process group if :func:`init_distributed` created it (else a no-op)."""
    if info.owns_group:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def env_local_rank() -> int:
    """The local rank torchrun sets (``LOCAL_RANK``; 0 outside torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA (the local rank's GPU) if available, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name}: CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
    return dev


def all_reduce(t: torch.Tensor, info: DistInfo) -> None:
    """Sum ``t`` in place over the processes (no-op for a single process)."""
    if info.enabled:
        import torch.distributed as dist

        dist.all_reduce(t)


__all__ = ["DistInfo", "all_reduce", "close_distributed", "env_local_rank", "init_distributed",
           "resolve_device"]
