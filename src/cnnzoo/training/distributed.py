"""Several processes under ``torchrun``: PyTorch's own DistributedDataParallel, nothing home-made.

``torchrun --nproc_per_node N -m cnnzoo train ...`` sets RANK, WORLD_SIZE and LOCAL_RANK; the
trainer reads them here (no flag needed) and:
- keeps ``--batch-size`` the *global* batch, each process taking its contiguous part of every batch
  (``BatchLoader(shard=...)``), so the learning rate that follows the batch size is the same and a
  run on N processes computes what one process would (up to float rounding and batch-norm statistics);
- averages batch-norm running statistics across processes before validating and saving (as timm's
  ``distribute_bn``: the CPU backend has no SyncBatchNorm), or synchronises them every step with
  ``--sync-bn`` where the backend supports it (NCCL);
- reduces validation sums exactly (every image counted once) and lets rank 0 alone print and write.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch import nn

from cnnzoo.errors import UserError
from cnnzoo.models import AuxiliaryHeads

# A peer that stops answering (killed, stuck) ends the job after this long instead of hanging it.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=10)


@dataclass(frozen=True)
class Processes:
    """This process's place in the job; one process (``world_size == 1``) when not under torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    restart: int = 0  # torchrun's restart count: > 0 after a worker died and the job was restarted

    @classmethod
    def from_env(cls) -> "Processes":
        env = os.environ
        if int(env.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        return cls(rank=int(env["RANK"]), world_size=int(env["WORLD_SIZE"]),
                   local_rank=int(env.get("LOCAL_RANK", "0")),
                   restart=int(env.get("TORCHELASTIC_RESTART_COUNT", "0")))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int]:
        return self.rank, self.world_size

    def device(self, device: torch.device) -> torch.device:
        """One GPU per process on a machine (``LOCAL_RANK``); the CPU is shared."""
        if self.enabled and device.type == "cuda":
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return device

    def start(self, device: torch.device) -> Optional[str]:
        """Join the process group (NCCL on GPUs, Gloo on CPUs); returns the backend, None alone."""
        if not self.enabled:
            return None
        backend = "nccl" if device.type == "cuda" else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
        return dist.get_backend()

    def stop(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every process (a small picklable object)."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def check_same(self, what: str, value: dict[str, Any]) -> None:
        """Raise the same :class:`UserError` on every process when ``value`` differs between them
        (other data, other options): training on would silently mix two different runs."""
        if not self.enabled:
            return
        values: list = [None] * self.world_size
        dist.all_gather_object(values, value)
        for rank, other in enumerate(values):
            differ = sorted(k for k in set(value) | set(other) if value.get(k) != other.get(k))
            if differ:
                raise UserError(f"the {self.world_size} processes disagree on the {what} "
                                f"({', '.join(differ)}: rank 0 has {[values[0].get(k) for k in differ]}, "
                                f"rank {rank} has {[other.get(k) for k in differ]}); start every process "
                                "with the same command and data")

    def mean_over_samples(self, metrics: dict[str, float], count: int) -> dict[str, float]:
        """Each metric (a mean over this process's ``count`` samples) as the mean over every sample."""
        if not self.enabled:
            return metrics
        keys = list(metrics)  # the same order in every process: they all hold the task's metrics
        # a process with no samples (a short validation set split N ways) adds nothing, not 0 x NaN
        sums = torch.tensor([metrics[k] * count if count else 0.0 for k in keys] + [float(count)],
                            dtype=torch.float64)
        dist.all_reduce(sums)
        total = max(sums[-1].item(), 1.0)
        return {k: sums[i].item() / total for i, k in enumerate(keys)}

    def average_batchnorm_statistics(self, model: nn.Module) -> None:
        """Make every process's BN running mean/var the average of all (before validating and saving)."""
        if not self.enabled:
            return
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
                for buffer in (module.running_mean, module.running_var):
                    if buffer is not None:  # both are there whenever track_running_stats is
                        dist.all_reduce(buffer)
                        buffer.div_(self.world_size)

    def wrap(self, model: nn.Module, device: torch.device, sync_bn: bool, log,
             learning_set_changes: bool = False) -> nn.Module:
        """The model as DistributedDataParallel sees it (forward and backward go through this).
        ``learning_set_changes``: some parameters stop or start taking gradients during training
        (gradual fine-tuning's frozen backbone), which DistributedDataParallel must be told, or it
        waits at the first step for gradients that the frozen parameters never produce."""
        if not self.enabled:
            return model
        if sync_bn:
            if dist.get_backend() == "nccl":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            else:
                log(f"--sync-bn: the {dist.get_backend()} backend has no SyncBatchNorm in this PyTorch; "
                    "averaging the running statistics before each validation instead")
        if isinstance(model, AuxiliaryHeads) and model.aux_logits:
            model = TrainingForward(model)
        # WaveNet's last residual convolution feeds nothing.
        unused = learning_set_changes or bool(getattr(model, "has_unused_parameters", False))
        return nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=unused)


class TrainingForward(nn.Module):
    """A model whose training pass is ``forward_train`` (GoogLeNet with its auxiliary heads returns
    ``(logits, aux_logits)`` there), seen through ``forward``: DistributedDataParallel runs and
    synchronises only what ``forward`` reaches, so without this the auxiliary heads would go
    untrained under torchrun while one process trains them."""

    def __init__(self, model: nn.Module):
        super().__init__()
        if not isinstance(model, AuxiliaryHeads):
            raise TypeError(f"{type(model).__name__} has no forward_train for TrainingForward to run")
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.model.forward_train(x)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model a forward pass runs, without the wrappers training adds under torchrun:
    DistributedDataParallel's (which holds it as ``.module``) and :class:`TrainingForward`."""
    model = getattr(model, "module", model)
    return model.model if isinstance(model, TrainingForward) else model
