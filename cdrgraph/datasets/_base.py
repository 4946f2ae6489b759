r"""Shared machinery of the cdrgraph datasets (private): reading raw text files
with errors that name file and line, the InMemoryDataset base with a
read-only raw directory, atomic processing and persisted raw-id maps."""
from __future__ import annotations

import json
import os
import os.path as osp
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from torch_geometric.data import HeteroData, InMemoryDataset

from cdrgraph.data.build import IdMaps
from cdrgraph.data.schema import domain_names, validate


class DataFormatError(ValueError):
    r"""A raw data file does not follow its documented format."""


def read_table(path: str, columns: Sequence[str], *, sep: str = '\t', header: int | None = None,
               int_columns: Sequence[str] = (), float_columns: Sequence[str] = (),
               comment: str | None = None, fix: str = '') -> pd.DataFrame:
    r"""Read a (possibly gzipped) delimited text file into a DataFrame of
    strings, then convert ``int_columns``/``float_columns``.

    Any malformed row (wrong number of fields), non-integer id or
    non-numeric value raises :class:`DataFormatError` naming the file, the
    1-based line number, the field and the offending text.

    Args:
        path (str): file path (``.gz`` is decompressed transparently).
        columns (list[str]): names of the expected fields, in order.
        sep (str): field separator; ``r'\s+'`` for whitespace.
        header (int, optional): ``0`` when the first line is a header to skip.
        int_columns, float_columns: columns to convert.
        comment (str, optional): comment prefix.
        fix (str): a hint appended to error messages.
    """
    if not osp.exists(path):
        raise FileNotFoundError(f'{path}: file not found. {fix}'.strip())
    first_line = 1 + (1 if header is not None else 0)
    bad: list[tuple[int, str]] = []

    def on_bad(fields: list[str]) -> None:
        bad.append((len(fields), sep.join(fields)))
        return None

    kwargs = dict(sep=sep, header=None, skiprows=1 if header is not None else 0, names=list(columns), dtype=str,
                  comment=comment, keep_default_na=False, skip_blank_lines=True)
    try:  # fast C parser first; the Python parser only to locate malformed lines
        df = pd.read_csv(path, engine='c', on_bad_lines='error', **kwargs)
    except pd.errors.ParserError:
        try:
            df = pd.read_csv(path, engine='python', on_bad_lines=on_bad, **kwargs)
        except (pd.errors.ParserError, UnicodeDecodeError, EOFError, OSError) as e:  # pragma: no cover - rare
            raise DataFormatError(f'{path}: cannot parse ({e}). {fix}'.strip()) from e
    except (UnicodeDecodeError, EOFError, OSError) as e:  # pragma: no cover - rare
        raise DataFormatError(f'{path}: cannot parse ({e}). {fix}'.strip()) from e
    if bad:
        # locate the first bad line by re-scanning (cheap: only on error)
        line_no = _first_bad_line(path, len(columns), sep, first_line)
        raise DataFormatError(f'{path}, line {line_no}: expected {len(columns)} fields {list(columns)}, got '
                              f'{bad[0][0]} ({bad[0][1]!r}); {len(bad)} malformed line(s) in all. {fix}'.strip())
    short = (df[list(columns)].isna() | df[list(columns)].eq('')).any(axis=1) if len(df) else pd.Series([], dtype=bool)
    if short.any():
        row = int(np.flatnonzero(short.to_numpy())[0])
        raise DataFormatError(f'{path}, line {_line_number(path, row, first_line)}: expected {len(columns)} '
                              f'fields {list(columns)}, got a short row {df.iloc[row].tolist()!r}. {fix}'.strip())
    for col in int_columns:
        num = pd.to_numeric(df[col], errors='coerce')
        ok = num.notna() & (num == np.floor(num.fillna(0)))
        if not ok.all():
            row = int(np.flatnonzero(~ok.to_numpy())[0])
            raise DataFormatError(f"{path}, line {_line_number(path, row, first_line)}: field '{col}' must be an "
                                  f'integer, got {df[col].iloc[row]!r}. {fix}'.strip())
        df[col] = num.astype(np.int64)
    for col in float_columns:
        num = pd.to_numeric(df[col], errors='coerce')
        ok = num.notna() & np.isfinite(num.to_numpy(dtype=float, na_value=np.nan))
        if not ok.all():
            row = int(np.flatnonzero(~ok.to_numpy())[0])
            raise DataFormatError(f"{path}, line {_line_number(path, row, first_line)}: field '{col}' must be a finite "
                                  f"number, got "
                                  f'{df[col].iloc[row]!r}. {fix}'.strip())
        df[col] = num.astype(np.float64)
    df.attrs['path'] = path
    df.attrs['first_line'] = first_line
    return df


