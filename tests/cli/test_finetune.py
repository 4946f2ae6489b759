"""cdrgraph finetune: a trained DACDR takes a new target domain; only the new domain's parts train."""
from __future__ import annotations

import os.path as osp

import pandas as pd
import torch
import yaml

from cdrgraph.cli.experiment import run_experiment
from cdrgraph.cli.main import main
from cdrgraph.train.checkpoint import load_checkpoint


def _data():
    return {'name': 'FakeCDRDataset', 'num_domains': 3, 'num_users': 60, 'num_items': 15, 'avg_degree': 6,
            'user_overlap': 1.0, 'ratings': True, 'side_features': False, 'seed': 0}


def _cfg(tmp_path, split, models=None):
    cfg = {'name': 'ft', 'data': _data(), 'split': split, 'evaluation': {'protocol': 'rating'},
           'train': {'epochs': 2, 'batch_size': 32, 'lr': 0.01, 'num_negatives': 0}, 'seeds': [0],
           'cache_dir': str(tmp_path / 'cache')}
    if models is not None:
        cfg['models'] = models
    return cfg


def test_finetune_new_domain_keeps_trained_parts(tmp_path, capsys):
    old = _cfg(tmp_path, [{'name': 'SelectDomains', 'domains': ['d0', 'd1']},
                          {'name': 'ColdStartSplit', 'source': 'd0', 'target': 'd1', 'fraction': 0.3}],
               {'DACDR': {'model': {'embedding_dim': 4, 'max_len': 5}}})
    run_experiment(old, str(tmp_path / 'old'))
    ckpt = str(tmp_path / 'old' / 'checkpoints' / 'DACDR' / 'seed0' / 'model.pt')
    trained = load_checkpoint(ckpt)['model']
    new = _cfg(tmp_path, [{'name': 'ColdStartSplit', 'source': 'd0', 'target': 'd2', 'fraction': 0.3}])
    path = tmp_path / 'new.yaml'
    path.write_text(yaml.safe_dump(new))
    out = str(tmp_path / 'ft')
    assert main(['finetune', ckpt, str(path), '--domain', 'd2', '--out', out, '--no-progress']) == 0
    assert 'DACDR-finetuned' in capsys.readouterr().out
    df = pd.read_csv(osp.join(out, 'results.csv'))
    assert set(df['model']) == {'DACDR-finetuned'} and 'd2' in set(df['domain'])
    # the validation value of the fine-tuned model is recorded too: the one early stopping kept
    val = df[(df.metric == 'val_rmse') & (df.domain == 'mean')]['value']
    last = load_checkpoint(osp.join(out, 'checkpoints', 'DACDR', 'seed0', 'last.pt'))
    assert len(val) == 1 and float(val.iloc[0]) == float(last['best_metric']['finetune'])
    tuned = load_checkpoint(osp.join(out, 'checkpoints', 'DACDR', 'seed0', 'best.pt'))['model']
    new_keys = set(tuned) - set(trained)
    assert new_keys and all('2' in k for k in new_keys)          # the new domain's table and row
    changed = {k for k in trained if not torch.equal(trained[k], tuned[k])}
    # the trained domains' items, the encoder and the prediction MLP are bit-identical; only attention may move
    assert not any(k.startswith(('item_emb.0', 'item_emb.1')) for k in changed)
    assert any(not torch.equal(tuned[k], torch.zeros_like(tuned[k])) for k in new_keys)


def test_finetune_rejects_models_without_new_domains(tmp_path, capsys):
    old = _cfg(tmp_path, [{'name': 'LeaveOneOut', 'seed': 0}],
               {'BPRMF': {'model': {'embedding_dim': 4}}})
    old['evaluation'] = {'protocol': 'full', 'ks': [5]}
    old['train']['num_negatives'] = 1
    run_experiment(old, str(tmp_path / 'old'))
    ckpt = str(tmp_path / 'old' / 'checkpoints' / 'BPRMF' / 'seed0' / 'model.pt')
    path = tmp_path / 'new.yaml'
    path.write_text(yaml.safe_dump(_cfg(tmp_path, [{'name': 'LeaveOneOut', 'seed': 0}])))
    assert main(['finetune', ckpt, str(path), '--out', str(tmp_path / 'ft')]) == 2
    assert 'cannot take a new domain' in capsys.readouterr().err
