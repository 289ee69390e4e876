"""Training on several processes: ``torchrun --nproc-per-node N -m facial_emotion train ...``.

torchrun sets RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT; ``from_environment`` joins the process
group (gloo: the training loop runs on the CPU) and a plain ``python -m facial_emotion train`` stays a
single process that never touches torch.distributed, so its results stay bit-for-bit those of before.

How the work is shared (training/loop.py): every rank holds the whole dataset and draws the same
epoch order; each global batch of ``batch_size`` faces is dealt out, rank r taking faces r, r+N,
r+2N...; DistributedDataParallel averages the gradients, so the optimiser, the learning-rate schedule
and the steps per epoch are those of one process with the same batch size. Augmentation draws from a
generator seeded by (seed, epoch, rank). BatchNorm statistics are per rank (PyTorch's SyncBatchNorm
is GPU-only): a step equals the single-process step on the same faces up to that. Rank 0 alone
validates, writes logs and checkpoints, and exports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """The rank that validates, logs, saves and exports."""
        return self.rank == 0

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module to train: ``model`` itself alone, its DistributedDataParallel wrapper (which
        averages gradients across ranks) under torchrun. Checkpoints keep saving ``model``."""
        if self.world == 1:
            return model
        return torch.nn.parallel.DistributedDataParallel(model)

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's part of a global batch of indices."""
        return batch if self.world == 1 else batch[self.rank :: self.world]

    def generator_seed(self, seed: int) -> int:
        """Per-rank seed of the augmentation draws (rank 0 of one process keeps ``seed`` itself)."""
        return seed if self.world == 1 else seed * 1_000 + self.rank

    def sum(self, values: list[float]) -> list[float]:
        """Each value summed over the ranks (epoch metrics)."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


SINGLE = Distributed()  # one process, no torch.distributed


def from_environment() -> Distributed:
    """The process's place in a torchrun job (one process without torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    if not dist.is_initialized():
        dist.init_process_group("gloo")  # CPU tensors; nccl would need the loop on CUDA devices
    return Distributed(dist.get_rank(), dist.get_world_size())


def close(d: Distributed) -> None:
    if d.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