def _first_bad_line(path: str, ncols: int, sep: str, first_line: int) -> int:
    import gzip
    import re
    opener = gzip.open if path.endswith('.gz') else open
    splitter = re.compile(sep) if len(sep) > 1 else None
    with opener(path, 'rt') as f:
        for i, line in enumerate(f, start=1):
            if i < first_line:
                continue
            line = line.rstrip('\n').rstrip('\r')
            if not line:
                continue
            n = len(splitter.split(line.strip())) if splitter else len(line.split(sep))
            if n != ncols:
                return i
    return -1


def _line_number(path: str, row: int, first_line: int) -> int:
    import gzip
    opener = gzip.open if path.endswith('.gz') else open
    seen = -1
    with opener(path, 'rt') as f:
        for i, line in enumerate(f, start=1):
            if i < first_line or not line.strip():
                continue
            seen += 1
            if seen == row:
                return i
    return row + first_line


def line_of(df: pd.DataFrame, row: int) -> str:
    r"""``'<path>, line <n>'`` of DataFrame row ``row`` read by :func:`read_table`
    (blank lines accounted for)."""
    path = df.attrs.get('path', '?')
    first = df.attrs.get('first_line', 1)
    line = _line_number(path, row, first) if osp.exists(path) else row + first
    return f'{path}, line {line}'


def check_range(df: pd.DataFrame, col: str, low: float, high: float, fix: str = '') -> None:
    r"""Raise :class:`DataFormatError` at the first value of ``col`` outside ``[low, high]``."""
    bad = (df[col] < low) | (df[col] > high)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataFormatError(f"{line_of(df, row)}: field '{col}' = {df[col].iloc[row].item()!r} is outside "
                              f'[{low}, {high}]. {fix}'.strip())


# ---------------------------------------------------------------------------
# small private helpers shared by the real-data loaders of this package
# ---------------------------------------------------------------------------
def _resolve_raw(raw_dir: str, name: str) -> str:
    r"""``name + '.gz'`` when that file exists in ``raw_dir``, else ``name``
    when the uncompressed file exists, else ``name + '.gz'`` (reported
    missing)."""
    if osp.exists(osp.join(raw_dir, name + '.gz')):
        return name + '.gz'
    if osp.exists(osp.join(raw_dir, name)):
        return name
    return name + '.gz'


def _optional_raw(raw_dir: str, name: str) -> str | None:
    r"""Path of an optional raw file (``.gz`` or plain) or :obj:`None`."""
    rel = _resolve_raw(raw_dir, name)
    path = osp.join(raw_dir, rel)
    return path if osp.exists(path) else None


