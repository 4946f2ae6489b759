r"""XMRec cross-market Electronics (5-core): one domain per market, items
shared across markets."""
from __future__ import annotations

import os.path as osp
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from torch_geometric.data import HeteroData

from cdrgraph.data.build import IdMaps, from_interactions
from cdrgraph.datasets._base import CDRDataset, DataFormatError, check_range, line_of, read_table

__all__ = ['XMRec']


class XMRec(CDRDataset):
    r"""The XMRec cross-market product data (Bonab et al., "Cross-Market
    Product Recommendation", CIKM 2021), Electronics 5-core files of the
    efficient-xmrec release: one domain per market, the *multi-item-intra*
    scenario of MODELS.md §2.

    Raw files ``<market>_5core.txt[.gz]``: whitespace-separated with the
    header ``userId itemId rate date`` (reviewer id, ASIN, rating 1-5, date
    ``YYYY-MM-DD``). The domain names are the market codes, in the order of
    ``markets``.

    * Items: an item node is a (market, ASIN) pair; the same ASIN in several
      markets shares one ``item.shared_id``.
    * Users: the markets are user-disjoint by design (only 4 reviewer ids
      occur in two markets), so a user node is a (market, reviewer) pair with
      raw id ``'<market>:<userId>'``; every user is active in exactly one
      market.
    * Repeated (user, item) rows of a market are dropped, keeping the first
      in file order; the counts are ``data.num_duplicates_by_domain``
      (``{market: count}``) and ``data.num_duplicates_dropped`` (total).
    * ``interacts.rating`` holds the rating (float), ``interacts.time`` the
      review date as unix seconds (midnight UTC).

    Args:
        root (str): folder of the processed cache (``root/processed``).
        markets (list[str], optional): markets to load, in domain-index order.
            (default: :obj:`('ca', 'de', 'fr', 'in', 'jp', 'mx', 'uk')`)
        raw_dir (str, optional): folder holding the raw files.
            (default: ``root/raw``)
        transform, pre_transform (callable, optional): PyG transforms.
        force_reload (bool, optional): re-process. (default: :obj:`False`)

    Example:
        >>> ds = XMRec('/tmp/xmrec', markets=('ca', 'de', 'fr', 'mx', 'uk'),
        ...            raw_dir='../shared/data/xmrec-electronics')
        >>> ds.domain_names
        ['ca', 'de', 'fr', 'mx', 'uk']
    """

    MARKETS = ('ca', 'de', 'fr', 'in', 'jp', 'mx', 'uk')
    source_hint = ('XMRec Electronics 5-core files <market>_5core.txt of GitHub '
                   'samarthbhargav/efficient-xmrec (DATA2/proc_data), see ../shared/data/xmrec-electronics.')

    def __init__(self, root: str, markets: Sequence[str] = MARKETS, raw_dir: str | None = None,
                 transform: Callable | None = None, pre_transform: Callable | None = None,
                 force_reload: bool = False) -> None:
        if isinstance(markets, str):
            markets = (markets,)
        markets = tuple(str(m) for m in markets)
        unknown = [m for m in markets if m not in self.MARKETS]
        if unknown:
            raise ValueError(f'XMRec: unknown market(s) {unknown}; valid: {list(self.MARKETS)}')
        if not markets or len(set(markets)) != len(markets):
            raise ValueError(f'XMRec: markets must be a non-empty list of distinct market codes, '
                             f'got {list(markets)}')
        self.markets = markets
        super().__init__(root, raw_dir, transform, pre_transform, force_reload)

    @property
    def name(self) -> str:
        return 'xmrec_' + '-'.join(self.markets)

    @property
    def raw_file_names(self) -> list[str]:
        out = []
        for m in self.markets:
            stem = f'{m}_5core.txt'
            path = osp.join(self.raw_dir, stem)
            plain = osp.exists(path) and not osp.exists(path + '.gz')
            out.append(stem if plain else stem + '.gz')
        return out

    def build(self) -> tuple[HeteroData, IdMaps]:
        frames, dups = [], {}
        for market, path in zip(self.markets, self.raw_paths, strict=True):
            _check_header(path, self.source_hint)
            df = read_table(path, ['user', 'item', 'rating', 'date'], sep=r'\s+', header=0,
                            float_columns=['rating'], fix=self.source_hint)
            check_range(df, 'rating', 1, 5, fix=self.source_hint)
            date = pd.to_datetime(df['date'], format='%Y-%m-%d', errors='coerce')
            if date.isna().any():
                row = int(np.flatnonzero(date.isna().to_numpy())[0])
                raise DataFormatError(f"{line_of(df, row)}: field 'date' must be YYYY-MM-DD, got "
                                      f"{df['date'].iloc[row]!r}. {self.source_hint}")
            df['time'] = (date - pd.Timestamp('1970-01-01')).dt.total_seconds().astype(np.int64)
            df['user'] = market + ':' + df['user']
            dups[market] = int(df.duplicated(['user', 'item']).sum())
            frames.append(df.assign(domain=market))
        df = pd.concat(frames, ignore_index=True)
        data, id_maps = from_interactions(df, rating='rating', time='time', shared_item='item',
                                          domains=list(self.markets), duplicates='drop', source=self.raw_dir,
                                          return_id_maps=True)
        data.num_duplicates_by_domain = dups
        data.num_duplicates_dropped = sum(dups.values())
        return data, id_maps

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(markets={list(self.markets)})'


def _check_header(path: str, fix: str) -> None:
    import gzip
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rt') as f:
        head = f.readline().split()
    if head != ['userId', 'itemId', 'rate', 'date']:
        raise DataFormatError(f"{path}, line 1: expected the header 'userId itemId rate date', got "
                              f"{' '.join(head)!r}. {fix}")
