"""`--device` end to end (issue 9): every registered model trains and evaluates through the CLI on the CPU and,
where one is available, on a CUDA device (tests marked ``gpu`` are skipped without one)."""
from __future__ import annotations

import math
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from cdrgraph.cli.main import main
from cdrgraph.cli.registry import MODELS
from cdrgraph.testing.configs import write_fake_config

pytestmark = pytest.mark.filterwarnings('ignore::UserWarning')

DIM = 8
EXTRA = {'LightGCN': {'num_layers': 2}, 'UniCDRPlus': {'num_layers': 1}}


def _config(tmp_path, models: list[str]) -> str:
    entries = {m: {'model': {'embedding_dim': DIM, **EXTRA.get(m, {})}} for m in models}
    return write_fake_config(tmp_path / 'devices.yaml', entries, name='devices', num_users=80, num_items=40,
                             num_candidates=10, ks=(5,), train={'epochs': 1, 'lr': 0.01, 'batch_size': 64,
                                                                'patience': 1, 'num_negatives': 1})


@pytest.mark.slow
@pytest.mark.parametrize('device', ['cpu', pytest.param('cuda', marks=pytest.mark.gpu)])
def test_every_model_trains_and_evaluates_on(device, tmp_path):
    models = [m for m in MODELS.names() if m != 'Popularity']
    out = tmp_path / device
    assert main(['train', _config(tmp_path, models), '--device', device, '--out', str(out)]) == 0
    df = pd.read_csv(out / 'results.csv')
    assert set(df['model']) == {*models, 'Popularity'}
    assert set(df['protocol']) == {'sampled', 'full'}
    ndcg = df[(df['metric'] == 'ndcg@5') & (df['domain'] == 'mean')]
    assert len(ndcg) == 2 * (len(models) + 1) and all(math.isfinite(v) for v in ndcg['value'])
    # the saved models load on the CPU (cdrgraph eval)
    for m in ('LightGCN', 'UniCDRPlus'):
        ckpt = out / 'checkpoints' / m / 'seed0' / 'model.pt'
        assert main(['eval', str(ckpt)]) == 0


@pytest.mark.gpu
def test_cuda_fit_matches_cpu_first_epoch():
    from cdrgraph.testing.distributed import fit_once
    spec = {'data': {'num_domains': 2, 'num_users': 120, 'num_items': 60, 'avg_degree': 8, 'seed': 0},
            'model': 'LightGCN', 'model_kwargs': {'embedding_dim': 8, 'num_layers': 2},
            'fit': {'epochs': 1, 'batch_size': 100, 'lr': 0.05, 'num_negatives': 2, 'seed': 0}}
    cpu = fit_once(spec)
    gpu = fit_once({**spec, 'fit': {**spec['fit'], 'device': 'cuda'}})
    assert gpu['history'][0]['loss'] == pytest.approx(cpu['history'][0]['loss'], rel=1e-3)
    for key, val in cpu['state'].items():
        torch.testing.assert_close(gpu['state'][key], val, rtol=1e-3, atol=1e-3)


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason='needs two CUDA devices for nccl')
def test_torchrun_nccl_two_gpus(tmp_path):
    cfg = _config(tmp_path, ['LightGCN'])
    run = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                          '-m', 'cdrgraph', 'train', cfg, '--device', 'cuda', '--out', str(tmp_path / 'ddp')],
                         capture_output=True, text=True, env=dict(os.environ), timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    df = pd.read_csv(tmp_path / 'ddp' / 'results.csv')
    assert set(df['model']) == {'LightGCN', 'Popularity'}