def _split_pair(pair: str | Sequence[str], raw_dir: str, what: str) -> tuple[str, str]:
    r"""Split ``'x_y'`` into ``('x', 'y')``; with several underscores pick the
    split whose two folders ``x_y`` and ``y_x`` exist in ``raw_dir``."""
    if not isinstance(pair, str):
        parts = tuple(pair)
        if len(parts) != 2 or not all(isinstance(p, str) and p for p in parts) or parts[0] == parts[1]:
            raise ValueError(f"{what}: pair must be 'x_y' or two different domain names ('x', 'y'), "
                             f'got {pair!r}')
        return parts[0], parts[1]
    cands = [(pair[:i], pair[i + 1:]) for i, c in enumerate(pair) if c == '_']
    cands = [(x, y) for x, y in cands if x and y and x != y]
    if not cands:
        raise ValueError(f"{what}: pair must look like 'x_y' (folders x_y/ and y_x/ hold the two domains), "
                         f'got {pair!r}')
    if len(cands) == 1:
        return cands[0]
    found = [(x, y) for x, y in cands
             if osp.isdir(osp.join(raw_dir, f'{x}_{y}')) and osp.isdir(osp.join(raw_dir, f'{y}_{x}'))]
    if len(found) == 1:
        return found[0]
    raise ValueError(f'{what}: pair {pair!r} is ambiguous (possible splits {cands}, folders found in '
                     f'{raw_dir}: {found}); pass the two domain names explicitly, e.g. '
                     f"pair=('{cands[0][0]}', '{cands[0][1]}')")


def _read_pairs(path: str, columns: Sequence[str], float_columns: Sequence[str] = (),
                fix: str = '') -> pd.DataFrame:
    r"""Read an interaction file with integer ``user``/``item`` ids; an empty
    file or a negative id raises :class:`DataFormatError` naming the file."""
    ints = [c for c in columns if c not in float_columns]
    df = read_table(path, columns, int_columns=ints, float_columns=float_columns, fix=fix)
    if len(df) == 0:
        raise DataFormatError(f'{path}: the file holds no interactions; every domain file must hold at least '
                              f'one row {list(columns)}. {fix}'.strip())
    for col in ('user', 'item'):
        neg = df[col] < 0
        if neg.any():
            row = int(np.flatnonzero(neg.to_numpy())[0])
            raise DataFormatError(f"{line_of(df, row)}: field '{col}' = {df[col].iloc[row]} is negative; "
                                  f'ids must be non-negative integers. {fix}'.strip())
    return df


def _check_no_duplicates(df: pd.DataFrame) -> None:
    dup = df.duplicated(subset=['user', 'item'])
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise DataFormatError(f'{line_of(df, row)}: duplicate (user, item) = ({df.user.iloc[row]}, '
                              f'{df.item.iloc[row]}); {int(dup.sum())} duplicate row(s) in the file. '
                              'Remove them.')


def _check_disjoint(held: pd.DataFrame, train: pd.DataFrame) -> None:
    r"""No held-out (user, item) pair may also be a training pair."""
    known = pd.MultiIndex.from_frame(train[['user', 'item']])
    leak = pd.MultiIndex.from_frame(held[['user', 'item']]).isin(known)
    if leak.any():
        row = int(np.flatnonzero(leak)[0])
        raise DataFormatError(f'{line_of(held, row)}: held-out pair (user, item) = ({held.user.iloc[row]}, '
                              f"{held.item.iloc[row]}) also occurs in {train.attrs.get('path', 'train')} "
                              f'({int(leak.sum())} such row(s)); an evaluation pair must not be a '
                              'training edge.')



