"""Data-parallel training over several processes (one per GPU), launched by ``torchrun``.

``torchrun --nproc-per-node N -m prismrec train RUN_DIR --device cuda`` starts N copies of
the trainer; torchrun's ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` select this mode, nothing else
changes. Every process walks the same global batches and trains on its 1/N slice of each
(so steps per epoch, the learning-rate schedule and a checkpoint's position are exactly those
of a one-process run with the same ``batch_size``); DistributedDataParallel averages the
gradients. Validation users are split between the replicas too. Rank 0 alone writes files,
and its clock and decisions are the run's: the others receive them by broadcast, so every
replica takes the same steps.
On CPUs the gloo backend runs the same code (that is how the tests check it).
"""

from __future__ import annotations

import datetime
import inspect
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from prismrec.errors import PrismrecError

# rank 0 writes checkpoints while the others wait in a broadcast: allow slow disks and CPUs
WAIT_FOR_RANK0 = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "DistributedContext":
        """The process's place in a torchrun launch; one process (world size 1) otherwise."""
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError as e:
            raise PrismrecError(f"WORLD_SIZE / RANK / LOCAL_RANK: expected integers (set by torchrun): {e}") from None
        if world < 1 or not 0 <= rank < world:
            raise PrismrecError(f"RANK {rank} / WORLD_SIZE {world}: expected 0 <= RANK < WORLD_SIZE")
        return cls(rank, world, local)

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """Each process drives its own GPU (``cuda`` -> ``cuda:LOCAL_RANK``)."""
        if self.active and device.type == "cuda":
            if self.local_rank >= torch.cuda.device_count():
                raise PrismrecError(f"LOCAL_RANK {self.local_rank}: only {torch.cuda.device_count()} GPUs are visible")
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        return device

    def start(self, device: torch.device) -> None:
        if self.active and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=WAIT_FOR_RANK0)

    def stop(self) -> None:
        if self.active and dist.is_initialized():
            dist.destroy_process_group()

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The module the training step calls: DDP around the model when there are replicas.

        Buffers are not re-sent before each step: they are constant catalog tables (item
        features, SIDs), some of them megabytes, identical on every replica.
        """
        if not self.active:
            return model
        ddp = nn.parallel.DistributedDataParallel
        # torch 2.13 renamed the switch (the old name still works there, with a warning)
        no_sync = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(ddp).parameters
                   else "broadcast_buffers")
        return ddp(model, device_ids=[device.index] if device.type == "cuda" else None, **{no_sync: False})

    def shard(self, batch: np.ndarray) -> np.ndarray:
        """This process's contiguous 1/N of a global batch (sizes differ by at most one)."""
        return np.array_split(batch, self.world_size)[self.rank] if self.active else batch

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def broadcast_object(self, obj):
        """Rank 0's ``obj`` on every process (any picklable value)."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def broadcast_floats(self, values: list[float], device: torch.device) -> list[float]:
        """Rank 0's ``values`` on every process (a few floats: cheaper than a pickled object)."""
        if not self.active:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.broadcast(t, src=0)
        return t.tolist()

    def mean_floats(self, values: dict[str, float], device: torch.device) -> dict[str, float]:
        """Each value averaged over the processes (keys must be the same on all)."""
        if not self.active or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return dict(zip(keys, (t / self.world_size).tolist()))

    def gather(self, part: np.ndarray) -> np.ndarray:
        """Every process's ``part`` concatenated in rank order (shards of one array back in one piece)."""
        if not self.active:
            return part
        parts = [None] * self.world_size
        dist.all_gather_object(parts, part)
        return np.concatenate(parts)
