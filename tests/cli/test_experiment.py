"""Experiment runner: cached splits, per-domain merging, results files, determinism, grids."""
from __future__ import annotations

import os

import pandas as pd
import pytest

import cdrgraph.cli.experiment as experiment
from cdrgraph.cli.config import ConfigError, validate_config
from cdrgraph.cli.experiment import (
    RESULT_COLUMNS,
    _add_means,
    parse_grid,
    prepare_splits,
    run_experiment,
    split_key,
    write_results,
)
from cdrgraph.data.schema import INTERACTS


def test_split_key_covers_data_split_candidates(tiny_cfg):
    cfg = validate_config(tiny_cfg)
    key = split_key(cfg)
    assert key == split_key(validate_config(tiny_cfg)) and len(key) == 16
    for path, value in (('candidates', {'num_negatives': 6, 'seed': 0}), ('split', [{'name': 'LeaveOneOut',
                        'seed': 1}]), ('data', dict(cfg['data'], seed=1))):
        assert split_key(dict(cfg, **{path: value})) != key
    # model and training settings do not change the split
    assert split_key(dict(cfg, train={'epochs': 50})) == key


def test_prepare_splits_builds_once_then_loads(tiny_cfg, monkeypatch):
    cfg = validate_config(tiny_cfg)
    train, val, test = prepare_splits(cfg)
    assert test[INTERACTS].edge_label_neg.size(1) == 5
    folder = os.path.join(tiny_cfg['cache_dir'], f'FakeCDRDataset-{split_key(cfg)}')
    assert os.path.exists(os.path.join(folder, 'manifest.json'))

    def no_rebuild(_):
        raise AssertionError('the dataset must not be rebuilt when the split is cached')

    monkeypatch.setattr(experiment, 'build_dataset', no_rebuild)
    train2, val2, test2 = prepare_splits(cfg)
    assert train2[INTERACTS].edge_index.equal(train[INTERACTS].edge_index)
    assert test2[INTERACTS].edge_label_neg.equal(test[INTERACTS].edge_label_neg)


def test_split_must_yield_tuple(tiny_cfg):
    tiny_cfg['split'] = [{'name': 'SelectDomains', 'domains': ['d0']}]
    with pytest.raises(ConfigError, match=r'must produce a \(train, val, test\) tuple'):
        prepare_splits(validate_config(tiny_cfg))


def test_add_means_recomputed_over_domains():
    merged = {'hr@10/a': 0.2, 'hr@10/b': 0.6, 'mrr/a': 0.1, 'mrr/b': float('nan'), 'num_rows/a': 3.0,
              'num_rows/b': 5.0, 'hr@10/mean': 99.0}
    out = _add_means(merged)
    assert out['hr@10/mean'] == pytest.approx(0.4) and out['mrr/mean'] == pytest.approx(0.1)
    assert 'num_rows/mean' not in out


def test_write_results_marks_negative_transfer(tmp_path):
    rows = []
    for seed, (a, b) in enumerate([(0.5, 0.4), (0.7, 0.4)]):
        for model, proto, value in (('SMF', 'sampled', a), ('CMF', 'sampled', b), ('CMF', 'full', 0.1)):
            rows.append({'model': model, 'seed': seed, 'protocol': proto, 'metric': 'hr@10', 'domain': 'x',
                         'value': value})
    text = write_results(pd.DataFrame(rows, columns=RESULT_COLUMNS), str(tmp_path), {'CMF': 'SMF'}, title='T')
    assert '| CMF | 0.4000 ± 0.0000 ↓ |' in text and '| SMF | 0.6000 ± 0.1414 |' in text
    assert text.index('## Sampled ranking') < text.index('## Full ranking')
    assert pd.read_csv(tmp_path / 'results.csv').shape == (6, 6)


