"""The cdrgraph console script end to end on FakeCDRDataset."""
from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml

from cdrgraph.cli.main import main


def test_train_writes_results_with_popularity(tiny_yaml, tmp_path, capsys):
    out = tmp_path / 'run'
    rc = main(['train', tiny_yaml, '--out', str(out), '--seeds', '0,1', '--no-progress',
               '--set', 'models.BPRMF.model.embedding_dim=3'])
    assert rc == 0
    df = pd.read_csv(out / 'results.csv')
    assert set(df['model']) == {'Popularity', 'BPRMF'} and set(df['seed']) == {0, 1}
    assert set(df['protocol']) == {'sampled', 'full'}  # full ranking beside the sampled protocol
    # popularity has no parameters: identical over seeds
    pop = df[df.model == 'Popularity'].pivot_table(index=['protocol', 'metric', 'domain'], columns='seed',
                                                   values='value')
    assert (pop[0] == pop[1]).all()
    md = (out / 'results.md').read_text()
    assert '| Popularity |' in md and '| BPRMF |' in md and '## Full ranking' in md
    assert 'results written to' in capsys.readouterr().out
    # the --set override reached the model
    state = torch.load(out / 'checkpoints' / 'BPRMF' / 'seed1' / 'model.pt', weights_only=True)
    assert state['config']['models']['BPRMF']['model'] == {'embedding_dim': 3}
    assert any(v.shape[-1] == 3 for v in state['model'].values())
    assert yaml.safe_load((out / 'config.yaml').read_text())['seeds'] == [0, 1]


def test_eval_reproduces_test_metrics(tiny_yaml, tmp_path, capsys):
    out = tmp_path / 'run'
    assert main(['train', tiny_yaml, '--out', str(out), '--no-progress']) == 0
    capsys.readouterr()
    assert main(['eval', str(out / 'checkpoints' / 'BPRMF' / 'seed0' / 'model.pt')]) == 0
    printed = dict(line.split()[:2] for line in capsys.readouterr().out.splitlines()[1:])
    df = pd.read_csv(out / 'results.csv')
    row = df[(df.model == 'BPRMF') & (df.protocol == 'sampled') & (df.metric == 'hr@5')
             & (df.domain == 'mean')]
    assert float(printed['hr@5/mean']) == pytest.approx(float(row['value'].iloc[0]), rel=1e-5)


def test_sweep_one_result_per_grid_value(tiny_yaml, tmp_path, capsys):
    out = tmp_path / 'sweep'
    rc = main(['sweep', tiny_yaml, '--out', str(out), '--no-progress',
               '--grid', 'models.BPRMF.model.embedding_dim=2,5'])
    assert rc == 0
    printed = capsys.readouterr().out
    assert printed.startswith('# Selected on validation') and '| BPRMF | ' in printed
    assert 'embedding_dim=2: ' not in printed   # the per-point tables stay in sweep.md
    df = pd.read_csv(out / 'sweep.csv')
    assert sorted(df['models.BPRMF.model.embedding_dim'].unique()) == [2, 5]
    for dim in (2, 5):
        assert (out / f'embedding_dim={dim}' / 'results.csv').exists()
        sub = df[(df['models.BPRMF.model.embedding_dim'] == dim) & (df.model == 'BPRMF')]
        assert len(sub) > 0
    assert 'embedding_dim=2: ' in (out / 'sweep.md').read_text()


def test_train_in_parts_then_merge(tiny_yaml, tmp_path, capsys):
    a, b = tmp_path / 'a', tmp_path / 'b'
    assert main(['train', tiny_yaml, '--out', str(a), '--seeds', '0', '--no-progress']) == 0
    assert main(['train', tiny_yaml, '--out', str(b), '--seeds', '1', '--models', 'BPRMF', '--no-progress']) == 0
    assert set(pd.read_csv(b / 'results.csv')['model']) == {'BPRMF'}
    capsys.readouterr()
    assert main(['merge', str(a), str(b), '--out', str(a)]) == 0   # into one of the parts
    out = capsys.readouterr().out
    assert '2 runs merged into' in out and 'Fewer seeds for Popularity: [0]' in out
    df = pd.read_csv(a / 'results.csv')
    assert sorted(df[df.model == 'BPRMF']['seed'].unique()) == [0, 1]
    assert main(['merge', str(a), str(b), '--out', str(tmp_path / 'c')]) == 2   # b's rows are in a now
    assert 'BPRMF seed 1 is in both' in capsys.readouterr().err
    assert main(['train', tiny_yaml, '--models', 'SMF', '--out', str(tmp_path / 'd')]) == 2
    assert "no model entry 'SMF'" in capsys.readouterr().err


