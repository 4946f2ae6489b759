r"""Merge the outputs of several ``cdrgraph depth`` runs (e.g. one per combination mode, run in parallel on
separate cores) into one folder with the CSVs and redrawn figures.

Usage::

    python benchmarks/merge_depth.py runs/depth_mean runs/depth_last --out benchmarks/results/depth_x \
        --title "UniCDRPlus on Sport-Cloth"
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import shutil
import sys

import pandas as pd

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.dirname(HERE))

from cdrgraph.cli.depth import plot_metric_vs_depth, plot_smoothness_vs_layer  # noqa: E402


def merge(dirs: list[str], out: str, metric: str = 'ndcg@10', title: str | None = None) -> list[str]:
    metrics, smooth = [], []
    for d in dirs:
        for name, acc in (('depth_metrics.csv', metrics), ('depth_smoothness.csv', smooth)):
            path = osp.join(d, name)
            if not osp.exists(path):
                raise FileNotFoundError(f'{path} is missing: pass folders written by `cdrgraph depth`')
            acc.append(pd.read_csv(path))
    m = pd.concat(metrics, ignore_index=True)
    s = pd.concat(smooth, ignore_index=True)
    if m['model'].nunique() > 1:
        raise ValueError(f'the folders hold different models {sorted(m["model"].unique())}; merge runs of one model')
    key = ['model', 'combine', 'num_layers', 'seed', 'protocol', 'metric', 'domain']
    dup = m.duplicated(key)
    if dup.any():
        raise ValueError(f'{int(dup.sum())} metric rows appear in several folders (same model, mode, depth and '
                         'seed); merge runs of different modes or depths')
    os.makedirs(out, exist_ok=True)
    m.to_csv(osp.join(out, 'depth_metrics.csv'), index=False)
    s.to_csv(osp.join(out, 'depth_smoothness.csv'), index=False)
    if osp.exists(osp.join(dirs[0], 'config.yaml')):
        shutil.copy(osp.join(dirs[0], 'config.yaml'), osp.join(out, 'config.yaml'))
    return [plot_metric_vs_depth(m, osp.join(out, 'metric_vs_depth.png'), metric=metric, title=title),
            plot_smoothness_vs_layer(s, osp.join(out, 'smoothness_vs_layer.png'), title=title)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('dirs', nargs='+')
    parser.add_argument('--out', required=True)
    parser.add_argument('--metric', default='ndcg@10')
    parser.add_argument('--title', default=None)
    args = parser.parse_args()
    for path in merge(args.dirs, args.out, args.metric, args.title):
        print(f'written {path}')


if __name__ == '__main__':
    main()
