r"""Multi-process training with PyTorch's own distributed engine (issue 9).

``torchrun --nproc_per_node=N -m cdrgraph train CONFIG`` starts ``N``
processes; :func:`init_distributed` joins them into one process group
(``gloo`` on CPU, ``nccl`` on CUDA) from torchrun's environment variables.
Inside :func:`cdrgraph.train.fit` every rank then

* draws the same global batch (same ``(seed, epoch)`` stream) and keeps its
  contiguous shard of it (:class:`~cdrgraph.loader.CDRLinkLoader`'s
  ``num_replicas``/``rank``),
* trains the model wrapped in
  :class:`~torch.nn.parallel.DistributedDataParallel`, with its shard's loss
  weighted by ``n_rank * world_size / n_global``, so that DDP's gradient
  average is the gradient of the global batch's mean loss,
* evaluates the users ``u`` with ``u % world_size == rank`` and merges the
  metric accumulators of all ranks (:class:`~cdrgraph.metrics.Evaluator`'s
  ``distributed=True``), so every rank sees the metrics of the whole split
  and takes the same early-stopping decisions,
* and only rank 0 writes checkpoints, results and progress bars.

With the same global batch and seed, the trained parameters equal those of
a single-process run up to floating-point summation order (tested).
"""
from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

__all__ = ['init_distributed', 'is_distributed', 'get_rank', 'get_world_size', 'is_main_process', 'barrier',
           'all_gather_object', 'all_reduce_sum', 'env_world_size', 'wrap_ddp']


def env_world_size() -> int:
    r"""``WORLD_SIZE`` of the environment (set by ``torchrun``), 1 without it."""
    try:
        return int(os.environ.get('WORLD_SIZE', '1'))
    except ValueError:
        raise ValueError(f"WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} is not an integer; launch with "
                         'torchrun --nproc_per_node=N') from None


def init_distributed(device: str | torch.device = 'cpu', backend: str | None = None,
                     timeout_s: float = 1800.0) -> str:
    r"""Join the process group described by torchrun's environment
    (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``)
    and return this rank's device. Without ``WORLD_SIZE > 1`` nothing
    happens and ``device`` is returned unchanged; an already initialised
    group is reused.

    Args:
        device (str or torch.device, optional): ``'cpu'`` or ``'cuda'``; a
            CUDA device becomes ``cuda:<LOCAL_RANK>``. (default: :obj:`'cpu'`)
        backend (str, optional): ``'gloo'`` or ``'nccl'``. (default:
            ``'nccl'`` for CUDA, ``'gloo'`` otherwise)
        timeout_s (float, optional): collective timeout. (default: :obj:`1800`)

    Example:
        >>> device = init_distributed('cuda')   # under torchrun: 'cuda:0', 'cuda:1', ...
    """
    device = str(device)
    if env_world_size() <= 1:
        return device
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    cuda = device.startswith('cuda')
    if cuda:
        if not torch.cuda.is_available():
            raise RuntimeError(f'--device {device} under torchrun but CUDA is not available on this machine; '
                               'use --device cpu (gloo)')
        torch.cuda.set_device(local_rank)
        device = f'cuda:{local_rank}'
    if not dist.is_available():
        raise RuntimeError('torch.distributed is not available in this PyTorch build; run one process')
    if not dist.is_initialized():
        dist.init_process_group(backend or ('nccl' if cuda else 'gloo'), timeout=timedelta(seconds=timeout_s))
    return device


def is_distributed() -> bool:
    r"""Whether a process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    r"""This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    r"""Number of processes (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    r"""Whether this process writes files (rank 0, or no process group)."""
    return get_rank() == 0


def barrier() -> None:
    r"""Wait for every rank (no-op without a process group)."""
    if is_distributed():
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    r"""``[obj of rank 0, obj of rank 1, ...]`` (``[obj]`` without a process group)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(values: list[float] | list[int], device: str | torch.device = 'cpu') -> list[float]:
    r"""Element-wise sum of ``values`` over ranks, as float64 (identity without a process group)."""
    if not is_distributed():
        return [float(v) for v in values]
    if dist.get_backend() == 'nccl':
        device = torch.device('cuda', torch.cuda.current_device())
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


class _StageLoss(torch.nn.Module):
    r"""``forward(batch, stage) = model.loss(batch, stage)``, the module that
    :class:`~torch.nn.parallel.DistributedDataParallel` wraps in
    :func:`cdrgraph.train.fit` (DDP synchronises the gradients of what its
    ``forward`` computed)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any, stage: str) -> torch.Tensor:
        return self.model.loss(batch, stage)


def wrap_ddp(model: torch.nn.Module) -> torch.nn.Module:
    r"""``model.loss`` behind :class:`~torch.nn.parallel.DistributedDataParallel`:
    call the result as ``ddp(batch, stage)``. Rank 0's parameters and
    buffers are broadcast to every rank; parameters a stage does not use get
    zero gradients (``find_unused_parameters=True``). Models with
    sparse-gradient embeddings are refused (DDP's gradient buckets are
    dense)."""
    sparse = [name for name, m in model.named_modules()
              if isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag)) and m.sparse]
    if sparse:
        raise ValueError(f'{model.__class__.__name__}: distributed training needs dense gradients, but '
                         f'{sparse} use sparse=True; build the model with sparse=False')
    from torch.nn.parallel import DistributedDataParallel
    return DistributedDataParallel(_StageLoss(model), find_unused_parameters=True)
