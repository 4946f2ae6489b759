r"""Private helpers shared by the split transforms: stable SHA-256 seeding,
checksums, domain resolution and building the ``(train, val, test)`` outputs
from edge selections (project convention 2).

Output layout of every split (all three graphs):

* ``interacts.edge_index`` holds the TRAINING edges only, with their
  ``rating``/``time``/``behavior``/``edge_weight``; the ``split`` attribute is
  removed; ``rev_interacts``/``belongs_to``/``active_in`` are recomputed.
* ``data.split_name`` is ``'train'``, ``'val'`` or ``'test'``.
* train: ``edge_label_index`` = training edges, ``edge_label`` = rating (or ones).
* val/test: ``edge_label_index`` = held-out pairs (in input edge order),
  ``edge_label`` = rating (or ones), ``edge_label_time`` when times exist and,
  when the input carried shipped lists (``data.fixed_neg_edge``/``data.fixed_neg``),
  ``data.fixed_neg: long[R, N]`` aligned with the rows of ``edge_label_index``
  (a row of only ``PAD`` has no shipped list).
* metadata: ``split_rule`` (transform repr), ``split_seed``, ``input_checksum``.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from cdrgraph.data.build import add_derived_edges
from cdrgraph.data.schema import (
    DOMAIN,
    EDGE_ATTRS,
    INTERACTS,
    ITEM,
    PAD,
    USER,
    domain_names,
    validate,
)

#: supervision attributes of ``interacts`` that a split (re)defines
LABEL_KEYS = ('edge_label_index', 'edge_label', 'edge_label_time', 'edge_label_neg')
#: global attributes that belong to one split graph and are never inherited
SPLIT_GLOBAL_KEYS = ('split_name', 'fixed_neg', 'fixed_neg_edge', 'num_short_rows', 'num_fixed_neg_cleaned',
                     'num_fixed_neg_sampled_rows', 'candidates_rule')

SplitTuple = tuple[HeteroData, HeteroData, HeteroData]


# ----------------------------------------------------------------- seeding
def stable_seed(*parts: Any) -> int:
    r"""A 63-bit seed from a SHA-256 hash of ``parts`` (never Python's
    :func:`hash`, so it does not depend on ``PYTHONHASHSEED`` or the process)."""
    payload = json.dumps([str(p) for p in parts], separators=(',', ':')).encode('utf-8')
    return int.from_bytes(hashlib.sha256(payload).digest()[:8], 'big') & (2**63 - 1)


def make_generator(*parts: Any) -> torch.Generator:
    r"""A CPU :class:`torch.Generator` seeded with :func:`stable_seed` of ``parts``."""
    g = torch.Generator()
    g.manual_seed(stable_seed(*parts))
    return g


def round_half_up(x: float) -> int:
    r"""``floor(x + 0.5)`` (with a tolerance for floating-point noise); unlike
    Python's :func:`round` it never rounds half to even."""
    return int(math.floor(x + 0.5 + 1e-9))


# --------------------------------------------------------------- checksums
def tensor_bytes(t: Tensor) -> bytes:
    r"""Raw little-endian bytes of a CPU tensor (int64 for integer tensors)."""
    t = t.detach().cpu()
    if not t.is_floating_point() and t.dtype != torch.bool:
        t = t.to(torch.int64)
    return t.contiguous().numpy().tobytes()


def sha256_tensors(*tensors: Tensor | None) -> str:
    r"""SHA-256 hex digest over the shapes and bytes of ``tensors`` (``None`` skipped)."""
    h = hashlib.sha256()
    for t in tensors:
        if t is None:
            h.update(b'none')
            continue
        h.update(str(tuple(t.shape)).encode())
        h.update(tensor_bytes(t))
    return h.hexdigest()


def edges_checksum(data: HeteroData) -> str:
    r"""SHA-256 of a graph's input edges: ``interacts.edge_index``, its given
    ``split`` (if any), ``item.domain`` and the number of users."""
    store = data[INTERACTS]
    return sha256_tensors(torch.tensor([int(data[USER].num_nodes)]), data[ITEM].domain, store.edge_index,
                          getattr(store, 'split', None))


# ------------------------------------------------------------------ domains
def resolve_domain(data: HeteroData, domain: int | str, what: str = 'domain') -> int:
    r"""Index of ``domain`` given as an index or a name of ``data.domain_names``."""
    names = domain_names(data)
    if isinstance(domain, bool):
        raise TypeError(f'{what} must be a domain index or name, got {domain!r}')
    if isinstance(domain, int):
        if not 0 <= domain < len(names):
            raise ValueError(f'{what}={domain} is out of range: the graph has {len(names)} domains {names}')
        return int(domain)
    if isinstance(domain, str):
        if domain not in names:
            raise ValueError(f'{what}={domain!r} is not a domain of the graph; known domains: {names}')
        return names.index(domain)
    raise TypeError(f'{what} must be a domain index (int) or name (str), got {type(domain).__name__}')