def test_run_experiment_deterministic_and_complete(tiny_cfg, tmp_path):
    tiny_cfg['models']['BPRMF-single'] = {'class': 'BPRMF', 'model': {'embedding_dim': 4},
                                          'select_domains': 'per_domain'}
    tiny_cfg['baseline'] = {'BPRMF': 'BPRMF-single'}
    df1 = run_experiment(tiny_cfg, str(tmp_path / 'a'))
    df2 = run_experiment(tiny_cfg, str(tmp_path / 'b'))
    pd.testing.assert_frame_equal(df1, df2)
    assert list(df1.columns) == RESULT_COLUMNS
    assert list(df1['model'].unique()) == ['Popularity', 'BPRMF', 'BPRMF-single']
    assert set(df1['protocol']) == {'sampled', 'full'}
    single = df1[(df1.model == 'BPRMF-single') & (df1.protocol == 'sampled') & (df1.metric == 'hr@5')]
    assert set(single['domain']) == {'d0', 'd1', 'mean'}
    d = single.set_index('domain')['value']
    assert d['mean'] == pytest.approx((d['d0'] + d['d1']) / 2)
    for sub in ('d0', 'd1'):
        assert os.path.exists(tmp_path / 'a' / 'checkpoints' / 'BPRMF-single' / 'seed0' / sub / 'model.pt')
    assert (tmp_path / 'a' / 'config.yaml').exists()


def test_parse_grid():
    assert parse_grid(['a.b=1,2', 'c=x,null']) == {'a.b': [1, 2], 'c': ['x', None]}
    with pytest.raises(ConfigError, match='given twice'):
        parse_grid(['a=1', 'a=2'])
    with pytest.raises(ConfigError, match='expected key=v1,v2'):
        parse_grid(['a='])


def test_per_domain_overrides_reach_each_domains_model(tiny_cfg, tmp_path):
    import torch

    from cdrgraph.cli.config import ConfigError, validate_config
    cfg = dict(tiny_cfg)
    cfg['models'] = {'SMF': {'class': 'BPRMF', 'model': {'embedding_dim': 4}, 'select_domains': 'per_domain',
                             'domains': {'d1': {'model': {'embedding_dim': 6}, 'train': {'lr': 0.05}}}}}
    out = tmp_path / 'run'
    run_experiment(validate_config(cfg), str(out))
    dims = {}
    for dom in ('d0', 'd1'):
        ck = torch.load(out / 'checkpoints' / 'SMF' / 'seed0' / dom / 'model.pt', weights_only=True)
        dims[dom] = next(v.size(1) for k, v in ck['model'].items() if v.dim() == 2)
    assert dims == {'d0': 4, 'd1': 6}
    # overrides are validated like the rest of the entry
    bad = dict(tiny_cfg)
    bad['models'] = {'SMF': {'class': 'BPRMF', 'select_domains': 'per_domain',
                             'domains': {'d1': {'model': {'embedding_dims': 6}}}}}
    with pytest.raises(ConfigError, match='embedding_dims'):
        validate_config(bad)
    bad['models'] = {'SMF': {'class': 'BPRMF', 'domains': {'d1': {'model': {'embedding_dim': 6}}}}}
    with pytest.raises(ConfigError, match='select_domains: per_domain'):
        validate_config(bad)


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in df.columns if c != 'value']
    return df.sort_values(cols).reset_index(drop=True)


