r"""Derived views of the training interactions (MODELS.md §0.2).

Every helper reads the *training* edges of a graph: ``interacts.edge_index``
of a split graph (the split transforms keep only training edges there), or,
on a full graph that still carries the given-split attribute
``interacts.split``, the edges whose split code is :data:`~cdrgraph.data.TRAIN`.
All views are vectorised (no Python loop over users or items).

Domains may be given by index or by name (``data.domain_names``).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from cdrgraph.data.build import domain_item_ranges
from cdrgraph.data.schema import INTERACTS, ITEM, TRAIN, USER, domain_names, num_domains

__all__ = ['train_edge_mask', 'train_edge_index', 'train_csr', 'user_items', 'contexts', 'overlap_users',
           'is_cold', 'domain_index']

CONTEXT_ORDERS = ('sample', 'time', 'file')


# --------------------------------------------------------------------- helpers
def train_edge_mask(data: HeteroData) -> Tensor | None:
    r"""Boolean mask of the training edges in ``interacts.edge_index``, or
    :obj:`None` when every edge is a training edge (no ``split`` attribute)."""
    split = getattr(data[INTERACTS], 'split', None)
    if split is None:
        return None
    return split == TRAIN


def train_edge_index(data: HeteroData) -> Tensor:
    r"""``long[2, E_train]`` training ``(user, item)`` edges of ``data`` in
    their file order (see the module docstring)."""
    ei = data[INTERACTS].edge_index
    mask = train_edge_mask(data)
    return ei if mask is None else ei[:, mask]


def domain_index(data: HeteroData, domain: int | str) -> int:
    r"""Index of ``domain`` (an index or a name of ``data.domain_names``);
    raises :class:`ValueError` naming the valid choices otherwise."""
    names = domain_names(data)
    if isinstance(domain, str):
        if domain not in names:
            raise ValueError(f'unknown domain {domain!r}; the graph has domains {names}')
        return names.index(domain)
    k = int(domain)
    if not 0 <= k < len(names):
        raise ValueError(f'domain index {k} is out of range; the graph has {len(names)} domains {names}')
    return k


def _csr(rows: Tensor, cols: Tensor, num_rows: int) -> tuple[Tensor, Tensor, Tensor]:
    r"""Sort ``(rows, cols)`` by row then column; return ``(rowptr, col, perm)``."""
    key = rows * (int(cols.max()) + 1 if cols.numel() else 1) + cols
    perm = torch.argsort(key)
    rowptr = torch.zeros(num_rows + 1, dtype=torch.long)
    rowptr[1:] = torch.cumsum(torch.bincount(rows, minlength=num_rows), 0)
    return rowptr, cols[perm], perm


# ------------------------------------------------------------------- the views
def train_csr(data: HeteroData, domain: int | str | None = None) -> Tensor:
    r"""Training interactions as a :obj:`torch.sparse_csr` matrix of ones.

    With ``domain=None`` the shape is ``[U, I]`` over all item nodes. With a
    domain ``k`` the shape is ``[U, I_k]`` and column ``j`` is the item node
    ``start_k + j``, where ``(start_k, end_k) = domain_item_ranges(data)[k]``
    (items of a domain are contiguous).

    Args:
        data (HeteroData): a cdrgraph graph.
        domain (int or str, optional): restrict to one domain.
            (default: :obj:`None`)

    Example:
        >>> csr = train_csr(data, domain='Sport')
        >>> csr.to_dense()[u]   # 1.0 at the Sport items (minus start_k) u trained on
    """
    ei = train_edge_index(data)
    num_users = int(data[USER].num_nodes)
    num_items = int(data[ITEM].num_nodes)
    offset, width = 0, num_items
    if domain is not None:
        k = domain_index(data, domain)
        start, end = domain_item_ranges(data)[k]
        keep = data[ITEM].domain[ei[1]] == k
        ei = ei[:, keep]
        offset, width = start, end - start
    rowptr, col, _ = _csr(ei[0], ei[1] - offset, num_users)
    values = torch.ones(col.numel())
    with warnings.catch_warnings():   # "sparse CSR support is in beta"
        warnings.simplefilter('ignore', UserWarning)
        return torch.sparse_csr_tensor(rowptr, col, values, size=(num_users, width), check_invariants=False)


def user_items(data: HeteroData, domain: int | str | None = None) -> tuple[Tensor, Tensor]:
    r"""Training items of every user as a CSR pair ``(rowptr, items)``.

    The training items of user ``u`` are ``items[rowptr[u]:rowptr[u + 1]]``
    (global item node ids, ascending).

    Args:
        data (HeteroData): a cdrgraph graph.
        domain (int or str, optional): only items of this domain.
            (default: :obj:`None`)

    Returns:
        ``rowptr: long[U + 1]`` and ``items: long[E]``.

    Example:
        >>> rowptr, items = user_items(data)
        >>> items[rowptr[0]:rowptr[1]]   # training items of user 0
    """
    ei = train_edge_index(data)
    if domain is not None:
        ei = ei[:, data[ITEM].domain[ei[1]] == domain_index(data, domain)]
    rowptr, col, _ = _csr(ei[0], ei[1], int(data[USER].num_nodes))
    return rowptr, col


def contexts(data: HeteroData, domain: int | str, max_len: int, order: str = 'sample',
             seed: int = 0) -> tuple[Tensor, Tensor]:
    r"""Up to ``max_len`` training items of every user in one domain, padded
    (MODELS.md §0.2, ``contexts(k, M, order)``).

    Row ``u`` holds items of :math:`N_k(u)` (global item node ids) in its
    first ``min(|N_k(u)|, M)`` slots; the remaining slots hold ``0`` and are
    ``False`` in the mask (padding rule: never detect padding by value).

    * ``order='sample'``: a uniformly random subset of size ``min(|N_k(u)|, M)``
      in random order, a pure function of ``seed``.
    * ``order='time'``: the ``M`` most recent items by ``interacts.time``
      (ties by file order), oldest first.
    * ``order='file'``: the last ``M`` items in the order of
      ``interacts.edge_index``, in that order.

    Args:
        data (HeteroData): a cdrgraph graph.
        domain (int or str): the domain ``k``.
        max_len (int): ``M``.
        order (str, optional): ``'sample'``, ``'time'`` or ``'file'``.
            (default: :obj:`'sample'`)
        seed (int, optional): seed of ``order='sample'``. (default: :obj:`0`)

    Returns:
        ``index: long[U, M]`` and ``mask: bool[U, M]``.

    Example:
        >>> index, mask = contexts(data, 'Sport', max_len=20, order='time')
        >>> index[mask]   # the real context items
    """
    if order not in CONTEXT_ORDERS:
        raise ValueError(f'contexts(order={order!r}): order must be one of {CONTEXT_ORDERS}')
    if int(max_len) < 1:
        raise ValueError(f'contexts(max_len={max_len}): max_len must be >= 1')
    k = domain_index(data, domain)
    num_users = int(data[USER].num_nodes)
    mask_train = train_edge_mask(data)
    ei = data[INTERACTS].edge_index
    pos = torch.arange(ei.size(1))
    if mask_train is not None:
        ei, pos = ei[:, mask_train], pos[mask_train]
    keep = data[ITEM].domain[ei[1]] == k
    ei, pos = ei[:, keep], pos[keep]

    # order inside each user's segment: sort by the key, then stably by user
    if order == 'sample':
        gen = torch.Generator().manual_seed(int(seed))
        perm = torch.randperm(ei.size(1), generator=gen)
    elif order == 'time':
        time = getattr(data[INTERACTS], 'time', None)
        if time is None:
            raise ValueError("contexts(order='time'): data[('user', 'interacts', 'item')].time is missing; "
                             "use order='file' or build the graph with from_interactions(..., time=...)")
        perm = torch.argsort(time[pos], stable=True)   # ties keep file order
    else:
        perm = torch.arange(ei.size(1))
    perm = perm[torch.argsort(ei[0, perm], stable=True)]
    users, items = ei[0, perm], ei[1, perm]

    count = torch.bincount(users, minlength=num_users)
    start = torch.cumsum(count, 0) - count
    rank = torch.arange(users.numel()) - start[users]
    m = int(max_len)
    if order == 'sample':
        slot = rank
    else:  # keep the last M of each segment
        slot = rank - (count[users] - m).clamp(min=0)
    sel = (slot >= 0) & (slot < m)
    index = torch.zeros(num_users, m, dtype=torch.long)
    mask = torch.zeros(num_users, m, dtype=torch.bool)
    index[users[sel], slot[sel]] = items[sel]
    mask[users[sel], slot[sel]] = True
    return index, mask


def _user_domain_counts(data: HeteroData) -> Tensor:
    r"""``long[U, K]`` number of training edges per user and domain."""
    ei = train_edge_index(data)
    k = num_domains(data)
    num_users = int(data[USER].num_nodes)
    key = ei[0] * k + data[ITEM].domain[ei[1]]
    return torch.bincount(key, minlength=num_users * k).view(num_users, k)


def overlap_users(data: HeteroData, d1: int | str, d2: int | str) -> Tensor:
    r"""``long[O]`` ascending ids of the users with at least one training edge
    in both domains ``d1`` and ``d2``.

    Example:
        >>> overlap_users(data, 'Sport', 'Cloth')
    """
    counts = _user_domain_counts(data)
    a, b = domain_index(data, d1), domain_index(data, d2)
    return ((counts[:, a] > 0) & (counts[:, b] > 0)).nonzero().view(-1)


def is_cold(data: HeteroData, users: Tensor | np.ndarray | list[int], domain: int | str) -> Tensor:
    r"""``bool[B]``: ``True`` where the user has no training edge in ``domain``.

    Example:
        >>> is_cold(data, torch.tensor([0, 5]), 'Cloth')
    """
    users = torch.as_tensor(users, dtype=torch.long)
    num_users = int(data[USER].num_nodes)
    if users.numel() and (int(users.min()) < 0 or int(users.max()) >= num_users):
        raise ValueError(f'is_cold: user ids must lie in [0, {num_users}), got range '
                         f'[{int(users.min())}, {int(users.max())}]')
    counts = _user_domain_counts(data)[:, domain_index(data, domain)]
    return counts[users] == 0
