r"""Build the cdrgraph :class:`~torch_geometric.data.HeteroData` from interaction tables."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from cdrgraph.data.schema import (
    ACTIVE_IN,
    BELONGS_TO,
    DOMAIN,
    INTERACTS,
    ITEM,
    REV_INTERACTS,
    USER,
    domain_names,
)

__all__ = ['from_interactions', 'add_derived_edges', 'domain_item_ranges', 'IdMaps']

#: node type -> raw ids in internal order (``id_maps['user'][i]`` is the raw id of user node ``i``);
#: ``pd.Index.get_indexer(raw)`` maps raw ids back to node indices (``-1`` when unknown).
IdMaps = dict[str, pd.Index]


def add_derived_edges(data: HeteroData) -> HeteroData:
    r"""(Re)compute ``rev_interacts``, ``belongs_to`` and ``active_in`` from
    ``interacts.edge_index`` and ``item.domain`` (in place; returns ``data``).

    ``active_in`` carries ``count``: the number of interactions of the user in
    the domain.
    """
    ei = data[INTERACTS].edge_index
    dom = data[ITEM].domain
    k = int(data[DOMAIN].num_nodes)
    data[REV_INTERACTS].edge_index = ei.flip(0)
    num_items = dom.numel()
    data[BELONGS_TO].edge_index = torch.stack([torch.arange(num_items, dtype=torch.long), dom])
    key = (ei[0] * k + dom[ei[1]]).numpy()
    uniq_np, count_np = np.unique(key, return_counts=True)  # numpy: much faster than torch.unique on CPU
    uniq, count = torch.from_numpy(uniq_np), torch.from_numpy(count_np)
    data[ACTIVE_IN].edge_index = torch.stack([uniq // k, uniq % k])
    data[ACTIVE_IN].count = count
    return data


def _as_frame(interactions: pd.DataFrame | Mapping[str, Tensor | Sequence]) -> pd.DataFrame:
    if isinstance(interactions, pd.DataFrame):
        return interactions
    if isinstance(interactions, Mapping):
        cols = {k: (v.cpu().numpy() if isinstance(v, Tensor) else np.asarray(v)) for k, v in interactions.items()}
        return pd.DataFrame(cols)
    raise TypeError(f'interactions must be a pandas DataFrame or a mapping of columns, got {type(interactions)}')


def _check_finite(df: pd.DataFrame, col: str, source: str) -> None:
    vals = pd.to_numeric(df[col], errors='coerce')
    bad = vals.isna() | ~np.isfinite(vals.to_numpy(dtype=float, na_value=np.nan))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"{source}: column '{col}' has {int(bad.sum())} missing or non-numeric values "
                         f"(first at row {row}: {df[col].iloc[row]!r}); fix or drop these rows")


def from_interactions(
    interactions: pd.DataFrame | Mapping[str, Tensor | Sequence],
    *,
    user: str = 'user',
    item: str = 'item',
    domain: str | None = 'domain',
    rating: str | None = None,
    time: str | None = None,
    behavior: str | None = None,
    split: str | None = None,
    shared_item: str | None = None,
    domains: Sequence[str] | None = None,
    duplicates: str = 'error',
    rating_range: tuple[float, float] | None = None,
    source: str = 'interactions',
    return_id_maps: bool = False,
) -> HeteroData | tuple[HeteroData, IdMaps]:
    r"""Turn a table of (user, item, domain) interactions into the cdrgraph
    :class:`~torch_geometric.data.HeteroData` (DESIGN.md §2).

    Users are identified by their raw id across domains (the same raw user in
    two domains is one node: user overlap). An item node is a (domain, raw
    item) pair, so every item node belongs to exactly one domain; item nodes
    are numbered domain by domain (the items of a domain are one contiguous
    range), users and items by sorted raw id inside that. With ``shared_item``
    set, items of several domains with the same value in that column get the
    same ``item.shared_id`` (item overlap).

    Args:
        interactions (pandas.DataFrame or dict): one row per interaction.
        user (str, optional): user column. (default: :obj:`'user'`)
        item (str, optional): item column. (default: :obj:`'item'`)
        domain (str, optional): domain column; :obj:`None` for one domain
            named ``'d0'``. (default: :obj:`'domain'`)
        rating (str, optional): explicit rating column -> ``interacts.rating``.
        time (str, optional): integer timestamp column -> ``interacts.time``.
        behavior (str, optional): integer behaviour-type column ->
            ``interacts.behavior``.
        split (str, optional): given split column holding ``0`` (train),
            ``1`` (val), ``2`` (test) or ``'train'``/``'val'``/``'test'`` ->
            ``interacts.split``.
        shared_item (str, optional): column naming the real-world item across
            domains -> ``item.shared_id``. Use the item column itself when raw
            item ids are shared.
        domains (list[str], optional): domain names in the order of domain
            indices; defaults to the sorted distinct values of ``domain``.
            Listed domains without interactions are an error.
        duplicates (str, optional): what to do with repeated (user, item,
            domain) rows: ``'error'``, ``'drop'`` (keep the first, count in
            ``data.num_duplicates_dropped``) or ``'last'``.
            (default: :obj:`'error'`)
        rating_range (tuple, optional): allowed ``[low, high]`` of ratings.
        source (str, optional): name used in error messages (e.g. a file path).
        return_id_maps (bool, optional): also return the raw-id maps.

    Returns:
        The graph, or ``(graph, id_maps)`` where ``id_maps[node_type]`` is a
        :class:`pandas.Index` of raw ids in node order. For items the raw id
        is the string ``'<domain>/<raw item>'``.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({'user': ['u1', 'u1', 'u2'], 'item': ['a', 'b', 'a'],
        ...                    'domain': ['books', 'music', 'music']})
        >>> data, maps = from_interactions(df, return_id_maps=True)
        >>> data['item'].domain.tolist()
        [0, 1, 1]
    """
    if duplicates not in ('error', 'drop', 'last'):
        raise ValueError(f"duplicates must be 'error', 'drop' or 'last', got {duplicates!r}")
    df = _as_frame(interactions)
    cols = [c for c in (user, item, domain, rating, time, behavior, split, shared_item) if c is not None]
    missing = [c for c in dict.fromkeys(cols) if c not in df.columns]
    if missing:
        raise KeyError(f'{source}: missing column(s) {missing}; available columns: {list(df.columns)}')
    if len(df) == 0:
        raise ValueError(f'{source}: no interactions; an empty table cannot form a graph')
    df = df[list(dict.fromkeys(cols))].copy()
    for c in (user, item):
        if df[c].isna().any():
            row = int(np.flatnonzero(df[c].isna().to_numpy())[0])
            raise ValueError(f"{source}: column '{c}' has {int(df[c].isna().sum())} missing ids (first at row {row})")
    if domain is None:
        domain = '__domain__'
        df[domain] = (list(domains)[0] if domains else 'd0')
    df[domain] = df[domain].astype(str)

    present = sorted(df[domain].unique().tolist())
    if domains is None:
        names = present
    else:
        names = [str(d) for d in domains]
        unknown = sorted(set(present) - set(names))
        if unknown:
            raise ValueError(f'{source}: domain(s) {unknown} are not in domains={names}')
        empty = [d for d in names if d not in set(present)]
        if empty:
            raise ValueError(f'{source}: domain(s) {empty} have no interactions; drop them from domains= '
                             'or supply their interactions')
    dom_code = {d: i for i, d in enumerate(names)}
    df['__dom__'] = df[domain].map(dom_code).astype('int64')

    for c in (rating, time, behavior):
        if c is not None:
            _check_finite(df, c, source)
    if rating is not None and rating_range is not None:
        r = df[rating].astype(float)
        bad = (r < rating_range[0]) | (r > rating_range[1])
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"{source}: column '{rating}' has {int(bad.sum())} values outside {rating_range} "
                             f"(first at row {row}: {r.iloc[row]}); rescale or drop them")

    # duplicates: one (user, item, domain) pair is one edge
    dup = df.duplicated(subset=[user, item, '__dom__'], keep='first' if duplicates != 'last' else 'last')
    num_dup = int(dup.sum())
    if num_dup:
        if duplicates == 'error':
            row = int(np.flatnonzero(dup.to_numpy())[0])
            raise ValueError(f"{source}: {num_dup} duplicate (user, item, domain) rows (first at row {row}: "
                             f"user={df[user].iloc[row]!r}, item={df[item].iloc[row]!r}); "
                             "pass duplicates='drop' to keep the first occurrence")
        df = df[~dup.to_numpy()]

    # users: sorted raw ids
    user_codes, user_index = pd.factorize(df[user], sort=True)
    # items: by domain, then raw id
    raw_codes, raw_uniques = pd.factorize(df[item], sort=True)
    dom_np = df['__dom__'].to_numpy(dtype=np.int64)
    key = dom_np * max(len(raw_uniques), 1) + raw_codes
    item_keys, item_codes = np.unique(key, return_inverse=True)
    item_dom = torch.from_numpy(item_keys // max(len(raw_uniques), 1))
    raw_items = raw_uniques[item_keys % max(len(raw_uniques), 1)]

    data = HeteroData()
    data[USER].num_nodes = len(user_index)
    data[ITEM].num_nodes = len(item_keys)
    data[ITEM].domain = item_dom
    data[DOMAIN].num_nodes = len(names)
    data.domain_names = list(names)

    ei = torch.stack([torch.as_tensor(user_codes, dtype=torch.long),
                      torch.as_tensor(item_codes, dtype=torch.long)])
    store = data[INTERACTS]
    store.edge_index = ei
    if rating is not None:
        store.rating = torch.from_numpy(df[rating].to_numpy(dtype=np.float32, copy=True))
    if time is not None:
        store.time = torch.from_numpy(df[time].to_numpy(dtype=np.int64, copy=True))
    if behavior is not None:
        store.behavior = torch.from_numpy(df[behavior].to_numpy(dtype=np.int64, copy=True))
    if split is not None:
        codes = {'train': 0, 'val': 1, 'valid': 1, 'test': 2, '0': 0, '1': 1, '2': 2}
        col = df[split]
        if pd.api.types.is_numeric_dtype(col):
            mapped = pd.Series(col.to_numpy(), index=col.index)
        else:  # vectorised lookup of the split names
            pos = pd.Index(list(codes)).get_indexer(col.astype(str).str.lower())
            mapped = pd.Series(np.where(pos >= 0, np.array(list(codes.values()))[pos], -1), index=col.index)
        mapped = mapped.where(mapped.isin([0, 1, 2]), -1)
        if (mapped < 0).any():
            row = int(np.flatnonzero((mapped < 0).to_numpy())[0])
            raise ValueError(f"{source}: column '{split}' has unknown split value {df[split].iloc[row]!r} "
                             f"at row {row}; use 0/1/2 or 'train'/'val'/'test'")
        store.split = torch.from_numpy(mapped.to_numpy(dtype=np.int64, copy=True))
    if shared_item is not None:
        first = df.groupby(item_codes, sort=True)[shared_item].first()
        shared_codes, shared_index = pd.factorize(first.to_numpy(), sort=True)
        data[ITEM].shared_id = torch.as_tensor(shared_codes, dtype=torch.long)
        data.num_shared_items = len(shared_index)
    if num_dup:
        data.num_duplicates_dropped = num_dup
    add_derived_edges(data)

    if return_id_maps:
        id_maps: IdMaps = {
            USER: pd.Index(user_index, name='user'),
            ITEM: pd.Index([f'{names[d]}/{r}' for d, r in zip(item_dom.tolist(), raw_items, strict=True)], name='item'),
            DOMAIN: pd.Index(names, name='domain'),
        }
        return data, id_maps
    return data


def domain_item_ranges(data: HeteroData) -> list[tuple[int, int]]:
    r"""``[(start, end), ...]`` item-index range of each domain when items of
    every domain are contiguous (as :func:`from_interactions` builds them);
    raises :class:`ValueError` otherwise."""
    dom = data[ITEM].domain
    out = []
    for k in range(len(domain_names(data))):
        idx = (dom == k).nonzero().view(-1)
        if idx.numel() == 0:
            out.append((0, 0))
            continue
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        if hi - lo != idx.numel():
            raise ValueError(f'items of domain {k} are not contiguous')
        out.append((lo, hi))
    return out
