r"""Collect hand-picked hyper-parameter points — separate ``cdrgraph train --models M --seeds K --set ...`` runs
of one config, one change at a time rather than a grid — into one results folder, and select among them on
validation, as ``cdrgraph sweep`` does for a grid. The issue-4 hyper-parameter checks
(``benchmarks/results/unicdr_hparam_check_*``) are made with it.

Usage::

    python benchmarks/collect_points.py benchmarks/results/unicdr_hparam_check_phone_electronic \
        none=runs/pe_base lambda_loss_1.0=runs/pe_ll1.0 lightgcn=runs/pe_lightgcn

writes into the output folder

- ``<point>/config.yaml`` and ``<point>/results.csv`` of every run (no checkpoints),
- ``sweep.csv``: the runs' ``results.csv`` rows with a first column ``point``,
- ``validation_curves.csv``: one row per validated epoch of every fit (``point``, ``model``, ``seed``,
  ``domain_model`` — the domain of a per-domain model, else empty —, ``stage``, ``epoch``, ``steps``,
  ``train_loss``, ``seconds`` and the validation metrics of the monitored domain), read from the runs'
  ``checkpoints/*/seed*/last.pt`` (a run folder without checkpoints contributes no curve),
- ``selection.md``: per model, the point with the best validation value of its monitor (mean over seeds;
  :func:`cdrgraph.cli.experiment.select_on_validation`), the test value beside it but not used to choose,

and prints ``selection.md``. Runs without ``val_`` rows in ``results.csv`` (written before the CLI recorded them)
are refused rather than selected on test.
"""
from __future__ import annotations

import argparse
import glob
import os
import os.path as osp
import shutil
import sys

import pandas as pd
import torch

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.dirname(HERE))

from cdrgraph.cli.experiment import (  # noqa: E402
    RESULT_COLUMNS,
    VAL_PREFIX,
    load_run,
    select_on_validation,
    selection_markdown,
)


def _curves(point: str, folder: str, monitor_domain: str) -> list[dict]:
    rows = []
    for path in sorted(glob.glob(osp.join(folder, 'checkpoints', '*', 'seed*', '**', 'last.pt'), recursive=True)):
        rel = osp.relpath(osp.dirname(path), osp.join(folder, 'checkpoints')).split(os.sep)
        model, seed, domain_model = rel[0], int(rel[1].removeprefix('seed')), '/'.join(rel[2:])
        ckpt = torch.load(path, map_location='cpu', weights_only=False)
        for h in ckpt.get('history', []):
            metrics = {f'val_{k}'.replace('/', '_'): v for k, v in h.items() if k.endswith(f'/{monitor_domain}')}
            if not metrics:
                continue
            rows.append({'point': point, 'model': model, 'seed': seed, 'domain_model': domain_model,
                         'stage': h.get('stage'), 'epoch': h.get('epoch'), 'steps': h.get('steps'),
                         'train_loss': h.get('loss'), 'seconds': h.get('seconds'), **metrics})
    return rows


def collect_points(out: str, points: dict[str, str]) -> str:
    r"""Write the folder described in the module docstring and return the
    Markdown of the selection.

    Args:
        out (str): the output folder (created).
        points (dict[str, str]): point name -> output folder of one
            ``cdrgraph train`` run of the checked config.
    """
    if not points:
        raise ValueError('collect_points: give at least one POINT=FOLDER')
    frames, curves, configs = [], [], {}
    for point, folder in points.items():
        cfg, df = load_run(folder)
        if not df['metric'].str.startswith(VAL_PREFIX).any():
            raise ValueError(f'{folder}/results.csv has no {VAL_PREFIX} rows (run written before the CLI recorded '
                             'validation); re-run it rather than select on test')
        configs[point] = cfg
        frames.append(df.assign(point=point)[['point', *RESULT_COLUMNS]])
        monitor = str((cfg.get('train') or {}).get('monitor', 'ndcg@10/mean'))
        curves.extend(_curves(point, folder, monitor.rpartition('/')[2] or 'mean'))
        dest = osp.join(out, point)
        os.makedirs(dest, exist_ok=True)
        for name in ('config.yaml', 'results.csv'):
            shutil.copyfile(osp.join(folder, name), osp.join(dest, name))
    sweep = pd.concat(frames, ignore_index=True)
    sweep.to_csv(osp.join(out, 'sweep.csv'), index=False)
    base = ['point', 'model', 'seed', 'domain_model', 'stage', 'epoch', 'steps', 'train_loss', 'seconds']
    curves_df = pd.DataFrame(curves)
    curves_df.reindex(columns=list(dict.fromkeys(base + list(curves_df.columns)))).to_csv(
        osp.join(out, 'validation_curves.csv'), index=False)
    # each model selected under the config of the first point that ran it (its monitor and monitor_mode)
    parts = []
    for _, group in sweep.groupby('model', sort=False):
        first = str(group['point'].iloc[0])
        parts.append(select_on_validation(group, configs[first]))
    text = selection_markdown(pd.concat(parts, ignore_index=True))
    with open(osp.join(out, 'selection.md'), 'w') as f:
        f.write(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('out')
    parser.add_argument('points', nargs='+', help='POINT=FOLDER, one per run')
    args = parser.parse_args()
    points = {}
    for spec in args.points:
        name, sep, folder = spec.partition('=')
        if not sep or not name or not folder:
            parser.error(f'{spec!r}: expected POINT=FOLDER, e.g. lambda_loss_1.0=runs/pe_ll1.0')
        if name in points:
            parser.error(f'point {name!r} given twice')
        points[name] = folder
    print(collect_points(args.out, points))


if __name__ == '__main__':
    main()