def test_misspelt_key_exits_2_with_one_line(tiny_yaml, capsys):
    rc = main(['train', tiny_yaml, '--set', 'models.BPRMF.model.embeding_dim=3', '--no-progress'])
    err = capsys.readouterr().err
    assert rc == 2 and err.count('\n') == 1 and 'Traceback' not in err
    assert "unknown key 'embeding_dim'" in err
    assert 'allowed keys: embedding_dim, weight_decay, item_bias' in err


def test_debug_shows_traceback(tiny_yaml):
    from cdrgraph.cli.config import ConfigError
    with pytest.raises(ConfigError):
        main(['--debug', 'train', tiny_yaml, '--set', 'train.epoch=3'])


def test_eval_rejects_non_experiment_file(tmp_path, capsys):
    from cdrgraph.train.checkpoint import save_checkpoint
    save_checkpoint({'model': {}}, str(tmp_path / 'best.pt'))
    assert main(['eval', str(tmp_path / 'best.pt')]) == 2
    assert 'not an experiment model file' in capsys.readouterr().err


def test_huge_pages_on_unless_the_environment_chose(tiny_yaml, monkeypatch, capsys):
    from cdrgraph.cli.main import THP_ENV
    monkeypatch.delenv(THP_ENV, raising=False)
    assert main(['train', tiny_yaml, '--set', 'trian.x=1']) == 2
    assert os.environ[THP_ENV] == '1'
    monkeypatch.setenv(THP_ENV, '0')        # the user's choice is kept
    assert main(['train', tiny_yaml, '--set', 'trian.x=1']) == 2
    assert os.environ[THP_ENV] == '0'


def test_bad_seeds_argument():
    with pytest.raises(SystemExit) as e:
        main(['train', 'x.yaml', '--seeds', 'a,b'])
    assert e.value.code == 2


def test_data_stats_fake(capsys):
    pytest.importorskip('cdrgraph.data.stats')
    rc = main(['data', 'stats', 'FakeCDRDataset', '--set', 'num_users=30', '--set', 'num_items=10'])
    assert rc == 0
    assert 'd0' in capsys.readouterr().out


def test_data_stats_unknown_key(capsys):
    assert main(['data', 'stats', 'FakeCDRDataset', '--set', 'num_user=30']) == 2
    assert "unknown key 'num_user' (did you mean 'num_users'?)" in capsys.readouterr().err


def test_console_script_subprocess(tiny_yaml, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    cmd = [sys.executable, '-m', 'cdrgraph.cli.main', 'train', tiny_yaml, '--set', 'trian.x=1']
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2 and "unknown key 'trian' (did you mean 'train'?)" in res.stderr


@pytest.mark.realdata
@pytest.mark.slow
def test_movielens_100k_popularity(shared_data, tmp_path):
    cfg = os.path.join(os.path.dirname(__file__), '..', '..', 'configs', 'movielens_genres.yaml')
    out = tmp_path / 'ml'
    rc = main(['train', cfg, '--no-progress', '--seeds', '0', '--out', str(out),
               '--set', 'data.variant=100k', '--set', f'data.raw_dir={shared_data}/movielens-100k',
               '--set', f'data.root={tmp_path}/root', '--set', f'cache_dir={tmp_path}/cache',
               '--set', 'models={Popularity: {}}', '--set', 'baseline={}'])
    assert rc == 0
    df = pd.read_csv(out / 'results.csv')
    assert set(df['domain']) >= {'Action', 'Comedy', 'Drama', 'mean'}
    hr = df[(df.metric == 'hr@10') & (df.domain != 'mean')]['value']
    assert ((hr > 0) & (hr < 1)).all()  # popularity is informative but not perfect