class CDRDataset(InMemoryDataset):
    r"""Base of the cdrgraph datasets: a PyG :class:`InMemoryDataset` holding
    one cdrgraph :class:`HeteroData`.

    Raw files are read from ``raw_dir`` (``root/raw`` by default, or any
    read-only folder such as ``../shared/data/<name>`` given as ``raw_dir``);
    processed files go to ``root/processed``. Nothing is downloaded: a missing
    raw file raises an error that says which files to place where and where
    they come from. Processing is atomic: a failure removes what it wrote.

    Subclasses implement :meth:`build` returning ``(data, id_maps)`` and set
    :attr:`source_hint` (where the raw files come from).
    """

    source_hint: str = ''

    def __init__(self, root: str, raw_dir: str | None = None, transform: Callable | None = None,
                 pre_transform: Callable | None = None, force_reload: bool = False) -> None:
        self._raw_dir = raw_dir
        super().__init__(root, transform, pre_transform, None, force_reload=force_reload)
        self.load(self.processed_paths[0])
        self._id_maps: IdMaps | None = None

    # -------------------------------------------------------------- folders
    @property
    def raw_dir(self) -> str:
        return self._raw_dir if self._raw_dir is not None else osp.join(self.root, 'raw')

    @property
    def processed_dir(self) -> str:
        return osp.join(self.root, 'processed')

    @property
    def name(self) -> str:
        return self.__class__.__name__.lower()

    @property
    def processed_file_names(self) -> list[str]:
        return [f'{self.name}.pt', f'{self.name}_id_maps.json']

    def download(self) -> None:
        missing = [p for p in self.raw_paths if not osp.exists(p)]
        raise FileNotFoundError(
            f'{self.__class__.__name__}: raw file(s) missing: {missing}. cdrgraph never downloads data: place the '
            f'files {self.raw_file_names} under {self.raw_dir} (or pass raw_dir=<folder holding them>). '
            f'{self.source_hint}'.strip())

    # ----------------------------------------------------------- processing
    def build(self) -> tuple[HeteroData, IdMaps]:
        raise NotImplementedError

    def process(self) -> None:
        data, id_maps = self.build()
        if self.pre_transform is not None:
            data = self.pre_transform(data)
        validate(data)
        tmp = self.processed_paths[0] + '.tmp'
        self.save([data], tmp)
        maps_tmp = self.processed_paths[1] + '.tmp'
        with open(maps_tmp, 'w') as f:
            json.dump({k: [str(v) for v in idx.tolist()] for k, idx in id_maps.items()}, f)
        os.replace(maps_tmp, self.processed_paths[1])
        os.replace(tmp, self.processed_paths[0])

    def _process(self) -> None:
        try:
            super()._process()
        except BaseException:
            for p in self.processed_paths:
                for q in (p, p + '.tmp'):
                    if osp.exists(q):
                        os.remove(q)
            for f in ('pre_transform.pt', 'pre_filter.pt'):
                q = osp.join(self.processed_dir, f)
                if osp.exists(q) and not osp.exists(self.processed_paths[0]):
                    os.remove(q)
            raise

    # ------------------------------------------------------------- accessors
    @property
    def domain_names(self) -> list[str]:
        return domain_names(self._data)

    @property
    def id_maps(self) -> IdMaps:
        r"""Raw ids in node order per node type (``pandas.Index``; use
        ``get_indexer`` to map raw ids to node indices)."""
        if self._id_maps is None:
            with open(self.processed_paths[1]) as f:
                raw = json.load(f)
            self._id_maps = {k: pd.Index(v, name=k) for k, v in raw.items()}
        return self._id_maps

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(domains={self.domain_names})'


class PairCDRDataset(CDRDataset):
    r"""A :class:`CDRDataset` of a dual-domain pair :obj:`'x_y'` stored as
    two raw folders, ``x_y/`` (domain ``x``) and ``y_x/`` (domain ``y``),
    each holding the files :attr:`files` (``.txt`` or ``.txt.gz``).

    Subclasses set ``self.pair`` (:func:`_split_pair`) before calling
    ``super().__init__`` and define :attr:`files`.
    """

    pair: tuple[str, str]
    #: required files of each domain folder (``.txt`` or ``.txt.gz``)
    files: tuple[str, ...] = ()

    @property
    def folders(self) -> tuple[str, str]:
        r"""Raw folders of the two domains: ``('x_y', 'y_x')``."""
        x, y = self.pair
        return f'{x}_{y}', f'{y}_{x}'

    @property
    def raw_file_names(self) -> list[str]:
        return [_resolve_raw(self.raw_dir, f'{d}/{f}.txt') for d in self.folders for f in self.files]

    def _path(self, folder: str, stem: str) -> str:
        r"""Path of the raw file ``folder/stem.txt`` (or its ``.gz``)."""
        return osp.join(self.raw_dir, _resolve_raw(self.raw_dir, f'{folder}/{stem}.txt'))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(pair='{self.pair[0]}_{self.pair[1]}', domains={self.domain_names})"