def test_runs_in_parts_merge_into_the_whole_run(tiny_cfg, tmp_path):
    from cdrgraph.cli.experiment import merge_runs
    tiny_cfg['models']['CMF'] = {'model': {'embedding_dim': 4}}
    tiny_cfg['baseline'] = {'CMF': 'BPRMF'}
    whole = run_experiment(tiny_cfg, str(tmp_path / 'whole'), seeds=[0, 1])
    # seed 0 of every model, then seed 1 in two parts: Popularity + BPRMF, and CMF alone
    run_experiment(tiny_cfg, str(tmp_path / 'p0'), seeds=[0])
    part = run_experiment(tiny_cfg, str(tmp_path / 'p1'), seeds=[1], models=['Popularity', 'BPRMF'])
    assert set(part['model']) == {'Popularity', 'BPRMF'}
    run_experiment(tiny_cfg, str(tmp_path / 'p2'), seeds=[1], models=['CMF'])
    merged = merge_runs([str(tmp_path / p) for p in ('p2', 'p0', 'p1')], str(tmp_path / 'm'))
    pd.testing.assert_frame_equal(_sorted(merged), _sorted(whole))
    assert list(merged['model'].unique()) == ['Popularity', 'BPRMF', 'CMF']   # config order, not input order
    assert (tmp_path / 'm' / 'results.md').read_text() == (tmp_path / 'whole' / 'results.md').read_text()
    import yaml
    cfg = yaml.safe_load((tmp_path / 'm' / 'config.yaml').read_text())
    assert cfg['seeds'] == [0, 1] and list(cfg['models']) == ['BPRMF', 'CMF']

    # a model with fewer seeds is named in the table's header
    merge_runs([str(tmp_path / 'p0'), str(tmp_path / 'p1')], str(tmp_path / 'm2'))
    assert 'Fewer seeds for CMF: [0]' in (tmp_path / 'm2' / 'results.md').read_text()
    # the same (model, seed) twice, different experiments, not a run folder
    with pytest.raises(ConfigError, match='Popularity seed 1 is in both'):
        merge_runs([str(tmp_path / 'whole'), str(tmp_path / 'p1')], str(tmp_path / 'x'))
    other = dict(tiny_cfg, train=dict(tiny_cfg['train'], lr=0.5))
    run_experiment(other, str(tmp_path / 'lr'), seeds=[2], models=['BPRMF'])
    with pytest.raises(ConfigError, match=r"differs from .* in \['train'\]"):
        merge_runs([str(tmp_path / 'p0'), str(tmp_path / 'lr')], str(tmp_path / 'x'))
    with pytest.raises(ConfigError, match='no config.yaml'):
        merge_runs([str(tmp_path / 'p0'), str(tmp_path / 'nothing')], str(tmp_path / 'x'))
    with pytest.raises(ConfigError, match="no model entry 'SMF'.*Popularity, BPRMF, CMF"):
        run_experiment(tiny_cfg, str(tmp_path / 'x'), models=['SMF'])


def test_merge_takes_a_model_entry_added_to_the_config_later(tiny_cfg, tmp_path):
    import yaml

    from cdrgraph.cli.experiment import merge_runs
    tiny_cfg['models']['CMF'] = {'model': {'embedding_dim': 4}}
    tiny_cfg['baseline'] = {'CMF': 'BPRMF'}
    run_experiment(tiny_cfg, str(tmp_path / 'old'), seeds=[0])
    # the config gains an entry (and its baseline pair) after the first run; only the new entry is run
    later = dict(tiny_cfg, models={**tiny_cfg['models'], 'MF2': {'class': 'BPRMF', 'model': {'embedding_dim': 2}}},
                 baseline={'CMF': 'BPRMF', 'MF2': 'CMF'})
    run_experiment(later, str(tmp_path / 'new'), seeds=[0], models=['MF2'])
    run_experiment(later, str(tmp_path / 'whole'), seeds=[0])
    merged = merge_runs([str(tmp_path / 'old'), str(tmp_path / 'new')], str(tmp_path / 'm'))
    assert list(merged['model'].unique()) == ['Popularity', 'BPRMF', 'CMF', 'MF2']
    cfg = yaml.safe_load((tmp_path / 'm' / 'config.yaml').read_text())
    assert cfg['baseline'] == {'CMF': 'BPRMF', 'MF2': 'CMF'} and list(cfg['models']) == ['BPRMF', 'CMF', 'MF2']
    # the same table as running the extended config at once, '↓' of the new pair included
    assert (tmp_path / 'm' / 'results.md').read_text() == (tmp_path / 'whole' / 'results.md').read_text()
    assert 'MF2 vs CMF' in (tmp_path / 'm' / 'results.md').read_text()
    # one model, two baselines: refused, naming the run
    clash = dict(later, baseline={'CMF': 'BPRMF', 'MF2': 'BPRMF'})
    run_experiment(clash, str(tmp_path / 'clash'), seeds=[1], models=['MF2'])
    with pytest.raises(ConfigError, match=r"clash/config.yaml: baseline compares 'MF2' with 'BPRMF'.*'CMF'"):
        merge_runs([str(tmp_path / 'm'), str(tmp_path / 'clash')], str(tmp_path / 'x'))


