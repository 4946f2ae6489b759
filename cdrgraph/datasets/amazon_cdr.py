r"""Amazon dual-domain CDR pairs in the DisenCDR / Bi-TGCF format."""
from __future__ import annotations

import gzip
import os.path as osp
import re
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import HeteroData

from cdrgraph.data.build import IdMaps, from_interactions
from cdrgraph.data.schema import ITEM, PAD, TEST, TRAIN
from cdrgraph.datasets._base import (
    DataFormatError,
    PairCDRDataset,
    _check_disjoint,
    _check_no_duplicates,
    _optional_raw,
    _read_pairs,
    _split_pair,
    line_of,
)

__all__ = ['AmazonCDR']


_NEG_KEY = re.compile(r'^\(\s*(-?\d+)\s*,\s*(-?\d+)\s*\)$')


def _read_fixed_negatives(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Parse a Bi-TGCF ``test_neg`` file: lines ``(user, pos_item)<TAB>neg_1 … neg_N``.

    Returns ``(keys long[R, 2], negatives long[R, N], line numbers long[R])``.
    """
    opener = gzip.open if path.endswith('.gz') else open
    keys: list[tuple[int, int]] = []
    negs: list[list[int]] = []
    lines: list[int] = []
    width = None
    with opener(path, 'rt') as f:
        for line_no, line in enumerate(f, start=1):
            line = line.rstrip('\r\n')
            if not line.strip():
                continue
            fields = line.rstrip('\t').split('\t')
            m = _NEG_KEY.match(fields[0].strip())
            if m is None:
                raise DataFormatError(f"{path}, line {line_no}: first field must be '(user, pos_item)', got "
                                      f'{fields[0]!r}')
            if len(fields) < 2:
                raise DataFormatError(f'{path}, line {line_no}: no negatives after {fields[0]!r}; expected '
                                      "'(user, pos_item)<TAB>neg_1 ... neg_N'")
            if width is None:
                width = len(fields) - 1
            elif len(fields) - 1 != width:
                raise DataFormatError(f'{path}, line {line_no}: {len(fields) - 1} negatives, but earlier '
                                      f'lines have {width}; every row needs the same number')
            try:
                row = [int(v) for v in fields[1:]]
            except ValueError:
                bad = next(v for v in fields[1:] if not v.strip().lstrip('-').isdigit())
                raise DataFormatError(f'{path}, line {line_no}: negative item ids must be integers, got '
                                      f'{bad!r}') from None
            keys.append((int(m.group(1)), int(m.group(2))))
            negs.append(row)
            lines.append(line_no)
    if not keys:
        raise DataFormatError(f'{path}: the file holds no rows; remove it or fill it with '
                              "'(user, pos_item)<TAB>neg_1 ... neg_N' lines")
    as_long = np.int64
    return np.asarray(keys, dtype=as_long), np.asarray(negs, dtype=as_long), np.asarray(lines, dtype=as_long)


def _map_items(id_maps: IdMaps, domain: str, raw: np.ndarray) -> np.ndarray:
    r"""Global item node ids of raw item ids of ``domain`` (``-1`` if unknown)."""
    keys = [f'{domain}/{v}' for v in raw.reshape(-1).tolist()]
    return id_maps[ITEM].get_indexer(keys).reshape(raw.shape)


class AmazonCDR(PairCDRDataset):
    r"""Amazon dual-domain cross-domain recommendation pairs in the format of
    DisenCDR (Cao et al., SIGIR 2022) and Bi-TGCF (Liu et al., CIKM 2020).

    A pair :obj:`'x_y'` is stored as two folders: ``x_y/`` holds domain
    ``x``, ``y_x/`` holds domain ``y``. Each folder has ``train.txt``,
    ``test.txt``, ``test_original.txt`` (optionally gzipped) with lines
    ``user<TAB>item<TAB>1`` (0-based ids, implicit feedback) and optionally
    ``test_neg_bitgcf.txt`` with Bi-TGCF's fixed negatives
    (``(user, pos_item)<TAB>neg_1 … neg_99``, same row order as
    ``test_original.txt``). User ids are shared by the two folders (one user
    node per id); item ids are per domain. Any pair in this format is
    accepted; the shipped ones are ``sport_cloth``, ``phone_electronic``,
    ``sport_phone`` and ``electronic_cloth``.

    The graph holds **all** rows with the given split in ``interacts.split``:
    ``train.txt`` rows are :obj:`0` (train) and ``test_original.txt`` rows
    :obj:`2` (test; one held-out item per user and domain). ``test.txt`` is
    checked to equal the rows of ``test_original.txt`` whose item occurs in
    the domain's training items (the evaluator drops these "cold-item" rows
    and counts them); their number per domain is stored in
    ``data.num_cold_test_rows`` (``dict[str, int]``). When fixed negatives
    are present, ``data.fixed_neg_edge: long[R]`` indexes the positive's
    ``interacts`` edge and ``data.fixed_neg: long[R, N]`` holds global item
    node ids (padded with ``-1`` if the two domains ship different ``N``).
    Rows whose positive appears among its own negatives (22 and 7 in
    Phone–Elec) are kept as shipped; the candidate code removes and counts
    them. Use with ``GivenSplit`` (+ ``ValidFromTrain``), see
    ``datasets/amazon-disencdr/README.md``.

    Args:
        root (str): folder for the processed cache (``root/processed``).
        pair (str or tuple, optional): ``'x_y'`` or ``('x', 'y')``; the
            domain names are ``x`` and ``y`` in this order.
            (default: :obj:`'sport_cloth'`)
        raw_dir (str, optional): folder holding ``x_y/`` and ``y_x/``
            (e.g. ``../shared/data/amazon-disencdr``; may be read-only).
            (default: ``root/raw``)
        transform (callable, optional): applied on every access.
        pre_transform (callable, optional): applied once before saving.
        force_reload (bool, optional): re-process even when a cache exists.
            (default: :obj:`False`)

    Example:
        >>> ds = AmazonCDR('/tmp/cdr', pair='phone_electronic',
        ...                raw_dir='../shared/data/amazon-disencdr')
        >>> data = ds[0]
        >>> ds.domain_names
        ['phone', 'electronic']
        >>> data.fixed_neg.shape
        torch.Size([6650, 99])
    """

    source_hint = ('The DisenCDR pairs come from GitHub cjx96/DisenCDR (dataset/<x_y>/), Phone-Elec with '
                   'its test_neg lists from sunshinelium/Bi-TGCF (Data/cell_electronic, '
                   'Data/electronic_cell); an offline copy is ../shared/data/amazon-disencdr. Files may be '
                   'gzipped (.txt.gz) or plain (.txt).')

    #: required files of each domain folder (``.txt`` or ``.txt.gz``)
    files: tuple[str, ...] = ('train', 'test', 'test_original')
    #: optional fixed-negatives file of each domain folder
    negatives_file: str = 'test_neg_bitgcf'
    columns: tuple[str, ...] = ('user', 'item', 'label')

    def __init__(self, root: str, pair: str | Sequence[str] = 'sport_cloth', raw_dir: str | None = None,
                 transform: Callable | None = None, pre_transform: Callable | None = None,
                 force_reload: bool = False) -> None:
        self.pair = _split_pair(pair, raw_dir if raw_dir is not None else osp.join(root, 'raw'),
                                self.__class__.__name__)
        super().__init__(root, raw_dir, transform, pre_transform, force_reload)

    @property
    def name(self) -> str:
        return 'amazon_cdr_{}_{}'.format(*self.pair)

    def _read(self, folder: str, stem: str) -> pd.DataFrame:
        df = _read_pairs(self._path(folder, stem), self.columns,
                         fix="Expected lines 'user<TAB>item<TAB>1' (DisenCDR format).")
        bad = df['label'] != 1
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataFormatError(f"{line_of(df, row)}: field 'label' = {df.label.iloc[row]}, expected 1 "
                                  '(implicit feedback: every line is a positive interaction)')
        return df

    def build(self) -> tuple[HeteroData, IdMaps]:
        names = list(self.pair)
        frames: list[pd.DataFrame] = []
        originals: list[pd.DataFrame] = []
        num_cold: dict[str, int] = {}
        offset = 0
        test_offsets: list[int] = []
        for dom, folder in zip(names, self.folders, strict=True):
            train = self._read(folder, 'train')
            test = self._read(folder, 'test')
            orig = self._read(folder, 'test_original')
            for df in (train, orig):
                _check_no_duplicates(df)
            _check_disjoint(orig, train)
            eligible = orig['item'].isin(train['item']).to_numpy()
            self._check_test_is_eligible(orig, eligible, test)
            num_cold[dom] = int((~eligible).sum())
            for df, code in ((train, TRAIN), (orig, TEST)):
                part = pd.DataFrame({'user': df['user'].to_numpy(), 'item': df['item'].to_numpy(),
                                     'domain': dom, 'split': code})
                if code == TEST:
                    test_offsets.append(offset)
                offset += len(part)
                frames.append(part)
            originals.append(orig)
        df = pd.concat(frames, ignore_index=True)
        data, id_maps = from_interactions(df, domains=names, split='split', return_id_maps=True,
                                          source=f'{self.__class__.__name__}(pair={self.pair})')
        data.num_cold_test_rows = num_cold

        edges, negs = [], []
        for dom, folder, orig, start in zip(names, self.folders, originals, test_offsets, strict=True):
            path = _optional_raw(self.raw_dir, f'{folder}/{self.negatives_file}.txt')
            if path is None:
                continue
            keys, raw_neg, lines = _read_fixed_negatives(path)
            self._check_negative_keys(path, keys, lines, orig)
            mapped = _map_items(id_maps, dom, raw_neg)
            if (mapped < 0).any():
                r, c = np.argwhere(mapped < 0)[0]
                raise DataFormatError(f'{path}, line {lines[r]}: negative item {raw_neg[r, c]} does not '
                                      f'occur in {folder}/ (train.txt or test_original.txt) of domain '
                                      f'{dom!r}')
            edges.append(torch.arange(start, start + len(orig), dtype=torch.long))
            negs.append(torch.as_tensor(mapped, dtype=torch.long))
        if negs:
            width = max(n.size(1) for n in negs)
            negs = [torch.nn.functional.pad(n, (0, width - n.size(1)), value=PAD) for n in negs]
            data.fixed_neg_edge = torch.cat(edges)
            data.fixed_neg = torch.cat(negs)
        return data, id_maps

    @staticmethod
    def _check_test_is_eligible(orig: pd.DataFrame, eligible: np.ndarray, test: pd.DataFrame) -> None:
        r"""``test.txt`` must equal, in order, the rows of ``test_original.txt``
        whose item occurs in the domain's training items."""
        exp = orig.loc[eligible, ['user', 'item']].to_numpy()
        got = test[['user', 'item']].to_numpy()
        n = min(len(exp), len(got))
        diff = np.flatnonzero((exp[:n] != got[:n]).any(axis=1))
        if len(diff) == 0 and len(exp) == len(got):
            return
        where = int(diff[0]) if len(diff) else n
        got_row = f'{tuple(got[where].tolist())}' if where < len(got) else 'end of file'
        exp_row = f'{tuple(exp[where].tolist())}' if where < len(exp) else 'end of file'
        line = f"{test.attrs['path']}, line {where + test.attrs['first_line']}"
        raise DataFormatError(
            f'{line}: test.txt must hold exactly the rows of test_original.txt whose item occurs in '
            f'train.txt ({len(exp)} rows, in file order), found {len(got)} rows; first difference: '
            f'(user, item) = {got_row}, expected {exp_row}. Regenerate test.txt or fix test_original.txt.')

    @staticmethod
    def _check_negative_keys(path: str, keys: np.ndarray, lines: np.ndarray, orig: pd.DataFrame) -> None:
        exp = orig[['user', 'item']].to_numpy()
        if len(keys) != len(exp):
            raise DataFormatError(f"{path}: {len(keys)} rows, but {orig.attrs['path']} has {len(exp)}; the "
                                  'fixed negatives must list one row per test_original row, in the same '
                                  'order')
        diff = np.flatnonzero((keys != exp).any(axis=1))
        if len(diff):
            r = int(diff[0])
            raise DataFormatError(f'{path}, line {lines[r]}: (user, pos_item) = {tuple(keys[r].tolist())}, '
                                  f"but line {r + orig.attrs['first_line']} of {orig.attrs['path']} is "
                                  f'{tuple(exp[r].tolist())}; {len(diff)} row(s) out of order')
