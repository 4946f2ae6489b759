"""The benchmark suite's one command (benchmarks/run_all.py --quick): runs, writes suite.json/suite.md."""
from __future__ import annotations

import json
import os
import os.path as osp
import subprocess
import sys
import time

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.mark.slow
def test_run_all_quick_writes_every_figure(tmp_path):
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')]))}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'benchmarks', 'run_all.py'), '--quick', '--threads', '1',
                           '--out-dir', str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert seconds < 60, seconds
    suite = json.loads((tmp_path / 'suite.json').read_text())
    assert {'config', 'load_avg_start', 'load_avg_end', 'machine', 'targets', 'figures', 'parts'} <= set(suite)
    assert len(suite['load_avg_start']) == 3 and len(suite['load_avg_end']) == 3
    assert suite['config'] == {'quick': True, 'threads': 1, 'thp': os.environ.get('THP_MEM_ALLOC_ENABLE', '1'),
                               'inprocess': True,
                               'parts': ['machine', 'lgconv', 'full_ranking', 'sampling', 'training', 'profile']}
    assert all(p['status'] == 'ok' for p in suite['parts'].values()), suite['parts']
    assert suite['machine']['sgemm_gflops'] > 0 and suite['machine']['memcpy_gb_s'] > 0
    figs = {f['name']: f for f in suite['figures']}
    # every target of issue 9 has its figure, with the target, the verdict and the ratio to the target
    assert set(suite['targets']) <= set(figs)
    for name, target in suite['targets'].items():
        f = figs[name]
        assert f['target'] == target['value'] and f['op'] == target['op']
        assert f['meets'] == (f['value'] >= f['target'] if f['op'] == '>=' else f['value'] <= f['target'])
        if f['target']:
            assert f['ratio_to_target'] == pytest.approx(f['value'] / f['target'])
    # ... and the speed figures are also ratios to the machine references measured in the same run
    for name in ('propagation_forward_fraction_of_memcpy', 'full_ranking_fraction_of_sgemm',
                 'bpr_mf_sparse_samples_per_s', 'lightgcn3_samples_per_s'):
        assert figs[name]['machine_ratio'] is not None and figs[name]['machine_ratio'] > 0
    assert {'bpr_mf_dense_samples_per_s', 'bpr_mf_sparse_over_dense', 'pyg_lightgcn3_samples_per_s',
            'lightgcn3_speedup_over_pyg', 'propagation_speedup_over_pyg_lgconv'} <= set(figs)
    # the profiled hot paths have no per-sample Python loop: their call counts do not grow with the batch
    for name, p in suite['parts']['profile']['result']['profiles'].items():
        assert not p['per_sample_loop'] and p['calls_at_double_size'] - p['total_calls'] < p['size'] // 2, name
        if name != 'full_ranking':   # a training step makes exactly the same Python calls at any batch size
            assert p['calls_at_double_size'] == p['total_calls'], name
    assert figs['per_sample_python_loops']['value'] == 0
    md = (tmp_path / 'suite.md').read_text()
    assert md.startswith('# Benchmark suite (quick)') and 'Load average at start' in md
    assert '| bpr_mf_sparse_samples_per_s |' in md and 'Sport–Cloth' in md


@pytest.mark.slow
def test_bench_scale_small_graph(tmp_path):
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')])),
           'OMP_NUM_THREADS': '1'}
    out = tmp_path / 'scale.json'
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'benchmarks', 'bench_scale.py'), '--users', '3000',
                           '--items', '900', '--edges', '30000', '--steps', '3', '--batch-size', '512',
                           '--eval-users', '300', '--full-users', '100', '--threads', '1',
                           '--cache', str(tmp_path / 'cache'), '--json', str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    gen = report['generate']
    assert gen['num_users'] == 3000 and gen['num_items'] == 900
    assert 0.8 * 30000 < gen['num_edges'] < 1.2 * 30000       # the requested size, approximately
    assert gen['num_train_edges'] < gen['num_edges'] and gen['num_test_rows'] > 0
    for model in ('LightGCN', 'UniCDRPlus'):
        res = report['train'][model]
        assert 'error' not in res, res
        assert res['steps'] == 3 and res['s_per_step'] > 0 and res['peak_rss_gb'] > 0
        assert res['projected_epoch_s'] == pytest.approx(res['s_per_step'] * res['steps_per_epoch'])
        assert 0 <= res['sampled']['ndcg@10/mean'] <= 1 and res['full']['num_users/d0'] > 0


