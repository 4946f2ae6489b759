r"""Douban multi-domain explicit ratings in the GA-DTCDR format."""
from __future__ import annotations

import glob
import os.path as osp
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from torch_geometric.data import HeteroData

from cdrgraph.data.build import IdMaps, from_interactions
from cdrgraph.datasets._base import CDRDataset, _check_no_duplicates, _read_pairs, _resolve_raw, check_range

__all__ = ['DoubanCDR']


class DoubanCDR(CDRDataset):
    r"""Douban Book / Music (/ Movie) explicit ratings of GA-DTCDR
    (Zhu et al., IJCAI 2020) and DTCDR (Zhu et al., CIKM 2019).

    Each domain ``<name>`` is a folder ``douban_<name>/`` with
    ``ratings.dat`` (optionally gzipped): lines ``user<TAB>item<TAB>rating``
    with 1-based ids and 1–5 star ratings, no header and no timestamp. User
    ids are global across the Douban domains (one user node per id: users
    rating in several domains are the overlap); item ids are per domain.
    Every rating is one ``interacts`` edge with ``interacts.rating`` (float,
    checked to lie in ``[1, 5]``).

    There is no given split (apply ``LeaveOneOut(order='file')``, the
    GA-DTCDR protocol) and no timestamp, so **file order is kept as time**:
    ``interacts.time`` holds the 0-based row position of the rating in its
    domain's ``ratings.dat`` (and ``data.time_is_file_order = True`` marks
    that these are not real timestamps). ``interacts`` edges are also stored
    in file order, domain after domain, so a user's last line of a domain has
    the largest ``time`` of that user and domain.

    Args:
        root (str): folder for the processed cache (``root/processed``).
        domains (list[str], optional): domain names, each with a folder
            ``douban_<name>/`` in ``raw_dir``; any subset of the folders
            present (e.g. a future ``'movie'``).
            (default: :obj:`('book', 'music')`)
        raw_dir (str, optional): folder holding the ``douban_<name>/``
            folders (e.g. ``../shared/data/douban-gadtcdr``).
            (default: ``root/raw``)
        transform (callable, optional): applied on every access.
        pre_transform (callable, optional): applied once before saving.
        force_reload (bool, optional): re-process even when a cache exists.
            (default: :obj:`False`)

    Example:
        >>> ds = DoubanCDR('/tmp/douban', raw_dir='../shared/data/douban-gadtcdr')
        >>> data = ds[0]
        >>> ds.domain_names, data['user'].num_nodes
        (['book', 'music'], 2216)
    """

    source_hint = ('The Douban ratings come from GitHub fengzhu1/GA-DTCDR (Data/douban_<name>/ratings.dat); '
                   'an offline Book-Music copy is ../shared/data/douban-gadtcdr. Files may be gzipped '
                   '(.dat.gz) or plain (.dat).')

    rating_range: tuple[float, float] = (1.0, 5.0)

    def __init__(self, root: str, domains: Sequence[str] = ('book', 'music'), raw_dir: str | None = None,
                 transform: Callable | None = None, pre_transform: Callable | None = None,
                 force_reload: bool = False) -> None:
        if isinstance(domains, str):
            domains = (domains,)
        doms = tuple(domains)
        if not doms or not all(isinstance(d, str) and d and '/' not in d for d in doms):
            raise ValueError(f'{self.__class__.__name__}: domains must be a non-empty list of folder names '
                             f"(douban_<name>/), got {domains!r}")
        if len(set(doms)) != len(doms):
            raise ValueError(f'{self.__class__.__name__}: domains must be distinct, got {list(doms)}')
        self.domains = doms
        super().__init__(root, raw_dir, transform, pre_transform, force_reload)

    @property
    def name(self) -> str:
        return 'douban_cdr_' + '_'.join(self.domains)

    @property
    def raw_file_names(self) -> list[str]:
        return [_resolve_raw(self.raw_dir, f'douban_{d}/ratings.dat') for d in self.domains]

    def available_domains(self) -> list[str]:
        r"""Domains with a ``douban_<name>/ratings.dat[.gz]`` file in ``raw_dir``."""
        found = glob.glob(osp.join(self.raw_dir, 'douban_*', 'ratings.dat*'))
        return sorted({osp.basename(osp.dirname(p))[len('douban_'):] for p in found
                       if p.endswith(('ratings.dat', 'ratings.dat.gz'))})

    def download(self) -> None:
        try:
            super().download()
        except FileNotFoundError as e:
            raise FileNotFoundError(f'{e} Domains available in {self.raw_dir}: '
                                    f'{self.available_domains()}.') from None

    def build(self) -> tuple[HeteroData, IdMaps]:
        frames = []
        for dom, rel in zip(self.domains, self.raw_file_names, strict=True):
            df = _read_pairs(osp.join(self.raw_dir, rel), ('user', 'item', 'rating'),
                             float_columns=('rating',),
                             fix="Expected lines 'user<TAB>item<TAB>rating' (GA-DTCDR format).")
            check_range(df, 'rating', *self.rating_range, fix='Douban ratings are 1-5 stars.')
            _check_no_duplicates(df)
            frames.append(pd.DataFrame({'user': df['user'].to_numpy(), 'item': df['item'].to_numpy(),
                                        'domain': dom, 'rating': df['rating'].to_numpy(),
                                        'time': np.arange(len(df), dtype=np.int64)}))
        df = pd.concat(frames, ignore_index=True)
        data, id_maps = from_interactions(df, domains=list(self.domains), rating='rating', time='time',
                                          rating_range=self.rating_range, return_id_maps=True,
                                          source=f'{self.__class__.__name__}(domains={list(self.domains)})')
        data.time_is_file_order = True
        return data, id_maps

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(domains={self.domain_names})'