def pair_domain_keys(data: HeteroData, edge_index: Tensor) -> Tensor:
    r"""``user * K + item.domain[item]``: one key per (user, domain) group."""
    k = int(data[DOMAIN].num_nodes)
    return edge_index[0] * k + data[ITEM].domain[edge_index[1]]


def group_positions(group: Tensor, order: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r"""Sort edges by ``(group, order)`` (stable) and return ``(perm, rank,
    size)``: ``perm`` the sorted edge indices, ``rank[j]`` the 0-based position
    of ``perm[j]`` inside its group and ``size[j]`` that group's size."""
    perm = torch.sort(order, stable=True).indices
    perm = perm[torch.sort(group[perm], stable=True).indices]
    g = group[perm]
    _, inverse, counts = torch.unique_consecutive(g, return_inverse=True, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(g.numel()) - starts[inverse]
    return perm, rank, counts[inverse]


def ordered_groups(data: HeteroData, order: str, seed: int, owner: str,
                   alternatives: str) -> tuple[Tensor, Tensor, Tensor]:
    r""":func:`group_positions` of the ``interacts`` edges grouped by
    (user, domain) and ordered by ``order``: ``'time'`` (``interacts.time``,
    ties in edge order), ``'file'`` (edge order) or anything else for a
    seeded random order (:func:`make_generator` of ``owner`` and ``seed``).

    ``alternatives`` names the other orders in the error raised when
    ``order='time'`` and the graph has no times (e.g. ``"order='random'"``).
    """
    ei = data[INTERACTS].edge_index
    num_edges = ei.size(1)
    if order == 'time':
        time = getattr(data[INTERACTS], 'time', None)
        if time is None:
            raise ValueError(f"{owner}(order='time'): data[{INTERACTS}].time is missing; use {alternatives} "
                             "or build the graph with time='<column>'")
        keys = time.long()
    elif order == 'file':
        keys = torch.arange(num_edges)
    else:
        keys = torch.randperm(num_edges, generator=make_generator(owner, seed))
    # group_positions sorts stably: time ties keep edge order
    return group_positions(pair_domain_keys(data, ei), keys)


def as_split_tuple(data: Any, who: str) -> SplitTuple:
    if not (isinstance(data, (tuple, list)) and len(data) == 3
            and all(isinstance(d, HeteroData) for d in data)):
        raise TypeError(f'{who} expects a (train, val, test) tuple of HeteroData as returned by a split '
                        f'transform, got {type(data).__name__}')
    return tuple(data)  # type: ignore[return-value]


# ------------------------------------------------------------ graph builders
def unwrap_names(data: HeteroData) -> None:
    if getattr(data, 'domain_names', None) is not None:
        data.domain_names = domain_names(data)


def train_base(data: HeteroData, keep: Tensor) -> HeteroData:
    r"""Shallow copy of ``data`` whose ``interacts`` keeps the edges selected
    by ``keep`` (bool mask or index) with their attributes; the ``split``
    attribute, supervision attributes and per-split global keys are removed
    and the derived edges recomputed. ``data`` is not modified."""
    out = copy.copy(data)
    store = out[INTERACTS]
    num_edges = store.edge_index.size(1)
    if keep.dtype == torch.bool:
        keep = keep.nonzero().view(-1)
    store.edge_index = store.edge_index[:, keep]
    for key in EDGE_ATTRS:
        val = getattr(store, key, None)
        if val is None:
            continue
        if key == 'split':
            del store[key]
        else:
            store[key] = val[keep]
    for key in LABEL_KEYS:
        if key in store:
            del store[key]
    for key in list(store.keys()):
        val = store[key]
        if key != 'edge_index' and isinstance(val, Tensor) and val.dim() >= 1 and val.size(0) == num_edges \
                and key not in EDGE_ATTRS:
            warnings.warn(f"data[{INTERACTS}].{key}: unknown edge-aligned attribute dropped by the split; "
                          f"only {EDGE_ATTRS} are carried", stacklevel=5)
            del store[key]
    for key in SPLIT_GLOBAL_KEYS:
        if key in out._global_store:
            del out._global_store[key]
    unwrap_names(out)
    add_derived_edges(out)
    return out


def labels_of(data: HeteroData, idx: Tensor) -> dict[str, Tensor]:
    r"""Supervision attributes for the ``interacts`` edges ``idx`` of ``data``."""
    store = data[INTERACTS]
    rating = getattr(store, 'rating', None)
    out = {'edge_label_index': store.edge_index[:, idx],
           'edge_label': rating[idx].float() if rating is not None else torch.ones(idx.numel())}
    time = getattr(store, 'time', None)
    if time is not None:
        out['edge_label_time'] = time[idx]
    return out


def finish(base: HeteroData, name: str, labels: dict[str, Any], extra: dict[str, Any] | None = None,
           check: bool = True) -> HeteroData:
    r"""Copy of ``base`` with ``split_name``, supervision ``labels`` (keys of
    :data:`LABEL_KEYS` go to ``interacts``, others to the global store) and
    global ``extra`` attributes; validated."""
    out = copy.copy(base)
    out.split_name = name
    store = out[INTERACTS]
    for key, val in labels.items():
        if key in LABEL_KEYS:
            store[key] = val
        else:
            setattr(out, key, val)
    for key, val in (extra or {}).items():
        setattr(out, key, val)
    if check:
        validate(out)
    return out


def train_labels(base: HeteroData) -> dict[str, Tensor]:
    store = base[INTERACTS]
    return labels_of(base, torch.arange(store.edge_index.size(1)))


def carry_fixed_lists(data: HeteroData, idx: Tensor) -> Tensor | None:
    r"""Shipped lists (convention 1) of the held-out edges ``idx``:
    ``long[len(idx), N]`` aligned with them; rows without a list are ``PAD``;
    :obj:`None` when no held-out edge has a list."""
    edge = getattr(data, 'fixed_neg_edge', None)
    lists = getattr(data, 'fixed_neg', None)
    if edge is None or lists is None:
        return None
    num_edges = data[INTERACTS].edge_index.size(1)
    pos = torch.full((num_edges,), -1, dtype=torch.long)
    pos[idx] = torch.arange(idx.numel())
    row = pos[edge]
    has = row >= 0
    if not has.any():
        return None
    out = torch.full((idx.numel(), lists.size(1)), PAD, dtype=torch.long)
    out[row[has]] = lists[has].long()
    return out


def check_fixed_lists(data: HeteroData) -> None:
    edge = getattr(data, 'fixed_neg_edge', None)
    lists = getattr(data, 'fixed_neg', None)
    if (edge is None) != (lists is None):
        raise ValueError('data.fixed_neg_edge and data.fixed_neg must be given together (convention 1: '
                         'fixed_neg_edge long[R] indexes interacts edges, fixed_neg long[R, N] item ids)')
    if edge is None:
        return
    num_edges = data[INTERACTS].edge_index.size(1)
    if edge.dim() != 1 or lists.dim() != 2 or lists.size(0) != edge.numel():
        raise ValueError(f'data.fixed_neg: shape {tuple(lists.shape)} does not match data.fixed_neg_edge '
                         f'{tuple(edge.shape)}; expected long[R, N] and long[R]')
    bad = (edge < 0) | (edge >= num_edges)
    if bad.any():
        raise ValueError(f'data.fixed_neg_edge: {int(bad.sum())} entries outside [0, {num_edges}) '
                         f'(e.g. {int(edge[bad][0])}); they must index interacts edges')
    if torch.unique(edge).numel() != edge.numel():
        raise ValueError('data.fixed_neg_edge: an interacts edge has more than one shipped list')


def split_by_index(data: HeteroData, train_idx: Tensor, val_idx: Tensor, test_idx: Tensor,
                   meta: dict[str, Any], who: str) -> SplitTuple:
    r"""The common path of the edge-partitioning splits: training edges
    ``train_idx`` and held-out edges ``val_idx``/``test_idx`` of ``data``
    (each sorted ascending) -> ``(train, val, test)`` per convention 2.
    ``meta`` is stored on all three graphs."""
    check_fixed_lists(data)
    meta = dict(meta)
    meta.setdefault('input_checksum', edges_checksum(data))
    base = train_base(data, train_idx)
    for key, val in meta.items():
        setattr(base, key, val)
    dropped_lists = 0
    edge = getattr(data, 'fixed_neg_edge', None)
    if edge is not None:
        in_train = torch.isin(edge, train_idx)
        dropped_lists = int(in_train.sum())
        if dropped_lists:
            warnings.warn(f'{who}: {dropped_lists} shipped negative lists (data.fixed_neg) belong '
                          'to edges that '
                          'are training edges of this split; they are dropped (count in '
                          'data.num_dropped_fixed_neg)', stacklevel=4)
        base.num_dropped_fixed_neg = dropped_lists
    train = finish(base, 'train', train_labels(base))
    outs = []
    for name, idx in (('val', val_idx), ('test', test_idx)):
        labels: dict[str, Any] = labels_of(data, idx)
        fixed = carry_fixed_lists(data, idx)
        if fixed is not None:
            labels['fixed_neg'] = fixed
        outs.append(finish(base, name, labels))
    return train, outs[0], outs[1]


def check_same_base(splits: Sequence[HeteroData], who: str) -> None:
    tr = splits[0][INTERACTS].edge_index
    for s in splits[1:]:
        if not torch.equal(s[INTERACTS].edge_index, tr):
            raise ValueError(f'{who}: the three graphs of the split tuple have different training edges; '
                             'pass the (train, val, test) tuple returned by one split transform')
