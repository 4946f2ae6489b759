r"""Descriptive statistics of a cdrgraph graph: per-domain sizes, user and item
overlap between domains, connected components."""
from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from cdrgraph.data.schema import INTERACTS, ITEM, SPLIT_NAMES, USER, domain_names

__all__ = ['dataset_stats', 'format_stats']

_BACKENDS = ('auto', 'scipy', 'networkx')


def _component_sizes(num_nodes: int, src: np.ndarray, dst: np.ndarray, backend: str) -> np.ndarray:
    r"""Sizes of the connected components of an undirected graph on ``num_nodes`` nodes."""
    if num_nodes == 0:
        return np.zeros(0, dtype=np.int64)
    if backend in ('auto', 'scipy'):
        try:
            import scipy.sparse as sp
            from scipy.sparse.csgraph import connected_components
        except ImportError:
            if backend == 'scipy':
                raise ImportError("dataset_stats(backend='scipy') needs scipy; "
                                  "use backend='networkx'") from None
        else:
            adj = sp.coo_matrix((np.ones(src.size, dtype=np.int8), (src, dst)), shape=(num_nodes, num_nodes))
            _, labels = connected_components(adj, directed=False)
            return np.bincount(labels)
    import networkx as nx
    g = nx.Graph()
    g.add_nodes_from(range(num_nodes))
    g.add_edges_from(zip(src.tolist(), dst.tolist(), strict=True))
    return np.fromiter((len(c) for c in nx.connected_components(g)), dtype=np.int64)


def _components_row(users: Tensor, item_nodes: Tensor, ei: Tensor, backend: str) -> dict[str, Any]:
    r"""Components of the bipartite graph on ``users`` + ``item_nodes`` with edges ``ei`` (global ids)."""
    user_pos = torch.full((int(users.max()) + 1 if users.numel() else 1,), -1, dtype=torch.long)
    user_pos[users] = torch.arange(users.numel())
    item_pos = torch.full((int(item_nodes.max()) + 1 if item_nodes.numel() else 1,), -1, dtype=torch.long)
    item_pos[item_nodes] = torch.arange(item_nodes.numel()) + users.numel()
    n = users.numel() + item_nodes.numel()
    src = user_pos[ei[0]].numpy() if ei.size(1) else np.zeros(0, dtype=np.int64)
    dst = item_pos[ei[1]].numpy() if ei.size(1) else np.zeros(0, dtype=np.int64)
    sizes = _component_sizes(n, src, dst, backend)
    largest = int(sizes.max()) if sizes.size else 0
    return {'nodes': n, 'components': int(sizes.size), 'largest': largest,
            'largest_frac': largest / n if n else float('nan'), 'isolated': int((sizes == 1).sum())}