def test_merge_orders_disjoint_parts_like_the_config(tiny_cfg, tmp_path):
    from cdrgraph.cli.experiment import _model_order, merge_runs
    tiny_cfg['models'] = {'BPRMF': {'model': {'embedding_dim': 4}},
                          'MF2': {'class': 'BPRMF', 'model': {'embedding_dim': 2}},
                          'CMF': {'model': {'embedding_dim': 4}}}
    tiny_cfg['baseline'] = {'CMF': 'BPRMF'}
    # the compared model alone first, its baseline in a part that shares no model with it
    run_experiment(tiny_cfg, str(tmp_path / 'a'), seeds=[0], models=['CMF'])
    run_experiment(tiny_cfg, str(tmp_path / 'b'), seeds=[0], models=['Popularity', 'BPRMF', 'MF2'])
    for parts in (['a', 'b'], ['b', 'a']):
        merged = merge_runs([str(tmp_path / p) for p in parts], str(tmp_path / 'm'))
        assert list(merged['model'].unique()) == ['Popularity', 'BPRMF', 'MF2', 'CMF'], parts
    import yaml
    assert list(yaml.safe_load((tmp_path / 'm' / 'config.yaml').read_text())['models']) == ['BPRMF', 'MF2', 'CMF']
    # a part's own order wins over the baseline rule (B stays before its baseline A; C, compared with nothing,
    # goes first); contradicting parts keep first appearance
    assert _model_order([['B', 'A'], ['C']], {'B': 'A'}) == ['C', 'B', 'A']
    assert _model_order([['A', 'B'], ['B', 'A']], None) == ['A', 'B']
    assert _model_order([['X'], ['S', 'L'], ['Y']], {'X': 'S', 'Y': 'L'}) == ['S', 'L', 'X', 'Y']


def test_sweeps_in_parts_merge_point_by_point(tiny_cfg, tmp_path):
    from cdrgraph.cli.experiment import merge_runs, run_sweep
    grid = {'models.BPRMF.model.embedding_dim': [2, 4]}
    whole = run_sweep(tiny_cfg, grid, str(tmp_path / 'whole'), seeds=[0, 1])
    run_sweep(tiny_cfg, grid, str(tmp_path / 'a'), seeds=[0])
    run_sweep(tiny_cfg, grid, str(tmp_path / 'b'), seeds=[1])
    merged = merge_runs([str(tmp_path / 'a'), str(tmp_path / 'b')], str(tmp_path / 'm'))
    whole['models.BPRMF.model.embedding_dim'] = whole['models.BPRMF.model.embedding_dim'].astype(str)
    pd.testing.assert_frame_equal(_sorted(merged), _sorted(whole))
    assert (tmp_path / 'm' / 'sweep.md').read_text() == (tmp_path / 'whole' / 'sweep.md').read_text()
    assert sorted(os.listdir(tmp_path / 'm')) == ['embedding_dim=2', 'embedding_dim=4', 'sweep.csv', 'sweep.md']
    with pytest.raises(ConfigError, match='merge sweeps with sweeps'):
        merge_runs([str(tmp_path / 'a'), str(tmp_path / 'a' / 'embedding_dim=2')], str(tmp_path / 'x'))


def test_interrupted_sweep_keeps_finished_points(tiny_cfg, tmp_path, monkeypatch):
    from cdrgraph.cli.experiment import merge_runs, run_sweep
    grid = {'models.BPRMF.model.embedding_dim': [2, 4, 8]}
    real = experiment.run_experiment
    calls = []

    def stop_at_third(cfg, out, **kw):
        calls.append(out)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(cfg, out, **kw)

    monkeypatch.setattr(experiment, 'run_experiment', stop_at_third)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(tiny_cfg, grid, str(tmp_path / 'cut'), seeds=[0])
    done = pd.read_csv(tmp_path / 'cut' / 'sweep.csv')
    assert sorted(done['models.BPRMF.model.embedding_dim'].unique()) == [2, 4]
    md = (tmp_path / 'cut' / 'sweep.md').read_text()
    assert 'embedding_dim=4' in md and 'embedding_dim=8' not in md
    # the finished points merge with a run of the missing one
    monkeypatch.setattr(experiment, 'run_experiment', real)
    run_sweep(tiny_cfg, {'models.BPRMF.model.embedding_dim': [8]}, str(tmp_path / 'rest'), seeds=[0])
    merged = merge_runs([str(tmp_path / 'cut'), str(tmp_path / 'rest')], str(tmp_path / 'm'))
    assert sorted(merged['models.BPRMF.model.embedding_dim'].unique()) == ['2', '4', '8']


