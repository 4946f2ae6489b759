r"""Amazon cold-start CDR pairs in the CDRIB format."""
from __future__ import annotations

import glob
import os.path as osp
import re
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import HeteroData

from cdrgraph.data.build import IdMaps, from_interactions
from cdrgraph.data.schema import TEST, TRAIN, USER, VAL
from cdrgraph.datasets._base import (
    DataFormatError,
    PairCDRDataset,
    _check_disjoint,
    _check_no_duplicates,
    _read_pairs,
    _split_pair,
    line_of,
)

__all__ = ['AmazonCDRIB']

_COMMON_RE = re.compile(r'common user num\s+(\d+)')


class AmazonCDRIB(PairCDRDataset):
    r"""Amazon cold-start cross-domain recommendation pairs of CDRIB
    (Cao et al., "Cross-Domain Recommendation to Cold-Start Users via
    Variational Information Bottleneck", ICDE 2022), re-used by UniCDR's
    dual-user-inter scenario.

    A pair :obj:`'x_y'` is stored as two folders: ``x_y/`` holds domain
    ``x``, ``y_x/`` holds domain ``y``; each has ``train.txt``,
    ``valid.txt`` and ``test.txt`` (optionally gzipped) with lines
    ``user<TAB>item`` (0-based ids, implicit feedback). Rows go into one graph
    with ``interacts.split`` = :obj:`0` (train), :obj:`1` (valid) and
    :obj:`2` (test); use ``GivenSplit`` — the files already are a cold-start
    split.

    **User ids.** Raw users ``0 … n_common − 1`` are the same people in both
    folders and become one user node each (node index = raw id). Raw ids
    ``≥ n_common`` are domain-specific and numbered independently per
    domain, so they become *different* user nodes per domain, with raw keys
    ``'<domain>:<id>'`` in ``id_maps['user']`` (e.g. ``'game:30000'``);
    nodes of domain ``x`` follow the common users, then those of ``y``.

    **n_common** is derived from the files: the held-out (valid/test) users
    are exactly the cold-start users, which CDRIB's preprocessing draws from
    the common users so that the last 20 % of common ids are cold in one
    domain or the other; hence ``n_common = 1 + max held-out user id``. The
    ``*_data_info.txt`` preprocessing logs are not used: in the shared copy
    each pair has one stale log (2,193 vs 2,179 and 9,928 vs 9,828). The
    derivation is checked against CDRIB's layout (with
    ``L = int(0.1·n_common)``, one domain's cold users lie in
    ``[8L, 9L)`` and the other's in ``[9L, n_common)``) and a warning is
    raised when it does not fit; pass ``num_common_users`` to override.

    Stored attributes: ``data.num_common_users: int``, and
    ``data.cold_users: dict[str, Tensor]`` — per domain name, the user nodes
    with valid/test rows there (checked to have no training edge in that
    domain).

    Args:
        root (str): folder for the processed cache (``root/processed``).
        pair (str or tuple, optional): ``'x_y'`` or ``('x', 'y')``.
            (default: :obj:`'game_video'`)
        raw_dir (str, optional): folder holding ``x_y/`` and ``y_x/`` (e.g.
            ``../shared/data/amazon-cdrib``). (default: ``root/raw``)
        num_common_users (int, optional): number of overlapping users
            (``n_common``); derived from the held-out users when
            :obj:`None`. (default: :obj:`None`)
        transform (callable, optional): applied on every access.
        pre_transform (callable, optional): applied once before saving.
        force_reload (bool, optional): re-process even when a cache exists.
            (default: :obj:`False`)

    Example:
        >>> ds = AmazonCDRIB('/tmp/cdrib', pair='game_video',
        ...                  raw_dir='../shared/data/amazon-cdrib')
        >>> data = ds[0]
        >>> data.num_common_users
        2179
        >>> ds.id_maps['user'][-1]
        'video:19456'
    """

    source_hint = ('The CDRIB pairs come from GitHub cjx96/CDRIB (dataset/<x_y>/); an offline copy with '
                   'game_video and sport_cloth is ../shared/data/amazon-cdrib. Files may be gzipped '
                   '(.txt.gz) or plain (.txt).')

    #: required files of each domain folder (``.txt`` or ``.txt.gz``) and their split codes
    files: tuple[str, ...] = ('train', 'valid', 'test')
    split_codes: tuple[int, ...] = (TRAIN, VAL, TEST)

    def __init__(self, root: str, pair: str | Sequence[str] = 'game_video', raw_dir: str | None = None,
                 num_common_users: int | None = None, transform: Callable | None = None,
                 pre_transform: Callable | None = None, force_reload: bool = False) -> None:
        self.pair = _split_pair(pair, raw_dir if raw_dir is not None else osp.join(root, 'raw'),
                                self.__class__.__name__)
        valid = isinstance(num_common_users, int) and not isinstance(num_common_users, bool)
        if num_common_users is not None and (not valid or num_common_users < 1):
            raise ValueError(f'{self.__class__.__name__}: num_common_users must be a positive int or None, '
                             f'got {num_common_users!r}')
        self.num_common_users = num_common_users
        super().__init__(root, raw_dir, transform, pre_transform, force_reload)

    @property
    def name(self) -> str:
        suffix = '' if self.num_common_users is None else f'_common{self.num_common_users}'
        return 'amazon_cdrib_{}_{}{}'.format(*self.pair, suffix)

    def _read(self, folder: str, stem: str) -> pd.DataFrame:
        return _read_pairs(self._path(folder, stem), ('user', 'item'),
                           fix="Expected lines 'user<TAB>item' (CDRIB format).")

    def logged_common_users(self) -> dict[str, int]:
        r"""``'common user num'`` of every ``*_data_info.txt`` log in the two
        folders (informational; the logs can be stale)."""
        out = {}
        for folder in self.folders:
            for path in sorted(glob.glob(osp.join(self.raw_dir, folder, '*_data_info.txt'))):
                with open(path) as f:
                    m = _COMMON_RE.search(f.read())
                if m:
                    out[osp.relpath(path, self.raw_dir)] = int(m.group(1))
        return out

    def build(self) -> tuple[HeteroData, IdMaps]:
        names = list(self.pair)
        tables = {(dom, stem): self._read(folder, stem)
                  for dom, folder in zip(names, self.folders, strict=True) for stem in self.files}
        for dom in names:
            train = tables[dom, 'train']
            _check_no_duplicates(train)
            for stem in self.files[1:]:
                _check_no_duplicates(tables[dom, stem])
                _check_disjoint(tables[dom, stem], train)
            _check_disjoint(tables[dom, 'test'], tables[dom, 'valid'])

        n_common = self._common_users(names, tables)

        # cold-start check: held-out users of a domain have no training edge there
        cold_raw: dict[str, np.ndarray] = {}
        for dom in names:
            train_users = tables[dom, 'train']['user']
            for stem in self.files[1:]:
                held = tables[dom, stem]
                warm = held['user'].isin(train_users).to_numpy()
                if warm.any():
                    row = int(np.flatnonzero(warm)[0])
                    raise DataFormatError(
                        f'{line_of(held, row)}: user {held.user.iloc[row]} is held out in domain {dom!r} but '
                        f'has training edges there ({int(warm.sum())} such row(s)); the CDRIB format holds '
                        'out all domain interactions of a cold-start user')
            cold_raw[dom] = np.unique(self._users(tables, dom, self.files[1:]))

        # integer user codes: common users keep their id, domain-specific ones follow domain by domain
        keys: list[str] = [str(u) for u in range(n_common)]
        frames = []
        for dom in names:
            specific = np.unique(self._users(tables, dom, self.files))
            specific = specific[specific >= n_common]
            start = len(keys)
            keys.extend(f'{dom}:{u}' for u in specific.tolist())
            for stem, code in zip(self.files, self.split_codes, strict=True):
                df = tables[dom, stem]
                raw = df['user'].to_numpy()
                ucode = np.where(raw < n_common, raw, start + np.searchsorted(specific, raw))
                frames.append(pd.DataFrame({'user': ucode, 'item': df['item'].to_numpy(), 'domain': dom,
                                            'split': code}))
        df = pd.concat(frames, ignore_index=True)
        present = np.unique(df['user'].to_numpy())
        absent = np.setdiff1d(np.arange(n_common), present)
        if len(absent):
            raise ValueError(f'{self.__class__.__name__}(pair={self.pair}): num_common_users={n_common}, but '
                             f'the common user id(s) {absent[:5].tolist()} occur in no file '
                             f'({len(absent)} in all); pass the correct num_common_users')
        data, id_maps = from_interactions(df, domains=names, split='split', return_id_maps=True,
                                          source=f'{self.__class__.__name__}(pair={self.pair})')
        id_maps[USER] = pd.Index([keys[c] for c in id_maps[USER].tolist()], name=USER)
        data.num_common_users = n_common
        data.cold_users = {dom: torch.as_tensor(cold_raw[dom], dtype=torch.long) for dom in names}
        return data, id_maps

    @staticmethod
    def _users(tables: dict[tuple[str, str], pd.DataFrame], dom: str, stems: Sequence[str]) -> np.ndarray:
        return np.concatenate([tables[dom, s]['user'].to_numpy() for s in stems])

    def _common_users(self, names: list[str], tables: dict[tuple[str, str], pd.DataFrame]) -> int:
        held = {dom: self._users(tables, dom, self.files[1:]) for dom in names}
        if self.num_common_users is not None:
            n = self.num_common_users
            for dom in names:
                for stem in self.files[1:]:
                    df = tables[dom, stem]
                    bad = (df['user'] >= n).to_numpy()
                    if bad.any():
                        row = int(np.flatnonzero(bad)[0])
                        raise DataFormatError(
                            f'{line_of(df, row)}: held-out user {df.user.iloc[row]} >= num_common_users={n}; '
                            'cold-start users are common users, so num_common_users must exceed every '
                            'valid/test user id (leave it None to derive it)')
            return n
        n = int(max(h.max() for h in held.values())) + 1
        lo = int(0.1 * n)
        ranges = sorted((int(h.min()), int(h.max())) for h in held.values())
        expected = [(8 * lo, 9 * lo - 1), (9 * lo, n - 1)]
        if ranges != expected:
            warnings.warn(f'{self.__class__.__name__}(pair={self.pair}): derived n_common={n} from the '
                          f'held-out users, but their id ranges {ranges} do not follow the CDRIB layout '
                          f'{expected} '
                          '(L = int(0.1 n_common)); check it or pass num_common_users', stacklevel=3)
        logged = self.logged_common_users()
        if logged and n not in logged.values():
            warnings.warn(f'{self.__class__.__name__}(pair={self.pair}): derived n_common={n} matches no '
                          f'preprocessing log {logged}; pass num_common_users to override', stacklevel=3)
        return n
