"""Neural training on several processes (``torchrun --nproc_per_node N studio train neural …``).

Every process holds the whole network and every auto-decoder code, and draws the *whole* global
batch from the same random stream (same seed), then computes the losses of its own share of the
batch's identities only. The gradients — the network's and the codes' — are then averaged over the
processes with ``torch.distributed.all_reduce``: the reduction DistributedDataParallel performs,
done by hand because the head is called through ``planes()`` / ``sdf()`` / ``deform()`` rather than
one ``forward``, which DDP's hooks need. Every loss is a mean over the batch's rows, so the averaged
gradient is the single-process gradient of the same global batch and every process takes the same
Adam step: for the same seed and global batch the loss curve matches single-process training (up
to the order of floating-point sums). gloo on CPU, nccl on CUDA. Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from studio.core.errors import StudioError


@dataclass(frozen=True)
class Group:
    rank: int
    world: int

    def rows(self, n: int) -> torch.Tensor:
        """This process's rows of an n-row global batch (contiguous, as even as possible)."""
        if n < self.world:
            raise StudioError(f"a batch of {n} cannot be split over {self.world} processes; raise the batch size")
        bounds = [round(i * n / self.world) for i in range(self.world + 1)]
        return torch.arange(bounds[self.rank], bounds[self.rank + 1])

    @property
    def writer(self) -> bool:
        return self.rank == 0

    def average_gradients(self, params) -> None:
        """Average every parameter's gradient over the processes (in place)."""
        import torch.distributed as dist

        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(self.world)

    def mean_values(self, values: dict, total: float) -> tuple[dict, float]:
        """Logged loss terms averaged over the processes (each computed its share of the batch)."""
        import torch.distributed as dist

        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys] + [total], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= self.world
        return {k: float(v) for k, v in zip(keys, t[:-1])}, float(t[-1])

    def broadcast(self, tensors) -> None:
        """Rank 0's values everywhere (identical starts, whatever each process's RNG did before)."""
        import torch.distributed as dist

        with torch.no_grad():
            for t in tensors:
                dist.broadcast(t.data if hasattr(t, "data") else t, src=0)


def from_environment(device: torch.device) -> Group | None:
    """The process group torchrun describes in the environment (WORLD_SIZE > 1), joined; else None."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return None
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Group(dist.get_rank(), dist.get_world_size())
