"""Where the ML code runs: the torch device (:func:`resolve_device`) and, under ``torchrun``,
the process group (:class:`DistInfo`, :func:`init_distributed`).

Used by training (:mod:`ditau.ml.train`) and inference (:mod:`ditau.ml.infer`); imports no
other ditau module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DistInfo:
    """Rank, world size, local rank; ``enabled`` under torchrun (WORLD_SIZE > 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Initialise the process group from the environment under torchrun (WORLD_SIZE > 1;
    nccl on GPUs, gloo on CPUs); a single process gets the default :class:`DistInfo`."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), env_local_rank())


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


__all__ = ["DistInfo", "all_reduce", "env_local_rank", "init_distributed", "resolve_device"]
