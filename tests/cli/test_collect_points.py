"""benchmarks/collect_points.py: hand-picked hyper-parameter runs collected and selected on validation."""
from __future__ import annotations

import os.path as osp

import pandas as pd
import pytest

from cdrgraph.cli.config import validate_config
from cdrgraph.cli.experiment import run_experiment


def test_points_are_collected_and_selected_on_validation(tiny_cfg, tmp_path, benchmark_script):
    mod = benchmark_script('collect_points')
    tiny_cfg['train'] = {'epochs': 4, 'batch_size': 16, 'eval_every': 1, 'patience': 10, 'monitor': 'ndcg@5/mean'}
    tiny_cfg['models'] = {'BPRMF': {'model': {'embedding_dim': 4}}, 'Popularity': {}}
    folders = {}
    for lr in (0.0001, 0.05):
        cfg = validate_config({**tiny_cfg, 'models': {'BPRMF': {'model': {'embedding_dim': 4}, 'train': {'lr': lr}}}})
        folders[f'lr_{lr}'] = str(tmp_path / f'lr{lr}')
        run_experiment(cfg, folders[f'lr_{lr}'])
    folders['pop'] = str(tmp_path / 'pop')
    run_experiment(validate_config({**tiny_cfg, 'models': {'Popularity': {}}}), folders['pop'])
    out = tmp_path / 'check'
    text = mod.collect_points(str(out), folders)

    sweep = pd.read_csv(out / 'sweep.csv', dtype={'domain': str})
    assert list(sweep.columns[:2]) == ['point', 'model']
    assert len(sweep) == sum(len(pd.read_csv(osp.join(f, 'results.csv'))) for f in folders.values())
    for point, folder in folders.items():
        assert (out / point / 'config.yaml').read_text() == open(osp.join(folder, 'config.yaml')).read()
        assert not (out / point / 'checkpoints').exists()

    def value(point, metric):
        df = pd.read_csv(osp.join(folders[point], 'results.csv'), dtype={'domain': str})
        return float(df[(df['metric'] == metric) & (df['domain'] == 'mean') & (df['model'] == 'BPRMF')]['value']
                     .iloc[0])
    val = {p: value(p, 'val_ndcg@5') for p in ('lr_0.0001', 'lr_0.05')}
    assert val['lr_0.0001'] != val['lr_0.05']
    chosen = max(val, key=val.get)
    # the selection is the validation argmax, with that point's test value beside it
    row = next(line for line in text.splitlines() if line.startswith('| BPRMF |'))
    cells = [c.strip() for c in row.strip('|').split('|')]
    assert cells[1] == chosen and float(cells[3]) == pytest.approx(val[chosen], abs=1e-4)
    assert float(cells[4]) == pytest.approx(value(chosen, 'ndcg@5'), abs=1e-4)
    assert cells[6] == '2'   # two BPRMF points compared
    # Popularity rides along in every sampled-protocol run: same validation value, the first point kept on ties
    pop = next(line for line in text.splitlines() if line.startswith('| Popularity |'))
    assert [c.strip() for c in pop.strip('|').split('|')][1::5] == ['lr_0.0001', '3']
    assert (out / 'selection.md').read_text() == text

    # every validated epoch of each BPRMF fit, from the checkpoints, ending at the best value reported
    curves = pd.read_csv(out / 'validation_curves.csv')
    for point in ('lr_0.0001', 'lr_0.05'):
        c = curves[curves['point'] == point]
        assert sorted(c['epoch']) == [0, 1, 2, 3]
        assert c['val_ndcg@5_mean'].max() == pytest.approx(val[point], abs=1e-6)

    # a run without validation rows is refused, not selected on test
    df = pd.read_csv(osp.join(folders['pop'], 'results.csv'))
    df[~df['metric'].str.startswith('val_')].to_csv(osp.join(folders['pop'], 'results.csv'), index=False)
    with pytest.raises(ValueError, match='no val_ rows'):
        mod.collect_points(str(tmp_path / 'again'), folders)