def test_merge_depth_runs(tmp_path):
    import importlib.util

    import pandas as pd
    spec = importlib.util.spec_from_file_location('merge_depth', osp.join(ROOT, 'benchmarks', 'merge_depth.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cols = ['model', 'combine', 'num_layers', 'seed', 'protocol', 'metric', 'domain', 'value']
    scols = ['model', 'combine', 'num_layers', 'seed', 'layer', 'metric', 'domain', 'value']
    for mode, layers in (('mean', [0, 1, 2]), ('last', [1, 2])):
        d = tmp_path / mode
        d.mkdir()
        pd.DataFrame([['M', mode, L, 0, 'sampled', 'ndcg@10', dom, 0.1 * L + (dom == 'b') * 0.01]
                      for L in layers for dom in ('a', 'b', 'mean')], columns=cols).to_csv(d / 'depth_metrics.csv',
                                                                                          index=False)
        pd.DataFrame([['M', mode, 2, 0, layer, 'mad_item', 'a', 1.0 - 0.1 * layer] for layer in range(3)],
                     columns=scols).to_csv(d / 'depth_smoothness.csv', index=False)
    figs = mod.merge([str(tmp_path / 'mean'), str(tmp_path / 'last')], str(tmp_path / 'out'))
    assert all(osp.getsize(f) > 1000 for f in figs)
    merged = pd.read_csv(tmp_path / 'out' / 'depth_metrics.csv')
    assert len(merged) == 15 and set(merged['combine']) == {'mean', 'last'}
    with pytest.raises(ValueError, match='several folders'):
        mod.merge([str(tmp_path / 'mean'), str(tmp_path / 'mean')], str(tmp_path / 'again'))


def test_sweep_table(tmp_path):
    import importlib.util

    import pandas as pd
    spec = importlib.util.spec_from_file_location('sweep_table', osp.join(ROOT, 'benchmarks', 'sweep_table.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = []
    for frac in (0.2, 0.8):
        for seed, (a, b) in enumerate([(1.0, 0.5), (3.0, 0.7)]):
            for model, value in (('A', a * frac), ('B', b)):
                rows += [[frac, model, seed, 'rating', 'mae', dom, value] for dom in ('x', 'mean')]
    rows.append([0.8, 'C', 0, 'rating', 'mae', 'mean', 9.0])   # one point, one seed only
    cols = ['split.0.fraction', 'model', 'seed', 'protocol', 'metric', 'domain', 'value']
    pd.DataFrame(rows, columns=cols).to_csv(tmp_path / 'sweep.csv', index=False)
    text = mod.sweep_table(str(tmp_path), ['mae'])
    lines = text.splitlines()
    assert lines[0] == '| model | mae fraction=0.2 | mae fraction=0.8 |'
    # A: mean of 0.2 and 0.6 (std 0.2828); B: 0.6 ± 0.1414, the lower MAE at 0.2 is bold; C has no 0.2 point
    assert lines[2] == '| A | **0.4000 ± 0.2828** | 1.6000 ± 1.1314 |'
    assert lines[3] == '| B | 0.6000 ± 0.1414 | **0.6000 ± 0.1414** |'
    assert lines[4] == '| C | — | 9.0000 ± 0.0000 |'
    with pytest.raises(ValueError, match=r"no metric \['rmse'\]"):
        mod.sweep_table(str(tmp_path), ['rmse'])
    with pytest.raises(FileNotFoundError, match='cdrgraph sweep'):
        mod.sweep_table(str(tmp_path / 'none'), ['mae'])


def test_bench_unicdr_epoch_tiny_config(tmp_path):
    import yaml
    cfg = {
        'name': 'tiny_unicdr',
        'data': {'name': 'FakeCDRDataset', 'num_users': 60, 'num_items': 30, 'avg_degree': 6, 'seed': 0,
                 'side_features': False},
        'split': [{'name': 'LeaveOneOut', 'order': 'random', 'seed': 0}],
        'candidates': {'num_negatives': 5, 'seed': 0, 'dataset_id': 'tiny'},
        'evaluation': {'protocol': 'sampled', 'ks': [5]},
        'train': {'epochs': 2, 'batch_size': 32, 'lr': 0.01, 'max_steps_per_epoch': 4},
        'models': {'UniCDR': {'model': {'embedding_dim': 8}, 'train': {'num_negatives': 3}},
                   'UniCDRPlus': {'model': {'embedding_dim': 8, 'num_layers': 1}}},
        'seeds': [0],
        'cache_dir': str(tmp_path / 'cache'),
    }
    path = tmp_path / 'tiny.yaml'
    path.write_text(yaml.safe_dump(cfg))
    sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
    try:
        import bench_unicdr_epoch
    finally:
        sys.path.remove(osp.join(ROOT, 'benchmarks'))
    out = tmp_path / 'epoch.json'
    rows = bench_unicdr_epoch.main(['--config', str(path), '--steps', '2', '--profile', '--profile-steps', '1',
                                    '--json', str(out)])
    assert json.loads(out.read_text()) == rows
    assert [r['model'] for r in rows] == ['UniCDR', 'UniCDRPlus']
    uni, plus = rows
    assert (uni['batch_size'], uni['num_negatives'], plus['num_negatives']) == (32, 3, 1)   # entry overrides
    for r in rows:
        assert r['train_s_per_step'] > 0 and 0 < r['sampling_s_per_step']
        assert r['steps_per_pass'] == -(-r['train_pairs'] // 32) and r['budget_epoch_steps'] == 4
        assert r['pass_s'] == pytest.approx(r['train_s_per_step'] * r['steps_per_pass'])
        assert r['profile_top'] and abs(sum(p['share'] for p in r['profile_top'])) <= 1 + 1e-9
    assert {r['optimizer_impl'] for r in rows} == {'default'} and 'step_ratio_to_first_impl' not in uni
    with pytest.raises(SystemExit, match='no model entry'):
        bench_unicdr_epoch.main(['--config', str(path), '--models', 'SMF'])
    rows = bench_unicdr_epoch.main(['--config', str(path), '--models', 'UniCDR', '--steps', '2',
                                    '--optimizer-impl', 'default,fused,default'])
    assert [(r['model'], r['optimizer_impl']) for r in rows] == [('UniCDR', 'default'), ('UniCDR', 'fused'),
                                                                 ('UniCDR', 'default')]
    assert rows[0]['step_ratio_to_first_impl'] == 1.0
    for r in rows[1:]:   # repeated names (to interleave repetitions) are all compared with the first row
        assert r['step_ratio_to_first_impl'] == pytest.approx(r['train_s_per_step'] / rows[0]['train_s_per_step'])
    with pytest.raises(ValueError, match='optimizer_impl must be one of'):
        bench_unicdr_epoch.main(['--config', str(path), '--models', 'UniCDR', '--optimizer-impl', 'fast'])
    # without --optimizer-impl the config's train.optimizer_impl is the one timed
    cfg['train']['optimizer_impl'] = 'fused'
    path.write_text(yaml.safe_dump(cfg))
    rows = bench_unicdr_epoch.main(['--config', str(path), '--models', 'UniCDR', '--steps', '1'])
    assert [r['optimizer_impl'] for r in rows] == ['fused']


def test_scenario_summary(tmp_path):
    import importlib.util

    import pandas as pd
    import yaml
    spec = importlib.util.spec_from_file_location('scenario_summary',
                                                  osp.join(ROOT, 'benchmarks', 'scenario_summary.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cols = ['model', 'seed', 'protocol', 'metric', 'domain', 'value']

    def write(name, protocol, rows):
        folder = tmp_path / name
        folder.mkdir()
        (folder / 'config.yaml').write_text(yaml.safe_dump({'name': name, 'evaluation': {'protocol': protocol}}))
        pd.DataFrame(rows, columns=cols).to_csv(folder / 'results.csv', index=False)
        return str(folder)

    # s1: two seeds; per domain A beats B on x only; rows of another protocol must be ignored
    rows = []
    for seed, (ax, ay, bx, by) in enumerate([(0.3, 0.1, 0.2, 0.2), (0.5, 0.1, 0.2, 0.3)]):
        for model, x, y in (('A', ax, ay), ('B', bx, by)):
            rows += [[model, seed, 'sampled', 'ndcg@10', 'x', x], [model, seed, 'sampled', 'ndcg@10', 'y', y],
                     [model, seed, 'sampled', 'ndcg@10', 'mean', (x + y) / 2],
                     [model, seed, 'full', 'ndcg@10', 'mean', 9.0]]
    one = write('s1', 'sampled', rows)
    # s2: B only, one seed, full protocol
    two = write('s2', 'full', [['B', 0, 'full', 'ndcg@10', 'x', 0.5], ['B', 0, 'full', 'ndcg@10', 'mean', 0.5]])
    text = mod.scenario_summary([one, two], 'ndcg@10', [('A', 'B')])
    lines = text.splitlines()
    assert lines[0] == '| scenario | seeds | A | B |'
    # mean over domains: A seed 0 0.2, seed 1 0.3 -> 0.25 ± 0.0707 (bold); B 0.2, 0.25 -> 0.225 ± 0.0354
    assert lines[2] == '| s1 | 0,1 | **0.2500 ± 0.0707** | 0.2250 ± 0.0354 |'
    assert lines[3] == '| s2 | 0 | — | **0.5000 ± 0.0000** |'
    checks = [line for line in lines if line.startswith('| s1 |')][1]
    # seed-means: A x 0.4 y 0.1, B x 0.2 y 0.25 -> A wins on x only, and on the mean
    assert checks == '| s1 | 1 of 2 | yes (0.2500 vs 0.2250) |'
    assert [line for line in lines if line.startswith('| s2 |')][1] == '| s2 | — | — |'
    with pytest.raises(ValueError, match="no 'hr@10' rows"):
        mod.scenario_summary([one], 'hr@10')
    with pytest.raises(ValueError, match='no config.yaml; expected an output folder of `cdrgraph train`'):
        mod.scenario_summary([str(tmp_path / 'none')])
    # chosen columns, in the given order
    assert mod.scenario_summary([one, two], models=['B']).splitlines()[2] == '| s1 | 0,1 | **0.2250 ± 0.0354** |'
    with pytest.raises(ValueError, match=r"models \['Z'\] are in none"):
        mod.scenario_summary([one], models=['Z'])
