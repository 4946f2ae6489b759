r"""One Markdown summary across several experiment folders (one per CDR scenario): a table of one metric's mean
over domains (mean ± std over seeds, each scenario's own evaluation protocol) with models as columns, and a table
of pairwise checks — for ``A:B``, on how many domains A's seed-mean is at least B's and whether it is on the
domain mean. The README's UniCDR scenario summary (issue 4) is made with it.

Usage::

    python benchmarks/scenario_summary.py benchmarks/results/unicdr_bench_* --metric ndcg@10 \
        --compare UniCDRPlus:UniCDR,UniCDR:LightGCN --models Popularity,SMF,LightGCN,UniCDR,UniCDRPlus

Each folder is the output of ``cdrgraph train --out`` or ``cdrgraph merge --out`` (``config.yaml`` and
``results.csv``).
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

import pandas as pd

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.dirname(HERE))

from cdrgraph.cli.experiment import load_run  # noqa: E402
from cdrgraph.metrics.report import higher_is_better, to_markdown  # noqa: E402


def _load(folder: str, metric: str) -> tuple[str, pd.DataFrame]:
    cfg, df = load_run(folder)
    protocol = (cfg.get('evaluation') or {}).get('protocol')
    df = df[(df['protocol'] == protocol) & (df['metric'] == metric)]
    if df.empty:
        raise ValueError(f'{folder}/results.csv: no {metric!r} rows for the config\'s protocol {protocol!r}')
    return cfg.get('name') or osp.basename(osp.normpath(folder)), df


def scenario_summary(folders: list[str], metric: str = 'ndcg@10',
                     compare: list[tuple[str, str]] | None = None, models: list[str] | None = None) -> str:
    r"""Markdown text of the two tables (see the module docstring); ``models``
    picks and orders the first table's columns (default: every model, in
    the order the folders list them)."""
    runs = [_load(f, metric) for f in folders]
    found = list(dict.fromkeys(m for _, df in runs for m in df['model']))
    unknown = [m for m in models or [] if m not in found]
    if unknown:
        raise ValueError(f'models {unknown} are in none of the folders (they hold {found})')
    models = list(models or found)
    better = higher_is_better(metric)
    first = []
    for name, df in runs:
        stats = df[df['domain'] == 'mean'].groupby('model')['value'].agg(['mean', 'std', 'count'])
        shown = stats['mean'][stats.index.isin(models)]
        best = shown.max() if better else shown.min()
        seeds = sorted(df['seed'].unique().tolist())
        cells = []
        for m in models:
            if m not in stats.index:
                cells.append('—')
                continue
            mean, std, n = stats.loc[m]
            text = f'{mean:.4f} ± {0.0 if n < 2 else std:.4f}' + ('' if n == len(seeds) else f' ({int(n)} seeds)')
            cells.append(f'**{text}**' if mean == best else text)
        first.append([name, ','.join(map(str, seeds)), *cells])
    out = to_markdown(pd.DataFrame(first, columns=['scenario', 'seeds', *models]).set_index('scenario'))
    out += f'\n({metric}, mean over domains; mean ± std over seeds; best of a row in bold)\n'
    if compare:
        head = ['scenario'] + [f'{a} ≥ {b}: domains' for a, b in compare] + [f'{a} ≥ {b}: mean' for a, b in compare]
        rows = []
        for name, df in runs:
            means = df.groupby(['model', 'domain'])['value'].mean()
            counts, verdicts = [], []
            for a, b in compare:
                if a not in means.index.get_level_values(0) or b not in means.index.get_level_values(0):
                    counts.append('—')
                    verdicts.append('—')
                    continue
                ma, mb = means.loc[a], means.loc[b]
                domains = [d for d in ma.index if d != 'mean' and d in mb.index]
                wins = sum(bool(ma[d] >= mb[d]) if better else bool(ma[d] <= mb[d]) for d in domains)
                counts.append(f'{wins} of {len(domains)}')
                ok = ma['mean'] >= mb['mean'] if better else ma['mean'] <= mb['mean']
                verdicts.append(f'{"yes" if ok else "no"} ({ma["mean"]:.4f} vs {mb["mean"]:.4f})')
            rows.append([name, *counts, *verdicts])
        note = f'(seed-means of {metric} per domain; "≥" reads "≤" for error metrics)'
        out += '\n' + to_markdown(pd.DataFrame(rows, columns=head).set_index('scenario')) + f'\n{note}\n'
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('folders', nargs='+')
    parser.add_argument('--metric', default='ndcg@10')
    parser.add_argument('--compare', default='', help='comma-separated A:B pairs, e.g. UniCDRPlus:UniCDR')
    parser.add_argument('--models', default='', help='comma-separated columns of the first table, in order')
    args = parser.parse_args()
    pairs = [tuple(p.split(':')) for p in args.compare.split(',') if p]
    bad = [p for p in pairs if len(p) != 2 or not all(p)]
    if bad:
        parser.error(f'--compare: expected MODEL:MODEL pairs, got {[":".join(p) for p in bad]}')
    print(scenario_summary(args.folders, args.metric, pairs, [m for m in args.models.split(',') if m] or None))


if __name__ == '__main__':
    main()
