r"""Pieces shared by the cached-CSR fast paths of :class:`BipartiteLGConv` and
:class:`ItemGraphConv`: the sparse-dense product and the pickling rules of the
cache."""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor


def spmm(adj: Tensor, x: Tensor) -> Tensor:
    r"""``adj @ x`` for a CSR ``adj``: on the CPU through
    ``torch.sparse.mm(adj, x, reduce='sum')`` (PyTorch's row-parallel
    ``spmm_reduce`` kernel: 1.3× faster than ``adj @ x`` for the item→user
    direction of a 100k × 50k, 2M-edge graph, measured on 2 cores), elsewhere
    ``adj @ x``."""
    x = x.contiguous()
    if x.device.type == 'cpu' and x.dtype in (torch.float32, torch.float64):
        return torch.sparse.mm(adj, x, 'sum')
    return adj @ x


class CSRCacheMixin:
    r"""A layer whose ``_cache`` attribute holds sparse CSR matrices, which
    cannot be pickled or deep-copied: both drop the cache (it is rebuilt on
    the next forward)."""

    _cache: Any

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state['_cache'] = None
        return state

    def __deepcopy__(self, memo: dict) -> Any:
        cache, self._cache = self._cache, None
        try:
            cls = self.__class__
            new = cls.__new__(cls)
            memo[id(self)] = new
            for k, v in self.__dict__.items():
                setattr(new, k, copy.deepcopy(v, memo))
            return new
        finally:
            self._cache = cache