def dataset_stats(data: Any, components: bool = True, backend: str = 'auto') -> dict[str, pd.DataFrame]:
    r"""Descriptive statistics of a cdrgraph graph (or of a dataset's first graph).

    Counts use torch; connected components of the user–item interaction graph
    use :func:`scipy.sparse.csgraph.connected_components` when scipy is
    installed and :mod:`networkx` otherwise (both give the same numbers).

    Returns a dict of :class:`pandas.DataFrame`:

    * ``'domains'``: one row per domain plus ``'all'`` with ``users`` (active
      users), ``items`` (item nodes), ``interactions``, ``density``
      (interactions / (users · items)), ``avg_user_degree``,
      ``avg_item_degree``, ``cold_items`` (items without interactions),
      ``has_rating``/``has_time``/``has_behavior``, and ``train``/``val``/
      ``test`` edge counts when ``interacts.split`` (a given split) exists.
    * ``'user_overlap'``: one row per pair of domains ``(domain_a,
      domain_b)`` with ``users_a``, ``users_b``, ``overlap`` (users active in
      both), ``jaccard``, ``frac_a`` = overlap / users_a and ``frac_b``.
    * ``'item_overlap'``: the same for items, where an item of ``a`` and one
      of ``b`` overlap when they share ``item.shared_id`` (``overlap`` counts
      shared ids present in both; all zero without ``shared_id``).
    * ``'components'`` (with ``components=True``): for each domain's
      interaction graph (active users + the domain's items) and for ``'all'``
      (every user and item node): ``nodes``, ``components``, ``largest``
      (nodes in the largest component), ``largest_frac`` and ``isolated``
      (nodes without any edge).

    Args:
        data (HeteroData or InMemoryDataset): the graph.
        components (bool, optional): compute connected components.
            (default: :obj:`True`)
        backend (str, optional): ``'auto'``, ``'scipy'`` or ``'networkx'``
            for the components. (default: :obj:`'auto'`)

    Example:
        >>> from cdrgraph.testing.graphs import fake_graph
        >>> stats = dataset_stats(fake_graph('overlap'))
        >>> stats['user_overlap'][['domain_a', 'domain_b', 'overlap']].values.tolist()
        [['A', 'B', 6]]
    """
    if backend not in _BACKENDS:
        raise ValueError(f'dataset_stats: backend={backend!r} is unknown; use one of {_BACKENDS}')
    if not isinstance(data, HeteroData):
        if hasattr(data, '__getitem__') and hasattr(data, '__len__') and len(data) > 0:
            data = data[0]
        if not isinstance(data, HeteroData):
            raise TypeError(f'dataset_stats expects a HeteroData or a dataset of them, '
                            f'got {type(data).__name__}')
    names = domain_names(data)
    K = len(names)
    num_users = int(data[USER].num_nodes)
    num_items = int(data[ITEM].num_nodes)
    item_dom = data[ITEM].domain
    store = data[INTERACTS]
    ei = store.edge_index
    edge_dom = item_dom[ei[1]]

    items_per_dom = torch.bincount(item_dom, minlength=K)
    edges_per_dom = torch.bincount(edge_dom, minlength=K)
    active = torch.zeros(num_users, K, dtype=torch.bool)
    active[ei[0], edge_dom] = True
    users_per_dom = active.sum(0)
    item_deg = torch.bincount(ei[1], minlength=num_items)
    cold_per_dom = torch.bincount(item_dom[item_deg == 0], minlength=K)
    split = getattr(store, 'split', None)

    rows = []
    for k in range(K + 1):
        if k < K:
            u, i, e, cold = (int(users_per_dom[k]), int(items_per_dom[k]), int(edges_per_dom[k]),
                             int(cold_per_dom[k]))
        else:
            u, i, e, cold = int(active.any(1).sum()), num_items, int(ei.size(1)), int((item_deg == 0).sum())
        row = {'domain': names[k] if k < K else 'all', 'users': u, 'items': i, 'interactions': e,
               'density': e / (u * i) if u and i else float('nan'),
               'avg_user_degree': e / u if u else float('nan'),
               'avg_item_degree': e / i if i else float('nan'),
               'cold_items': cold,
               'has_rating': getattr(store, 'rating', None) is not None,
               'has_time': getattr(store, 'time', None) is not None,
               'has_behavior': getattr(store, 'behavior', None) is not None}
        if split is not None:
            sel = split if k == K else split[edge_dom == k]
            counts = torch.bincount(sel, minlength=3)
            for code, name in SPLIT_NAMES.items():
                row[name] = int(counts[code])
        rows.append(row)
    domains = pd.DataFrame(rows).set_index('domain')

    def pair_table(sets: list[Tensor], label: str) -> pd.DataFrame:
        out = []
        for a, b in combinations(range(K), 2):
            na, nb = int(sets[a].numel()), int(sets[b].numel())
            ov = int(torch.isin(sets[a], sets[b]).sum())
            union = na + nb - ov
            out.append({'domain_a': names[a], 'domain_b': names[b], f'{label}_a': na, f'{label}_b': nb,
                        'overlap': ov, 'jaccard': ov / union if union else float('nan'),
                        'frac_a': ov / na if na else float('nan'), 'frac_b': ov / nb if nb else float('nan')})
        cols = ['domain_a', 'domain_b', f'{label}_a', f'{label}_b', 'overlap', 'jaccard', 'frac_a', 'frac_b']
        return pd.DataFrame(out, columns=cols)

    user_sets = [active[:, k].nonzero().view(-1) for k in range(K)]
    shared = getattr(data[ITEM], 'shared_id', None)
    if shared is not None:
        item_sets = [torch.unique(shared[item_dom == k]) for k in range(K)]
    else:
        # no shared ids: every item is its own real-world item, so no two domains overlap
        item_sets = [(item_dom == k).nonzero().view(-1) for k in range(K)]
    result = {'domains': domains, 'user_overlap': pair_table(user_sets, 'users'),
              'item_overlap': pair_table(item_sets, 'items')}
    if shared is None:
        # item ids are disjoint between domains, but report the item counts of the domains
        result['item_overlap']['overlap'] = 0
        result['item_overlap']['jaccard'] = 0.0
        result['item_overlap']['frac_a'] = 0.0
        result['item_overlap']['frac_b'] = 0.0

    if components:
        comp_rows = []
        for k in range(K):
            m = edge_dom == k
            row = _components_row(user_sets[k], (item_dom == k).nonzero().view(-1), ei[:, m], backend)
            comp_rows.append({'domain': names[k], **row})
        row = _components_row(torch.arange(num_users), torch.arange(num_items), ei, backend)
        comp_rows.append({'domain': 'all', **row})
        result['components'] = pd.DataFrame(comp_rows).set_index('domain')
    return result


def format_stats(stats: dict[str, pd.DataFrame]) -> str:
    r"""Render :func:`dataset_stats` output as aligned plain-text tables, one
    titled section per table (no extra dependencies)."""
    titles = {'domains': 'Domains', 'user_overlap': 'User overlap between domains',
              'item_overlap': 'Item overlap between domains (item.shared_id)',
              'components': 'Connected components of the user-item interaction graph'}
    parts = []
    for key, df in stats.items():
        title = titles.get(key, key)
        if len(df) == 0:
            body = '(none: fewer than two domains)' if 'overlap' in key else '(empty)'
        else:
            show_index = df.index.name is not None
            body = df.rename_axis(None).to_string(index=show_index, float_format=lambda x: f'{x:.4g}')
        parts.append(f'{title}\n{"-" * len(title)}\n{body}')
    return '\n\n'.join(parts) + '\n'