def test_merge_takes_the_point_a_sweep_was_interrupted_in(tiny_cfg, tmp_path, monkeypatch):
    from cdrgraph.cli.experiment import merge_runs, run_sweep
    tiny_cfg['models']['CMF'] = {'model': {'embedding_dim': 4}}
    grid = {'train.lr': [0.01, 0.02]}
    whole = run_sweep(tiny_cfg, grid, str(tmp_path / 'whole'), seeds=[0])
    real = experiment.run_experiment

    def cut_after_first_model(cfg, out, **kw):
        if out.endswith('lr=0.02'):       # the second point: Popularity and BPRMF finish, CMF is interrupted
            real(cfg, out, **dict(kw, models=['Popularity', 'BPRMF']))
            raise KeyboardInterrupt
        return real(cfg, out, **kw)

    monkeypatch.setattr(experiment, 'run_experiment', cut_after_first_model)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(tiny_cfg, grid, str(tmp_path / 'cut'), seeds=[0])
    assert set(pd.read_csv(tmp_path / 'cut' / 'sweep.csv')['train.lr']) == {0.01}
    monkeypatch.setattr(experiment, 'run_experiment', real)
    run_sweep(tiny_cfg, {'train.lr': [0.02]}, str(tmp_path / 'rest'), seeds=[0], models=['CMF'])
    merged = merge_runs([str(tmp_path / 'cut'), str(tmp_path / 'rest')], str(tmp_path / 'm'))
    # the interrupted point's finished model is kept, the re-run adds the rest: equal to the whole sweep
    whole['train.lr'] = whole['train.lr'].astype(str)
    key = ['train.lr', 'model', 'seed', 'metric', 'domain']
    pd.testing.assert_frame_equal(merged.sort_values(key).reset_index(drop=True),
                                  whole.sort_values(key).reset_index(drop=True), check_like=True)
    # a point folder whose config.yaml does not give the folder's grid values is still refused
    os.rename(tmp_path / 'rest' / 'lr=0.02', tmp_path / 'rest' / 'lr=0.5')
    with pytest.raises(ConfigError, match="lr=0.5: a run folder that no row of .* names"):
        merge_runs([str(tmp_path / 'cut'), str(tmp_path / 'rest')], str(tmp_path / 'x'))


def test_results_hold_the_validation_of_the_tested_model(tiny_cfg, tmp_path):
    import torch

    from cdrgraph.cli.config import build_evaluator, build_model, model_entries
    from cdrgraph.train.evaluate import evaluate
    tiny_cfg['train'] = {'epochs': 6, 'batch_size': 16, 'lr': 0.05, 'eval_every': 1, 'patience': 10}
    tiny_cfg['models']['BPRMF-single'] = {'class': 'BPRMF', 'model': {'embedding_dim': 4},
                                          'select_domains': 'per_domain'}
    cfg = validate_config(tiny_cfg)
    out = tmp_path / 'run'
    df = run_experiment(cfg, str(out))
    val = df[df['metric'].str.startswith(experiment.VAL_PREFIX)]
    # every model has validation rows under its test protocol, per domain and mean, and no count rows
    for model in ('Popularity', 'BPRMF', 'BPRMF-single'):
        rows = val[(val.model == model) & (val.metric == 'val_ndcg@5')]
        assert set(rows['domain']) == {'d0', 'd1', 'mean'} and set(rows['protocol']) == {'sampled'}
    assert not val['metric'].str.contains('num_').any()
    single = val[(val.model == 'BPRMF-single') & (val.metric == 'val_hr@5')].set_index('domain')['value']
    assert single['mean'] == pytest.approx((single['d0'] + single['d1']) / 2)
    # BPRMF: the value is the best epoch's (what early stopping selected), not the last epoch's
    ckpt = torch.load(out / 'checkpoints' / 'BPRMF' / 'seed0' / 'last.pt', weights_only=False)
    hist = [r for r in ckpt['history'] if 'ndcg@5/mean' in r]
    reported = val[(val.model == 'BPRMF') & (val.metric == 'val_ndcg@5') & (val.domain == 'mean')]['value']
    assert float(reported.iloc[0]) == pytest.approx(max(r['ndcg@5/mean'] for r in hist))
    # and it equals a fresh evaluation of the saved (tested) model on the validation split
    train, valid, _ = prepare_splits(cfg)
    model = build_model(model_entries(cfg)['BPRMF'], train)
    model.load_state_dict(torch.load(out / 'checkpoints' / 'BPRMF' / 'seed0' / 'model.pt',
                                     weights_only=False)['model'])
    fresh = evaluate(model, train, valid, build_evaluator(cfg['evaluation']))
    for key in ('ndcg@5/d0', 'hr@1/d1', 'mrr/mean'):
        got = val[(val.model == 'BPRMF') & (val.metric == 'val_' + key.split('/')[0]) &
                  (val.domain == key.split('/')[1])]['value']
        assert float(got.iloc[0]) == pytest.approx(float(fresh[key]), abs=1e-6)
    # the Markdown tables show test metrics only
    assert 'val_' not in (out / 'results.md').read_text()


