r"""Results tables: mean ± std over seeds per model × metric × domain, with the
negative-transfer marker ``↓`` (MODELS.md §1.7)."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ['summarize', 'to_markdown', 'to_csv', 'higher_is_better', 'MARKER']

#: appended to a cell whose mean is worse than the single-domain baseline's on that domain and metric
MARKER = '↓'
_LOWER_IS_BETTER = ('mae', 'rmse', 'logloss')


def higher_is_better(metric: str) -> bool:
    r"""Whether larger values of ``metric`` (e.g. ``'ndcg@10'``, ``'rmse'``) are better."""
    return metric.split('@')[0].lower() not in _LOWER_IS_BETTER


def _split_key(key: str) -> tuple[str, str]:
    metric, sep, dom = key.rpartition('/')
    if not sep or not metric or not dom:
        raise ValueError(f"summarize: result key {key!r} is not '<metric>/<domain>' or "
                         "'<metric>@<k>/<domain>'")
    return metric, dom


def summarize(runs: Mapping[str, Sequence[Mapping[str, float]]], baseline: Mapping[str, str] | None = None,
              metrics: Sequence[str] | None = None, precision: int = 4) -> pd.DataFrame:
    r"""Mean ± std over seeds of every model, metric and domain (MODELS.md §1.7).

    Args:
        runs (Mapping[str, Sequence[dict]]): model name → one Evaluator result
            dict per seed.
        baseline (Mapping[str, str], optional): model name → name of its
            single-domain baseline model (also a key of ``runs``). A cell gets
            ``'↓'`` when its mean is worse than the baseline's mean on that
            metric and domain: lower for ranking/CTR metrics, higher for
            ``mae``/``rmse``/``logloss``. (default: :obj:`None`)
        metrics (Sequence[str], optional): metrics to keep (e.g.
            ``['hr@10', 'ndcg@10']``); all non-count metrics by default.
        precision (int, optional): decimals of the formatted cells.
            (default: :obj:`4`)

    Returns:
        A :class:`pandas.DataFrame` of ``'mean ± std'`` strings with rows =
        model and columns = ``(metric, domain)``; ``df.attrs`` holds the
        numeric frames ``'mean'``, ``'std'`` and ``'count'`` (number of seeds)
        and the boolean frame ``'negative_transfer'``. The std is the sample
        std (``ddof=1``), 0 for a single seed.

    Example:
        >>> df = summarize({'SMF': [{'hr@10/Sport': 0.5}, {'hr@10/Sport': 0.7}],
        ...                 'CMF': [{'hr@10/Sport': 0.4}]}, baseline={'CMF': 'SMF'})
        >>> df.loc['CMF', ('hr@10', 'Sport')]
        '0.4000 ± 0.0000 ↓'
    """
    if not runs:
        raise ValueError('summarize: runs is empty; pass {model_name: [result_dict, ...]}')
    keep = None if metrics is None else {m.lower() for m in metrics}
    means: dict[str, dict[tuple[str, str], float]] = {}
    stds: dict[str, dict[tuple[str, str], float]] = {}
    counts: dict[str, dict[tuple[str, str], float]] = {}
    columns: dict[tuple[str, str], None] = {}
    for model, results in runs.items():
        if isinstance(results, Mapping):
            raise TypeError(f'summarize: runs[{model!r}] must be a list of result dicts (one per seed), '
                            'got a single dict; wrap it in a list')
        if len(results) == 0:
            raise ValueError(f'summarize: runs[{model!r}] holds no result')
        values: dict[tuple[str, str], list[float]] = {}
        for result in results:
            for key, val in result.items():
                metric, dom = _split_key(key)
                if metric.startswith('num_') or (keep is not None and metric.lower() not in keep):
                    continue
                values.setdefault((metric, dom), []).append(float(val))
        means[model], stds[model], counts[model] = {}, {}, {}
        for col, vals in values.items():
            columns.setdefault(col, None)
            arr = np.asarray([v for v in vals if not math.isnan(v)], dtype=float)
            means[model][col] = float(arr.mean()) if arr.size else float('nan')
            stds[model][col] = float(arr.std(ddof=1)) if arr.size > 1 else 0.0 if arr.size else float('nan')
            counts[model][col] = float(arr.size)
    if metrics is not None and not columns:
        raise ValueError(f'summarize: none of metrics={list(metrics)} appears in the results')
    cols = pd.MultiIndex.from_tuples(list(columns), names=['metric', 'domain'])
    models = list(runs)
    mean = pd.DataFrame.from_dict(means, orient='index').reindex(index=models, columns=cols)
    std = pd.DataFrame.from_dict(stds, orient='index').reindex(index=models, columns=cols)
    count = pd.DataFrame.from_dict(counts, orient='index').reindex(index=models, columns=cols).fillna(0)

    worse = pd.DataFrame(False, index=models, columns=cols)
    for model, base in (baseline or {}).items():
        for name in (model, base):
            if name not in runs:
                raise KeyError(f'summarize: baseline maps {model!r} -> {base!r}, but {name!r} is not in runs '
                               f'(models: {models})')
        for col in cols:
            m, b = mean.at[model, col], mean.at[base, col]
            if math.isnan(m) or math.isnan(b):
                continue
            worse.at[model, col] = bool(m < b) if higher_is_better(col[0]) else bool(m > b)

    table = pd.DataFrame('', index=models, columns=cols, dtype=object)
    for model in models:
        for col in cols:
            m, s = mean.at[model, col], std.at[model, col]
            if math.isnan(m):
                table.at[model, col] = '–'
                continue
            cell = f'{m:.{precision}f} ± {s:.{precision}f}'
            if worse.at[model, col]:
                cell += f' {MARKER}'
            table.at[model, col] = cell
    table.index.name = 'model'
    table.attrs = {'mean': mean, 'std': std, 'count': count, 'negative_transfer': worse}
    return table


def _flat_columns(df: pd.DataFrame) -> list[str]:
    if isinstance(df.columns, pd.MultiIndex):
        return ['/'.join(str(c) for c in col) for col in df.columns]
    return [str(c) for c in df.columns]


def _escape(text: object) -> str:
    return str(text).replace('|', '\\|').replace('\n', ' ')


def to_markdown(df: pd.DataFrame) -> str:
    r"""A GitHub pipe table of ``df`` (column names ``metric/domain``), without the tabulate dependency."""
    index_name = df.index.name or ''
    header = [index_name] + _flat_columns(df)
    lines = ['| ' + ' | '.join(_escape(h) for h in header) + ' |',
             '|' + '|'.join(['---'] + ['---:'] * (len(header) - 1)) + '|']
    for idx, row in zip(df.index, df.itertuples(index=False), strict=True):
        lines.append('| ' + ' | '.join(_escape(v) for v in (idx, *row)) + ' |')
    return '\n'.join(lines) + '\n'


def to_csv(df: pd.DataFrame, path: str | None = None) -> str:
    r"""``df`` as CSV with flattened ``metric/domain`` columns; also written to ``path`` when given."""
    flat = df.copy()
    flat.attrs = {}
    flat.columns = _flat_columns(df)
    text = flat.to_csv()
    if path is not None:
        with open(path, 'w', encoding='utf-8') as f:
            f.write(text)
    return text
