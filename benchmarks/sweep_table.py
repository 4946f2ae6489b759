r"""One Markdown table from a ``cdrgraph sweep`` folder: models as rows, (metric, grid value) as columns, each
cell mean ± std over seeds for one domain (default ``mean``), the best mean of every column in bold (minimum for
errors such as MAE). The README's cold-start tables are made with it.

Usage::

    python benchmarks/sweep_table.py benchmarks/results/cold_start_cdrib_game_video --metrics hr@10,ndcg@10,mrr
    python benchmarks/sweep_table.py benchmarks/results/cold_start_douban_book_music --metrics mae,rmse
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

import pandas as pd

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.dirname(HERE))

from cdrgraph.cli.experiment import RESULT_COLUMNS  # noqa: E402
from cdrgraph.metrics.report import higher_is_better, to_markdown  # noqa: E402


def sweep_table(folder: str, metrics: list[str], domain: str = 'mean', protocol: str | None = None,
                label: str | None = None) -> str:
    path = osp.join(folder, 'sweep.csv')
    if not osp.exists(path):
        raise FileNotFoundError(f'{path} is missing: pass a folder written by `cdrgraph sweep` (or `cdrgraph merge`)')
    df = pd.read_csv(path, dtype={'domain': str}, keep_default_na=False)
    grid = [c for c in df.columns if c not in RESULT_COLUMNS]
    if len(grid) != 1:
        raise ValueError(f'{path}: grid columns {grid}; this table takes a one-axis sweep')
    axis = grid[0]
    protocols = sorted(df['protocol'].unique())
    protocol = protocol or (protocols[0] if len(protocols) == 1 else None)
    if protocol not in protocols:
        raise ValueError(f'{path}: protocols {protocols}; choose one with --protocol')
    df = df[(df['protocol'] == protocol) & (df['domain'] == domain)]
    missing = [m for m in metrics if m not in set(df['metric'])]
    if missing:
        raise ValueError(f'{path}: no metric {missing} for domain {domain!r} (have {sorted(set(df["metric"]))})')
    df = df[df['metric'].isin(metrics)].assign(value=lambda d: pd.to_numeric(d['value']))
    stats = df.groupby(['model', 'metric', axis], sort=False)['value'].agg(['mean', 'std', 'count'])
    values = list(dict.fromkeys(df[axis]))
    models = list(dict.fromkeys(df['model']))
    name = label or axis.rsplit('.', 1)[-1]
    header = ['model'] + [f'{m} {name}={v}' for v in values for m in metrics]
    rows = []
    best = {}
    for v in values:
        for m in metrics:
            col = stats.xs((m, v), level=('metric', axis))['mean']
            best[(m, v)] = col.max() if higher_is_better(m) else col.min()
    for model in models:
        cells = [model]
        for v in values:
            for m in metrics:
                if (model, m, v) not in stats.index:
                    cells.append('—')
                    continue
                mean, std, n = stats.loc[(model, m, v)]
                text = f'{mean:.4f} ± {0.0 if n < 2 else std:.4f}'
                cells.append(f'**{text}**' if mean == best[(m, v)] else text)
        rows.append(cells)
    seeds = sorted(df['seed'].unique().tolist())
    table = to_markdown(pd.DataFrame(rows, columns=header).set_index('model'))
    return table + f'\n(mean ± std over seeds {seeds}, domain {domain!r}, protocol {protocol})\n'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('folder')
    parser.add_argument('--metrics', required=True, help='comma-separated, e.g. hr@10,ndcg@10,mrr')
    parser.add_argument('--domain', default='mean')
    parser.add_argument('--protocol', default=None)
    parser.add_argument('--label', default=None, help='column label of the grid axis (default: its last key)')
    args = parser.parse_args()
    print(sweep_table(args.folder, args.metrics.split(','), args.domain, args.protocol, args.label))


if __name__ == '__main__':
    main()
