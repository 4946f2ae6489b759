r"""Tiny labelled cross-domain graphs with a known structure (MODELS.md §10).

Every case is a complete cdrgraph graph (built with
:func:`~cdrgraph.data.from_interactions`, so it passes
:func:`~cdrgraph.data.validate`) carrying a *given* split in
``interacts.split``, ratings (``1 ... 5``), timestamps (strictly increasing per
user) and one categorical side feature per node type (``x_cat`` with
``x_cat_vocab``; ``0`` = missing). Every active (user, domain) pair has exactly
:data:`DEGREE` interactions; items are spread cyclically over the users so
that every item has at least one interaction (except the isolated one).

=================  =======  ========  ======================================================
case               domains  items     users
=================  =======  ========  ======================================================
``overlap``        A, B     8, 6      0-5 active in both, 6 only in A, 7 only in B
``cold_start``     A, B     8, 6      as ``overlap``; users 3 (val), 4, 5 (test) are cold in B
``no_overlap``     A, B     6, 6      0-3 only in A, 4-7 only in B; 4 items per domain share
                                      ``item.shared_id`` (raw items 2-5 exist in both)
``isolated_item``  A, B     8, 7      as ``overlap`` plus item node 14 (last of B) without edges
``single_domain``  A        8         0-5
=================  =======  ========  ======================================================

Given split: in every case but ``cold_start`` each (user, domain) keeps its
last interaction by time as test, the one before as validation and the other
two for training (leave-one-out). In ``cold_start`` every interaction is
training except *all* domain-B interactions of the cold users (user 3 →
validation, users 4 and 5 → test), as ``ColdStartSplit(source=A, target=B)``
would hold them out.

Small ad-hoc graphs of the model tests: :func:`cold_start_split` (a
``ColdStartSplit`` of a random two-domain rating graph), :func:`two_domain_graph`
(random implicit two-domain graph), :func:`overlap_graph` (the fixed
:data:`OVERLAP_ROWS`) and :func:`select_domain` (``SelectDomains([k])`` by hand).

Example:
    >>> from cdrgraph.testing.graphs import CASES, fake_graph, fake_split
    >>> data = fake_graph('overlap')
    >>> data['user'].num_nodes, data['item'].num_nodes
    (8, 14)
    >>> train, val, test = fake_split('overlap', num_negatives=3)
    >>> val['interacts'].edge_label_neg.shape
    torch.Size([14, 3])
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import HeteroData

from cdrgraph.data.build import add_derived_edges, from_interactions
from cdrgraph.data.schema import INTERACTS, ITEM, PAD, TEST, TRAIN, USER, VAL, validate

__all__ = ['CASES', 'DEGREE', 'OVERLAP_ROWS', 'cold_start_split', 'fake_graph', 'fake_split', 'overlap_graph',
           'select_domain', 'two_domain_graph']

#: names of the labelled cases (MODELS.md §10, with underscores)
CASES: tuple[str, ...] = ('overlap', 'cold_start', 'no_overlap', 'isolated_item', 'single_domain')

#: interactions of every active (user, domain) pair
DEGREE = 4

_BOTH = list(range(6))
# case -> (domain names, items per domain, users per domain, raw item id offset per domain)
_SPECS: dict[str, tuple[tuple[str, ...], tuple[int, ...], tuple[list[int], ...], tuple[int, ...]]] = {
    'overlap': (('A', 'B'), (8, 6), (_BOTH + [6], _BOTH + [7]), (0, 0)),
    'cold_start': (('A', 'B'), (8, 6), (_BOTH + [6], _BOTH + [7]), (0, 0)),
    'no_overlap': (('A', 'B'), (6, 6), ([0, 1, 2, 3], [4, 5, 6, 7]), (0, 2)),
    'isolated_item': (('A', 'B'), (8, 6), (_BOTH + [6], _BOTH + [7]), (0, 0)),
    'single_domain': (('A',), (8,), (list(range(6)),), (0,)),
}
#: cold users of ``cold_start`` in domain B and the split their B interactions go to
_COLD = {3: VAL, 4: TEST, 5: TEST}


def _check_case(case: str) -> None:
    if case not in _SPECS:
        raise ValueError(f"unknown fake graph case {case!r}; choose one of {CASES}")


def _step(n: int) -> int:
    return next(s for s in range(2, n + 2) if math.gcd(s, n) == 1) if n > 2 else 1


def fake_graph(case: str = 'overlap', seed: int = 0) -> HeteroData:
    r"""One of the tiny labelled graphs of :data:`CASES` (module docstring),
    with its given split in ``interacts.split``.

    The structure (users per domain, items per domain, degrees, which split an
    edge belongs to) is fixed by ``case``; ``seed`` only permutes which items
    a user gets, the time order of a user's interactions, the ratings and the
    side features.

    Args:
        case (str, optional): one of :data:`CASES`. (default: :obj:`'overlap'`)
        seed (int, optional): random seed. (default: :obj:`0`)
    """
    _check_case(case)
    names, num_items, users, offsets = _SPECS[case]
    rng = np.random.default_rng(seed)
    rows = []
    for k, (n, us, off) in enumerate(zip(num_items, users, offsets, strict=True)):
        perm = rng.permutation(n)
        step = _step(n)
        for j, u in enumerate(us):
            for t in range(DEGREE):
                rows.append((u, int(perm[(j * step + t) % n]) + off, names[k]))
    df = pd.DataFrame(rows, columns=['user', 'item', 'domain'])
    E = len(df)
    df['rating'] = rng.integers(1, 6, E).astype(np.float32)
    # strictly increasing times per user, in a seeded order over all the user's interactions
    order = np.lexsort((rng.random(E), df['user'].to_numpy()))
    rank = np.empty(E, dtype=np.int64)
    sorted_user = df['user'].to_numpy()[order]
    start = np.r_[0, np.flatnonzero(np.diff(sorted_user)) + 1]
    rank[order] = np.arange(E) - np.repeat(start, np.diff(np.r_[start, E]))
    df['time'] = 1000 * df['user'].to_numpy() + 10 * rank + 100
    # given split: leave-one-out by time per (user, domain), or the cold-start rule
    if case == 'cold_start':
        split = np.full(E, TRAIN)
        for u, code in _COLD.items():
            split[(df['user'].to_numpy() == u) & (df['domain'].to_numpy() == 'B')] = code
    else:
        pos = df.groupby(['user', 'domain'])['time'].rank(method='first', ascending=False).to_numpy()
        split = np.where(pos == 1, TEST, np.where(pos == 2, VAL, TRAIN))
    df['split'] = split
    kw = {'shared_item': 'item'} if case == 'no_overlap' else {}
    data = from_interactions(df, rating='rating', time='time', split='split', domains=names,
                             rating_range=(1, 5), source=f'fake_graph({case!r})', **kw)
    if case == 'isolated_item':
        # one more item of the last domain (keeps domains contiguous) without any interaction
        data[ITEM].num_nodes = int(data[ITEM].num_nodes) + 1
        data[ITEM].domain = torch.cat([data[ITEM].domain, torch.tensor([len(names) - 1])])
        add_derived_edges(data)
    num_users, n_items = int(data[USER].num_nodes), int(data[ITEM].num_nodes)
    data[USER].x_cat = torch.as_tensor(rng.integers(0, 3, (num_users, 1)))
    data[USER].x_cat_vocab = torch.tensor([3])
    data[ITEM].x_cat = torch.as_tensor(rng.integers(0, 4, (n_items, 1)))
    data[ITEM].x_cat_vocab = torch.tensor([4])
    return validate(data)


def _candidates(train_keys: set[tuple[int, int]], held: set[tuple[int, int]], label_index: torch.Tensor,
                item_domain: torch.Tensor, train_items: torch.Tensor, num_negatives: int,
                rng: np.random.Generator) -> torch.Tensor:
    out = torch.full((label_index.size(1), num_negatives), PAD, dtype=torch.long)
    for r, (u, i) in enumerate(label_index.t().tolist()):
        k = int(item_domain[i])
        pool = [j for j in train_items.tolist()
                if int(item_domain[j]) == k and j != i and (u, j) not in train_keys and (u, j) not in held]
        take = rng.permutation(len(pool))[:num_negatives]
        out[r, :take.size] = torch.as_tensor([pool[t] for t in take], dtype=torch.long)
    return out


def fake_split(case: str = 'overlap', seed: int = 0,
               num_negatives: int = 0) -> tuple[HeteroData, HeteroData, HeteroData]:
    r"""The given split of :func:`fake_graph` as ``(train, val, test)`` in the
    split convention of :mod:`cdrgraph.transforms` (built here without it).

    All three graphs hold the *training* edges in ``interacts`` (ratings and
    times kept, ``split`` removed, derived edges recomputed) and
    ``split_name``. ``train`` supervises its edges (``edge_label`` = rating);
    ``val``/``test`` hold the held-out pairs in ``edge_label_index`` with
    ``edge_label`` (rating) and ``edge_label_time``. With
    ``num_negatives > 0`` they also get ``edge_label_neg``: up to
    ``num_negatives`` distinct items of the positive's domain that have a
    training edge and are neither a training item nor a held-out item of the
    user, padded with ``-1``.

    Args:
        case (str, optional): one of :data:`CASES`. (default: :obj:`'overlap'`)
        seed (int, optional): seed of the graph and the candidates.
            (default: :obj:`0`)
        num_negatives (int, optional): evaluation candidates per held-out
            pair; ``0`` stores none. (default: :obj:`0`)
    """
    data = fake_graph(case, seed)
    store = data[INTERACTS]
    ei, split, rating, time = store.edge_index, store.split, store.rating, store.time
    train_mask = split == TRAIN
    base = data.clone()
    del base[INTERACTS].split
    base[INTERACTS].edge_index = ei[:, train_mask]
    base[INTERACTS].rating = rating[train_mask]
    base[INTERACTS].time = time[train_mask]
    add_derived_edges(base)

    rng = np.random.default_rng(seed + 1)
    train_ei = ei[:, train_mask]
    train_keys = set(map(tuple, train_ei.t().tolist()))
    held = set(map(tuple, ei[:, ~train_mask].t().tolist()))
    train_items = torch.unique(train_ei[1])
    out = []
    for name, code in (('train', TRAIN), ('val', VAL), ('test', TEST)):
        g = base.clone()
        g.split_name = name
        s = g[INTERACTS]
        if code == TRAIN:
            s.edge_label_index = train_ei.clone()
            s.edge_label = rating[train_mask].clone()
        else:
            m = split == code
            s.edge_label_index = ei[:, m]
            s.edge_label = rating[m].clone()
            s.edge_label_time = time[m].clone()
            if num_negatives > 0:
                s.edge_label_neg = _candidates(train_keys, held, s.edge_label_index, data[ITEM].domain,
                                               train_items, num_negatives, rng)
        out.append(validate(g))
    return out[0], out[1], out[2]


# ------------------------------------------------------------ small ad-hoc graphs
def cold_start_split(rating: bool = True, seed: int = 0) -> tuple[HeteroData, HeteroData, HeteroData]:
    r"""``ColdStartSplit('S', 'T', fraction=0.25, seed=0)`` of a random graph:
    users 0-7 in S (6 items) and T (5 items), 8 only in S, 9 only in T; every
    active (user, domain) pair has 3 interactions (ratings ``1 ... 5`` drawn
    from ``seed``, strictly increasing times), so 2 of the 8 overlapping users
    are cold in T.

    Args:
        rating (bool, optional): keep the ratings in the graph. (default: :obj:`True`)
        seed (int, optional): seed of the items and ratings. (default: :obj:`0`)
    """
    from cdrgraph.transforms.cold_start_split import ColdStartSplit

    g = torch.Generator().manual_seed(seed)
    rows, t = [], 0
    for u in range(10):
        for d, n in (('S', 6), ('T', 5)):
            if (u == 8 and d == 'T') or (u == 9 and d == 'S'):
                continue
            for i in torch.randperm(n, generator=g)[:3].tolist():
                rows.append((u, i, d, float(torch.randint(1, 6, (1,), generator=g)), t))
                t += 1
    df = pd.DataFrame(rows, columns=['user', 'item', 'domain', 'rating', 'time'])
    data = from_interactions(df, rating='rating' if rating else None, time='time', domains=['S', 'T'])
    return ColdStartSplit('S', 'T', fraction=0.25, seed=0)(data)


def two_domain_graph(extra_b: Sequence[tuple[int, int]] = (), seed: int = 0,
                     b_only: Sequence[int] = ()) -> HeteroData:
    r"""Implicit graph of 8 users, domain A (6 items) and B (5 items): every
    user has 3 random items (drawn from ``seed``) in each domain, except the
    users of ``b_only``, who have none in A.

    Args:
        extra_b (sequence of (int, int), optional): more (user, item) rows in
            B (duplicates dropped). (default: :obj:`()`)
        seed (int, optional): seed of the items. (default: :obj:`0`)
        b_only (sequence of int, optional): users without A rows. (default: :obj:`()`)
    """
    g = torch.Generator().manual_seed(seed)
    rows = []
    for u in range(8):
        for d, n in (('A', 6), ('B', 5)):
            if d == 'A' and u in b_only:
                continue
            for i in torch.randperm(n, generator=g)[:3].tolist():
                rows.append((u, i, d))
    rows += [(u, i, 'B') for u, i in extra_b]
    df = pd.DataFrame(rows, columns=['user', 'item', 'domain']).drop_duplicates()
    return from_interactions(df)


#: (user, item, domain) rows of :func:`overlap_graph`: users 0-2 overlap (A and
#: B), users 3-4 only in A, user 5 only in B; A has items 0-4, B items 0-3
OVERLAP_ROWS: tuple[tuple[int, int, str], ...] = (
    (0, 0, 'A'), (0, 1, 'A'), (0, 0, 'B'), (0, 2, 'B'),
    (1, 1, 'A'), (1, 2, 'A'), (1, 1, 'B'),
    (2, 3, 'A'), (2, 2, 'B'), (2, 3, 'B'),
    (3, 0, 'A'), (3, 4, 'A'),
    (4, 2, 'A'), (4, 3, 'A'),
    (5, 0, 'B'), (5, 1, 'B'), (5, 3, 'B'))


def overlap_graph(rows: Sequence[tuple[int, int, str]] = OVERLAP_ROWS,
                  extra: Sequence[tuple[int, int, str]] = (),
                  domains: Sequence[str] = ('A', 'B')) -> HeteroData:
    r"""Implicit graph of the (user, item, domain) ``rows`` (default
    :data:`OVERLAP_ROWS`) plus ``extra``, with the given domain order."""
    df = pd.DataFrame(list(rows) + list(extra), columns=['user', 'item', 'domain'])
    return from_interactions(df, domains=list(domains))


def select_domain(data: HeteroData, k: int) -> HeteroData:
    r"""``SelectDomains([k])`` by hand: all users kept, the items of domain
    ``k`` re-indexed from ``0``, only their ``interacts`` edges (derived edges
    recomputed)."""
    dom = data[ITEM].domain
    items = (dom == k).nonzero().view(-1)
    new_id = torch.full((dom.numel(),), -1)
    new_id[items] = torch.arange(items.numel())
    ei = data[INTERACTS].edge_index
    keep = dom[ei[1]] == k
    out = data.__class__()
    out[USER].num_nodes = data[USER].num_nodes
    out[ITEM].num_nodes = items.numel()
    out[ITEM].domain = torch.zeros(items.numel(), dtype=torch.long)
    out['domain'].num_nodes = 1
    out[INTERACTS].edge_index = torch.stack([ei[0, keep], new_id[ei[1, keep]]])
    return add_derived_edges(out)
