r"""Node/edge type names of the cdrgraph heterogeneous graph and :func:`validate`.

Every dataset, split and model in cdrgraph speaks about one
:class:`~torch_geometric.data.HeteroData` layout (DESIGN.md §2):

.. code-block:: text

    user   : num_nodes [, x, x_cat]
    item   : num_nodes, domain: long[I] [, shared_id: long[I]] [, x, x_cat]
    domain : num_nodes = K
    (user, interacts, item)     edge_index [, rating, time, behavior, split, edge_weight]
                                [, edge_label_index, edge_label, edge_label_neg]   (supervision)
    (item, rev_interacts, user) reverse of interacts
    (item, belongs_to, domain)  from item.domain
    (user, active_in, domain)   from interacts, with ``count``
    data.domain_names : list[str]
    data.split_name   : 'train' | 'val' | 'test'   (set by split transforms)

Split codes of ``interacts.split`` (a dataset's *given* split) are
:data:`TRAIN`, :data:`VAL` and :data:`TEST`.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

USER = 'user'
ITEM = 'item'
DOMAIN = 'domain'
INTERACTS = (USER, 'interacts', ITEM)
REV_INTERACTS = (ITEM, 'rev_interacts', USER)
BELONGS_TO = (ITEM, 'belongs_to', DOMAIN)
ACTIVE_IN = (USER, 'active_in', DOMAIN)

#: codes of the ``interacts.split`` edge attribute (a dataset's given split)
TRAIN, VAL, TEST = 0, 1, 2
SPLIT_NAMES = {TRAIN: 'train', VAL: 'val', TEST: 'test'}

#: padding value of ``edge_label_neg`` rows that hold fewer than N candidates
PAD = -1

#: edge attributes of ``interacts`` aligned with ``edge_index``
EDGE_ATTRS = ('rating', 'time', 'behavior', 'split', 'edge_weight')


def _example(mask: Tensor, values: Tensor) -> Any:
    idx = mask.nonzero()
    if idx.numel() == 0:
        return None
    first = idx[0].tolist()
    return {'position': first[0] if len(first) == 1 else first,
            'value': values[tuple(first)].tolist() if values.dim() else values.item()}


def _fail(field: str, count: int, what: str, example: Any = None, fix: str = '') -> None:
    msg = f"{field}: {count} {what}"
    if example is not None:
        msg += f" (e.g. {example})"
    if fix:
        msg += f". {fix}"
    raise ValueError(msg)


def _pair_keys(edge_index: Tensor, num_items: int) -> Tensor:
    return edge_index[0].long() * max(int(num_items), 1) + edge_index[1].long()


def num_domains(data: HeteroData) -> int:
    r"""Number of domains of a cdrgraph graph (``data['domain'].num_nodes``)."""
    return int(data[DOMAIN].num_nodes)


def domain_names(data: HeteroData) -> list[str]:
    r"""Domain names of a graph; ``['d0', 'd1', ...]`` when the graph carries none."""
    names = getattr(data, 'domain_names', None)
    if names is None:
        return [f'd{k}' for k in range(num_domains(data))]
    # InMemoryDataset collation may wrap the list once
    if len(names) == 1 and isinstance(names[0], (list, tuple)):
        names = names[0]
    return list(names)


def validate(data: HeteroData, *, check_eval: bool = True) -> HeteroData:
    r"""Check that ``data`` follows the cdrgraph graph contract (DESIGN.md §2).

    Checks node counts, dtypes and index ranges, ``item.domain``, the reverse
    edges, duplicate training edges, that ``belongs_to``/``active_in`` agree
    with ``item.domain`` and the interactions, the edge attributes' lengths and
    values, and (``check_eval=True``) that no supervision pair in
    ``edge_label_index`` of a validation/test graph is a training edge and no
    candidate list holds a training item of its user or its own positive.

    Args:
        data (HeteroData): the graph.
        check_eval (bool, optional): also check evaluation pairs and candidate
            lists when present. (default: :obj:`True`)

    Returns:
        The same graph, so ``validate`` can be chained.

    Raises:
        ValueError: naming the field, the offending count and an example.

    Example:
        >>> from cdrgraph.data import from_interactions, validate
        >>> import pandas as pd
        >>> df = pd.DataFrame({'user': [0, 0, 1], 'item': [0, 1, 0], 'domain': ['a', 'a', 'b']})
        >>> data = validate(from_interactions(df))
    """
    for nt in (USER, ITEM, DOMAIN):
        if nt not in data.node_types:
            _fail(f"data['{nt}']", 1, 'missing node type', fix='build graphs with cdrgraph.data.from_interactions')
    num_users = int(data[USER].num_nodes or 0)
    num_items = int(data[ITEM].num_nodes or 0)
    k = int(data[DOMAIN].num_nodes or 0)
    if k < 1:
        _fail("data['domain'].num_nodes", k, 'domains', fix='a graph needs at least one domain')

    dom = getattr(data[ITEM], 'domain', None)
    if dom is None:
        _fail("data['item'].domain", 1, 'missing attribute', fix='every item needs the index of its domain')
    if dom.dtype != torch.long or dom.dim() != 1 or dom.numel() != num_items:
        _fail("data['item'].domain", dom.numel(), f'entries of dtype {dom.dtype}, expected long[{num_items}]')
    bad = (dom < 0) | (dom >= k)
    if bad.any():
        _fail("data['item'].domain", int(bad.sum()), f'values outside [0, {k})', _example(bad, dom))
    names = domain_names(data)
    if len(names) != k:
        _fail('data.domain_names', len(names), f'names for {k} domains')
    shared = getattr(data[ITEM], 'shared_id', None)
    if shared is not None:
        if shared.dtype != torch.long or shared.numel() != num_items:
            _fail("data['item'].shared_id", shared.numel(), f'entries, expected long[{num_items}]')
        if (shared < 0).any():
            _fail("data['item'].shared_id", int((shared < 0).sum()), 'negative values', _example(shared < 0, shared))

    if INTERACTS not in data.edge_types:
        _fail(f'data[{INTERACTS}]', 1, 'missing edge type')
    store = data[INTERACTS]
    ei = store.edge_index
    if ei.dtype != torch.long or ei.dim() != 2 or ei.size(0) != 2:
        _fail(f'data[{INTERACTS}].edge_index', ei.numel(), f'entries of shape {tuple(ei.shape)}/{ei.dtype}',
              fix='expected long[2, E]')
    for row, n, nt in ((0, num_users, USER), (1, num_items, ITEM)):
        bad = (ei[row] < 0) | (ei[row] >= n)
        if bad.any():
            _fail(f'data[{INTERACTS}].edge_index[{row}]', int(bad.sum()),
                  f'{nt} indices outside [0, {n})', _example(bad, ei[row]))
    num_edges = ei.size(1)
    for key in EDGE_ATTRS:
        val = getattr(store, key, None)
        if val is None:
            continue
        if val.size(0) != num_edges:
            _fail(f'data[{INTERACTS}].{key}', val.size(0), f'rows for {num_edges} edges')
        if val.is_floating_point() and not torch.isfinite(val).all():
            bad = ~torch.isfinite(val)
            _fail(f'data[{INTERACTS}].{key}', int(bad.sum()), 'non-finite values', _example(bad, val))
    split = getattr(store, 'split', None)
    if split is not None:
        bad = (split < TRAIN) | (split > TEST)
        if bad.any():
            _fail(f'data[{INTERACTS}].split', int(bad.sum()), f'values outside {{{TRAIN}, {VAL}, {TEST}}}',
                  _example(bad, split), fix='use 0 (train), 1 (val) or 2 (test)')
    for nt in (USER, ITEM):
        x_cat = getattr(data[nt], 'x_cat', None)
        if x_cat is None:
            continue
        vocab = getattr(data[nt], 'x_cat_vocab', None)
        bad = x_cat < 0
        if vocab is not None:
            bad = bad | (x_cat >= vocab.view(1, -1).to(x_cat.device))
        if bad.any():
            _fail(f"data['{nt}'].x_cat", int(bad.sum()), 'values outside [0, x_cat_vocab)',
                  _example(bad, x_cat), fix='a missing value is its own vocabulary entry (not negative)')
    keys = _pair_keys(ei, num_items)
    sorted_keys = torch.from_numpy(np.sort(keys.cpu().numpy()))
    if sorted_keys.numel() > 1 and bool((sorted_keys[1:] == sorted_keys[:-1]).any()):
        uniq, counts = torch.unique(keys, return_counts=True)
        dup = uniq[counts > 1]
        _fail(f'data[{INTERACTS}].edge_index', int((counts - 1).clamp(min=0).sum()), 'duplicate (user, item) edges',
              {'user': int(dup[0] // num_items), 'item': int(dup[0] % num_items)},
              fix='de-duplicate interactions (from_interactions(..., duplicates="drop") counts them)')

    if REV_INTERACTS in data.edge_types:
        rev = data[REV_INTERACTS].edge_index
        if rev.size(1) != num_edges or not torch.equal(
                torch.from_numpy(np.sort(_pair_keys(rev.flip(0), num_items).cpu().numpy())), sorted_keys):
            _fail(f'data[{REV_INTERACTS}].edge_index', abs(rev.size(1) - num_edges) or 1,
                  'edges differ from the reverse of interacts', fix='call cdrgraph.data.add_derived_edges(data)')
    if BELONGS_TO in data.edge_types:
        bt = data[BELONGS_TO].edge_index
        expected = torch.stack([torch.arange(num_items), dom])
        if bt.size(1) != num_items or not torch.equal(bt, expected):
            _fail(f'data[{BELONGS_TO}].edge_index', abs(bt.size(1) - num_items) or 1,
                  'edges disagree with item.domain', fix='call cdrgraph.data.add_derived_edges(data)')
    if ACTIVE_IN in data.edge_types:
        ai = data[ACTIVE_IN].edge_index
        pairs = torch.from_numpy(np.unique((ei[0] * k + dom[ei[1]]).cpu().numpy()))
        got = torch.from_numpy(np.sort((ai[0] * k + ai[1]).cpu().numpy()))
        if got.numel() != pairs.numel() or not torch.equal(got, pairs):
            _fail(f'data[{ACTIVE_IN}].edge_index', abs(got.numel() - pairs.numel()) or 1,
                  'edges disagree with the interactions', fix='call cdrgraph.data.add_derived_edges(data)')
        count = getattr(data[ACTIVE_IN], 'count', None)
        if count is not None:
            # ``count`` is aligned with ``active_in.edge_index`` (whatever its order)
            expected = torch.bincount(ei[0] * k + dom[ei[1]], minlength=num_users * k)[ai[0] * k + ai[1]]
            bad = count != expected
            if bad.any():
                _fail(f'data[{ACTIVE_IN}].count', int(bad.sum()), 'counts disagree with the interactions',
                      _example(bad, count), fix='call cdrgraph.data.add_derived_edges(data)')

    if check_eval and getattr(store, 'edge_label_index', None) is not None:
        _validate_labels(data, keys)
    return data


def _validate_labels(data: HeteroData, train_keys: Tensor) -> None:
    store = data[INTERACTS]
    num_items = int(data[ITEM].num_nodes)
    lab = store.edge_label_index
    if lab.dtype != torch.long or lab.dim() != 2 or lab.size(0) != 2:
        _fail(f'data[{INTERACTS}].edge_label_index', lab.numel(), f'entries of shape {tuple(lab.shape)}')
    for row, n in ((0, int(data[USER].num_nodes)), (1, num_items)):
        bad = (lab[row] < 0) | (lab[row] >= n)
        if bad.any():
            _fail(f'data[{INTERACTS}].edge_label_index[{row}]', int(bad.sum()), f'indices outside [0, {n})',
                  _example(bad, lab[row]))
    label = getattr(store, 'edge_label', None)
    if label is not None and label.size(0) != lab.size(1):
        _fail(f'data[{INTERACTS}].edge_label', label.size(0), f'rows for {lab.size(1)} label pairs')
    if getattr(data, 'split_name', 'train') != 'train':
        lk = _pair_keys(lab, num_items)
        leak = torch.from_numpy(np.isin(lk.cpu().numpy(), train_keys.cpu().numpy()))
        if leak.any():
            _fail(f'data[{INTERACTS}].edge_label_index', int(leak.sum()),
                  'evaluation pairs are also training edges (leakage)', _example(leak, lab[1]),
                  fix='remove evaluation pairs from the training edges before evaluating')
    neg = getattr(store, 'edge_label_neg', None)
    if neg is not None:
        if neg.dim() != 2 or neg.size(0) != lab.size(1) or neg.dtype != torch.long:
            _fail(f'data[{INTERACTS}].edge_label_neg', neg.size(0), f'rows of shape {tuple(neg.shape)} for '
                  f'{lab.size(1)} label pairs', fix='expected long[R, N] padded with -1')
        valid = neg != PAD
        bad = valid & ((neg < 0) | (neg >= num_items))
        if bad.any():
            _fail(f'data[{INTERACTS}].edge_label_neg', int(bad.sum()), 'indices out of range', _example(bad, neg))
        is_pos = valid & (neg == lab[1].unsqueeze(1))
        if is_pos.any():
            _fail(f'data[{INTERACTS}].edge_label_neg', int(is_pos.any(1).sum()),
                  'rows hold their own positive among the negatives', _example(is_pos, neg))
        users = lab[0].unsqueeze(1).expand_as(neg)
        nk = users[valid] * num_items + neg[valid]
        hit = torch.from_numpy(np.isin(nk.cpu().numpy(), train_keys.cpu().numpy()))
        if hit.any():
            _fail(f'data[{INTERACTS}].edge_label_neg', int(hit.sum()),
                  "negatives that are training items of their user", {'item': int(neg[valid][hit][0])})
        dom = data[ITEM].domain
        wrong = valid & (dom[neg.clamp(min=0)] != dom[lab[1]].unsqueeze(1))
        if wrong.any():
            _fail(f'data[{INTERACTS}].edge_label_neg', int(wrong.sum()),
                  "negatives from another domain than their positive", _example(wrong, neg))