def _fake_sweep(values: dict[tuple[int, int], tuple[float, float]], metric: str = 'ndcg@5') -> pd.DataFrame:
    rows = []
    for (dim, seed), (val, test) in values.items():
        for name, v in ((f'val_{metric}', val), (metric, test)):
            rows.append({'models.BPRMF.model.embedding_dim': dim, 'model': 'BPRMF', 'seed': seed,
                         'protocol': 'sampled', 'metric': name, 'domain': 'mean', 'value': v})
    return pd.DataFrame(rows)


def test_select_on_validation_never_looks_at_test(tiny_cfg):
    from cdrgraph.cli.experiment import select_on_validation
    cfg = validate_config(tiny_cfg)
    # dim 4 is best on validation (mean over seeds), dim 8 on test and on seed 1's validation alone
    sweep = _fake_sweep({(2, 0): (0.30, 0.40), (2, 1): (0.30, 0.41), (4, 0): (0.50, 0.20), (4, 1): (0.30, 0.21),
                         (8, 0): (0.10, 0.90), (8, 1): (0.60, 0.91)})
    sel = select_on_validation(sweep, cfg)
    assert sel.to_dict('records') == [{'model': 'BPRMF', 'models.BPRMF.model.embedding_dim': 4,
                                       'monitor': 'ndcg@5/mean', 'validation': pytest.approx(0.40),
                                       'test': pytest.approx(0.205), 'seeds': '0,1', 'points': 3}]
    # a minimised monitor picks the smallest validation value
    cfg['models']['BPRMF']['train'] = {'monitor': 'ndcg@5/mean', 'monitor_mode': 'min'}
    assert select_on_validation(sweep, cfg)['models.BPRMF.model.embedding_dim'].tolist() == [2]
    # runs without validation rows (older results) are left out, not selected on test
    assert select_on_validation(sweep[~sweep.metric.str.startswith('val_')], cfg).empty


def test_sweep_reports_the_point_selected_on_validation(tiny_cfg, tmp_path):
    from cdrgraph.cli.experiment import run_sweep, select_on_validation
    tiny_cfg['train'] = {'epochs': 3, 'batch_size': 16, 'lr': 0.05}
    sweep = run_sweep(tiny_cfg, {'models.BPRMF.model.embedding_dim': [2, 8]}, str(tmp_path / 's'), seeds=[0])
    sel = select_on_validation(sweep, validate_config(tiny_cfg)).set_index('model')
    assert set(sel.index) == {'Popularity', 'BPRMF'} and sel.loc['BPRMF', 'points'] == 2
    val = sweep[(sweep.model == 'BPRMF') & (sweep.metric == 'val_ndcg@5') & (sweep.domain == 'mean')]
    best = val.loc[val['value'].idxmax(), 'models.BPRMF.model.embedding_dim']
    assert sel.loc['BPRMF', 'models.BPRMF.model.embedding_dim'] == best
    md = (tmp_path / 's' / 'sweep.md').read_text()
    assert md.startswith('# Selected on validation')
    assert f'| BPRMF | {best} | ndcg@5/mean | {sel.loc["BPRMF", "validation"]:.4f} |' in md
