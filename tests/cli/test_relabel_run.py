"""benchmarks/relabel_run.py: a check point's run relabelled as a part of the config entry with the same settings."""
from __future__ import annotations

import os.path as osp

import pandas as pd
import pytest
import yaml

from cdrgraph.cli.config import ConfigError, load_config, validate_config
from cdrgraph.cli.experiment import merge_runs, run_experiment


def _read(folder):
    return pd.read_csv(osp.join(folder, 'results.csv'), dtype={'domain': str}, keep_default_na=False)


@pytest.fixture
def setup(tiny_cfg, tmp_path):
    tiny_cfg['train'] = {'epochs': 3, 'batch_size': 16, 'eval_every': 1, 'patience': 10}
    # the check point: entry BPRMF run with a changed lr (as `--set models.BPRMF.train.lr=0.05` would)
    point = str(tmp_path / 'point')
    run_experiment(validate_config({**tiny_cfg, 'models': {
        'BPRMF': {'model': {'embedding_dim': 4}, 'train': {'lr': 0.05}}}}), point, seeds=[1])
    # the config that later gained an entry with exactly those settings
    bench = {**tiny_cfg, 'models': {'BPRMF': {'model': {'embedding_dim': 4}, 'train': {'lr': 0.001}},
                                    'BPRMF-val': {'class': 'BPRMF', 'model': {'embedding_dim': 4},
                                                  'train': {'lr': 0.05}}},
             'baseline': {'BPRMF-val': 'BPRMF'}, 'seeds': [0, 1]}
    path = tmp_path / 'bench.yaml'
    path.write_text(yaml.safe_dump(bench))
    return point, str(path), tmp_path


def test_relabelled_point_equals_running_the_entry(setup, benchmark_script):
    mod = benchmark_script('relabel_run')
    point, config, tmp = setup
    out = str(tmp / 'relabelled')
    n = mod.relabel_run(point, config, 'BPRMF', 'BPRMF-val', out)
    got = _read(out)
    assert n == len(got) and set(got['model']) == {'BPRMF-val'} and set(got['seed']) == {1}
    # Popularity rode along in the point's run; only the relabelled entry's rows are kept
    assert 'Popularity' in set(_read(point)['model'])
    # the same entry trained directly for that seed gives the same rows and the same config.yaml
    direct = str(tmp / 'direct')
    run_experiment(load_config(config), direct, seeds=[1], models=['BPRMF-val'])
    pd.testing.assert_frame_equal(got, _read(direct))
    assert open(osp.join(out, 'config.yaml')).read() == open(osp.join(direct, 'config.yaml')).read()
    assert open(osp.join(out, 'results.md')).read() == open(osp.join(direct, 'results.md')).read()
    # and it merges with the entry's other seeds like any part
    seed0 = str(tmp / 'seed0')
    run_experiment(load_config(config), seed0, seeds=[0], models=['BPRMF-val'])
    merged = merge_runs([seed0, out], str(tmp / 'merged'))
    assert sorted(set(merged['seed'])) == [0, 1]


def test_relabel_refuses_other_settings(setup, benchmark_script):
    mod = benchmark_script('relabel_run')
    point, config, tmp = setup
    with pytest.raises(ConfigError, match=r"differs from .* entry 'BPRMF' in \['train'\]"):
        mod.relabel_run(point, config, 'BPRMF', 'BPRMF', str(tmp / 'a'))
    other = yaml.safe_load(open(config))
    other['candidates']['seed'] = 7
    path = tmp / 'other.yaml'
    path.write_text(yaml.safe_dump(other))
    with pytest.raises(ConfigError, match=r"differs from .* in \['candidates'\]"):
        mod.relabel_run(point, str(path), 'BPRMF', 'BPRMF-val', str(tmp / 'b'))
    with pytest.raises(ConfigError, match="no model entry 'LightGCN'"):
        mod.relabel_run(point, config, 'LightGCN', 'BPRMF-val', str(tmp / 'c'))
    mod.relabel_run(point, config, 'BPRMF', 'BPRMF-val', str(tmp / 'd'))
    with pytest.raises(FileExistsError, match='results.csv exists'):
        mod.relabel_run(point, config, 'BPRMF', 'BPRMF-val', str(tmp / 'd'))
    assert not osp.exists(tmp / 'a') and not osp.exists(tmp / 'b')
