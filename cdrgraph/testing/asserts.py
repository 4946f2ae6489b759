r"""Contract assertions for tests of datasets, splits, loaders and metrics.

Each helper raises :class:`AssertionError` with a message naming the object,
the field and what was expected, so a failing test says what broke.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from cdrgraph.data.schema import (
    ACTIVE_IN,
    INTERACTS,
    ITEM,
    PAD,
    REV_INTERACTS,
    USER,
    domain_names,
    validate,
)

__all__ = ['assert_graph_equal', 'assert_split_contract', 'assert_batch_contract', 'assert_metric_keys']


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        if not (isinstance(a, Tensor) and isinstance(b, Tensor)) or a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.is_floating_point():
            return bool(torch.equal(a.nan_to_num(), b.nan_to_num()))
        return bool(torch.equal(a, b))
    return a == b


def assert_graph_equal(a: HeteroData, b: HeteroData) -> None:
    r"""Assert two graphs hold the same node/edge types, attributes and
    values (tensors compared exactly, dtype included)."""
    assert set(a.node_types) == set(b.node_types), f'node types differ: {a.node_types} vs {b.node_types}'
    assert set(a.edge_types) == set(b.edge_types), f'edge types differ: {a.edge_types} vs {b.edge_types}'
    for key in list(a.node_types) + list(a.edge_types):
        sa, sb = a[key], b[key]
        assert set(sa.keys()) == set(sb.keys()), \
            f'{key}: attributes differ: {sorted(sa.keys())} vs {sorted(sb.keys())}'
        for attr in sa.keys():
            assert _equal(sa[attr], sb[attr]), f'{key}.{attr} differs'
    ga, gb = a.to_dict().get('_global_store', {}), b.to_dict().get('_global_store', {})
    assert set(ga) == set(gb), f'global attributes differ: {sorted(ga)} vs {sorted(gb)}'
    for attr in ga:
        assert _equal(ga[attr], gb[attr]), f'global attribute {attr!r} differs'


def _keys(ei: Tensor, num_items: int) -> Tensor:
    return ei[0] * num_items + ei[1]


def assert_split_contract(splits: Sequence[HeteroData]) -> None:
    r"""Assert that ``(train, val, test)`` follow the split convention of
    :mod:`cdrgraph.transforms`: the same nodes in all three, the same training
    edges in ``interacts`` (no ``split`` attribute), derived edges that agree
    with them, ``split_name`` set, training supervision equal to the training
    edges, evaluation pairs (with ``edge_label`` and optional
    ``edge_label_neg``) that are not training edges, and :func:`validate`
    passing on each graph."""
    assert len(splits) == 3, f'expected (train, val, test), got {len(splits)} graphs'
    train = splits[0]
    num_items = int(train[ITEM].num_nodes)
    train_ei = train[INTERACTS].edge_index
    for name, g in zip(('train', 'val', 'test'), splits, strict=True):
        got = getattr(g, 'split_name', None)
        assert got == name, f'{name}: split_name is {got!r}'
        for nt in (USER, ITEM):
            assert int(g[nt].num_nodes) == int(train[nt].num_nodes), \
                f'{name}: {nt}.num_nodes differs from train'
        assert torch.equal(g[ITEM].domain, train[ITEM].domain), f'{name}: item.domain differs from train'
        s = g[INTERACTS]
        assert getattr(s, 'split', None) is None, f"{name}: interacts still carries the 'split' attribute"
        assert torch.equal(s.edge_index, train_ei), f'{name}: interacts.edge_index is not the training edges'
        assert REV_INTERACTS in g.edge_types and ACTIVE_IN in g.edge_types, f'{name}: derived edges missing'
        lab = getattr(s, 'edge_label_index', None)
        assert lab is not None, f'{name}: interacts.edge_label_index missing'
        label = getattr(s, 'edge_label', None)
        assert label is not None and label.size(0) == lab.size(1), \
            f'{name}: edge_label missing or wrong length'
        assert label.is_floating_point(), f'{name}: edge_label must be float, got {label.dtype}'
        if name == 'train':
            same = torch.equal(torch.sort(_keys(lab, num_items)).values,
                               torch.sort(_keys(train_ei, num_items)).values)
            assert same, 'train: edge_label_index is not the set of training edges'
        else:
            leak = torch.isin(_keys(lab, num_items), _keys(train_ei, num_items))
            assert not leak.any(), f'{name}: {int(leak.sum())} evaluation pairs are training edges'
            neg = getattr(s, 'edge_label_neg', None)
            if neg is not None:
                assert neg.dtype == torch.long and neg.dim() == 2 and neg.size(0) == lab.size(1), \
                    f'{name}: edge_label_neg must be long[{lab.size(1)}, N], got {tuple(neg.shape)}'
                valid = neg != PAD
                # padding only at the end of a row
                assert not (~valid[:, :-1] & valid[:, 1:]).any(), \
                    f'{name}: edge_label_neg has padding before a candidate'
                for r in range(neg.size(0)):
                    row = neg[r][valid[r]]
                    assert row.unique().numel() == row.numel(), \
                        f'{name}: edge_label_neg row {r} has duplicates'
            if getattr(train[INTERACTS], 'time', None) is not None:
                t = getattr(s, 'edge_label_time', None)
                assert t is not None and t.size(0) == lab.size(1), \
                    f'{name}: edge_label_time missing or wrong length'
        validate(g)


def assert_batch_contract(batch: Any, data: HeteroData | None = None) -> None:
    r"""Assert that a :class:`~cdrgraph.loader.cdr_batch.CDRBatch` follows the
    one batch schema: ``user``/``pos_item`` ``long[B]`` and ``neg_item``
    ``long[B, n]`` local ids in range of ``graph``, ``n_id`` maps of the
    graph's sizes, ``label`` ``float[B]`` or :obj:`None`; with ``data`` (the
    global training graph) also that ``n_id`` is in range, local item
    domains match the global ones, positives are training edges of ``data``
    and negatives are not."""
    g = batch.graph
    nu, ni = int(g[USER].num_nodes), int(g[ITEM].num_nodes)
    B = batch.user.numel()
    assert batch.user.dtype == torch.long and batch.user.dim() == 1, \
        f'batch.user must be long[B], got {tuple(batch.user.shape)}/{batch.user.dtype}'
    assert batch.pos_item.shape == (B,), f'batch.pos_item shape {tuple(batch.pos_item.shape)} != ({B},)'
    assert batch.neg_item.dim() == 2 and batch.neg_item.size(0) == B, \
        f'batch.neg_item must be long[{B}, n], got {tuple(batch.neg_item.shape)}'
    for name, t, n in (('user', batch.user, nu), ('pos_item', batch.pos_item, ni),
                       ('neg_item', batch.neg_item, ni)):
        assert t.numel() == 0 or (int(t.min()) >= 0 and int(t.max()) < n), f'batch.{name} outside [0, {n})'
    assert batch.n_id[USER].numel() == nu and batch.n_id[ITEM].numel() == ni, \
        'batch.n_id sizes differ from the graph node counts'
    if batch.label is not None:
        assert batch.label.shape == (B,) and batch.label.is_floating_point(), 'batch.label must be float[B]'
    ge = g[INTERACTS].edge_index
    assert ge.numel() == 0 or (int(ge[0].max()) < nu and int(ge[1].max()) < ni), \
        'batch.graph interacts edges out of range'
    if data is not None:
        NI = int(data[ITEM].num_nodes)
        gu, gi = batch.n_id[USER], batch.n_id[ITEM]
        assert gu.numel() == 0 or int(gu.max()) < int(data[USER].num_nodes), 'n_id[user] out of range'
        assert gi.numel() == 0 or int(gi.max()) < NI, 'n_id[item] out of range'
        assert torch.equal(g[ITEM].domain, data[ITEM].domain[gi]), \
            'local item.domain disagrees with the global one'
        train = data[INTERACTS].edge_index
        tk = _keys(train, NI)
        pos = gu[batch.user] * NI + gi[batch.pos_item]
        assert torch.isin(pos, tk).all(), 'a positive of the batch is not a training edge'
        neg = (gu[batch.user].unsqueeze(1) * NI + gi[batch.neg_item]).view(-1)
        assert not torch.isin(neg, tk).any(), 'a negative of the batch is a training positive of its user'
        dom = data[ITEM].domain
        pos_dom = dom[gi[batch.pos_item]].unsqueeze(1).expand_as(batch.neg_item)
        assert torch.equal(dom[gi[batch.neg_item]], pos_dom), 'a negative is not in its positive\'s domain'


def assert_metric_keys(metrics: Mapping[str, float], domains: Iterable[str] | HeteroData,
                       names: Iterable[str] = ()) -> None:
    r"""Assert that a metric dict uses the flat key convention
    ``'<metric>[@<k>]/<domain>'`` (lower-case metric, domain from
    ``domains`` or ``'mean'``), that every requested metric name of ``names``
    (e.g. ``'hr@10'``) is present for every domain and for ``'mean'``, and
    that values are finite floats."""
    doms = domain_names(domains) if isinstance(domains, HeteroData) else list(domains)
    allowed = set(doms) | {'mean'}
    for key, value in metrics.items():
        assert '/' in key, f'metric key {key!r} has no /<domain> suffix'
        metric, dom = key.rsplit('/', 1)
        assert dom in allowed, f'metric key {key!r}: domain {dom!r} not in {sorted(allowed)}'
        assert metric == metric.lower(), f'metric key {key!r} is not lower-case'
        if '@' in metric:
            k = metric.split('@', 1)[1]
            assert k.isdigit(), f'metric key {key!r}: cut-off {k!r} is not an integer'
        v = float(value)
        assert v == v and abs(v) != float('inf'), f'metric {key!r} is not finite: {value!r}'
    for name in names:
        for dom in list(doms) + ['mean']:
            assert f'{name}/{dom}' in metrics, f'metric {name}/{dom} missing; got {sorted(metrics)}'
