"""Multi-process training (issue 9): 2 gloo CPU processes against one process with the same global batch."""
from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from cdrgraph.metrics.ctr import CTRMetrics
from cdrgraph.metrics.ranking import RankingMetrics
from cdrgraph.metrics.rating import RatingMetrics
from cdrgraph.testing.configs import write_fake_config
from cdrgraph.testing.distributed import fit_in_processes, fit_once
from cdrgraph.train import distributed as D

pytestmark = pytest.mark.filterwarnings('ignore::UserWarning')

SPEC = {'data': {'num_domains': 2, 'num_users': 120, 'num_items': 60, 'avg_degree': 8, 'seed': 0},
        'fit': {'epochs': 3, 'batch_size': 100, 'lr': 0.05, 'num_negatives': 2, 'seed': 0, 'patience': 5}}


@pytest.mark.slow
@pytest.mark.parametrize('model, kwargs, protocol', [
    ('LightGCN', {'embedding_dim': 8, 'num_layers': 2}, 'sampled'),
    ('BPRMF', {'embedding_dim': 8, 'weight_decay': 1e-3}, 'full'),
])
def test_two_processes_equal_one_process(tmp_path, model, kwargs, protocol):
    spec = {**SPEC, 'model': model, 'model_kwargs': kwargs, 'protocol': protocol}
    ranks = fit_in_processes(spec, 2, str(tmp_path))
    single = fit_once(spec)
    # each rank trained on its half of every global batch
    assert ranks[0]['pairs_seen'] + ranks[1]['pairs_seen'] == single['pairs_seen'] > 0
    assert abs(ranks[0]['pairs_seen'] - ranks[1]['pairs_seen']) <= sum(h['steps'] for h in single['history'])
    # the ranks hold one model (DDP keeps them in sync) ...
    for key, val in ranks[0]['state'].items():
        assert torch.equal(val, ranks[1]['state'][key]), key
    # ... which is the one-process model up to float summation order
    for key, val in single['state'].items():
        torch.testing.assert_close(ranks[0]['state'][key], val, rtol=1e-4, atol=1e-5)
    assert len(ranks[0]['history']) == len(single['history']) == 3
    for a, b in zip(ranks[0]['history'], single['history'], strict=True):
        assert a['loss'] == pytest.approx(b['loss'], rel=1e-5)
        assert a['steps'] == b['steps']
        assert a['ndcg@10/mean'] == pytest.approx(b['ndcg@10/mean'], abs=1e-9)   # merged validation
    # sharded test evaluation merged across ranks: every rank reports the whole split
    for key, val in single['test'].items():
        assert ranks[0]['test'][key] == pytest.approx(val, abs=1e-9), key
        assert ranks[1]['test'][key] == ranks[0]['test'][key]


@pytest.mark.slow
def test_torchrun_cli_matches_single_process(tmp_path):
    cfg = write_fake_config(tmp_path / 'tiny.yaml', {'LightGCN': {'model': {'embedding_dim': 8, 'num_layers': 2}}},
                            name='tiny_ddp')
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    run = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                          '-m', 'cdrgraph', 'train', cfg, '--out', str(tmp_path / 'ddp')],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count('results written to') == 1          # rank 0 reports, rank 1 stays quiet
    one = subprocess.run([sys.executable, '-m', 'cdrgraph', 'train', cfg, '--out', str(tmp_path / 'one')],
                         capture_output=True, text=True, env=env, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    a = pd.read_csv(tmp_path / 'ddp' / 'results.csv')
    b = pd.read_csv(tmp_path / 'one' / 'results.csv')
    assert len(a) == len(b) > 0 and (a['metric'] == b['metric']).all()
    assert (a['value'] - b['value']).abs().max() < 1e-6
    assert (tmp_path / 'ddp' / 'checkpoints' / 'LightGCN' / 'seed0' / 'model.pt').exists()


def test_other_commands_refuse_torchrun(monkeypatch, capsys):
    from cdrgraph.cli.main import main
    monkeypatch.setenv('WORLD_SIZE', '2')
    assert main(['eval', 'missing.pt']) == 2
    assert 'only `cdrgraph train` is distributed' in capsys.readouterr().err


def test_helpers_without_a_process_group(monkeypatch):
    monkeypatch.delenv('WORLD_SIZE', raising=False)
    assert not D.is_distributed() and D.get_rank() == 0 and D.get_world_size() == 1 and D.is_main_process()
    assert D.init_distributed('cpu') == 'cpu'          # nothing to join
    assert D.all_gather_object({'a': 1}) == [{'a': 1}]
    assert D.all_reduce_sum([1, 2.5]) == [1.0, 2.5]
    monkeypatch.setenv('WORLD_SIZE', 'two')
    with pytest.raises(ValueError, match='WORLD_SIZE'):
        D.env_world_size()


def test_ddp_refuses_sparse_embeddings():
    from cdrgraph.models import BPRMF
    model = BPRMF(num_users=5, num_items=4, embedding_dim=2, sparse=True)
    with pytest.raises(ValueError, match='sparse=False'):
        D.wrap_ddp(model)


# ------------------------------------------------- merging the ranks' metric accumulators
def _halves(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[: n // 2], perm[n // 2:]


def test_ranking_merge_equals_one_accumulator():
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(50, generator=g), torch.randn(50, 9, generator=g)
    mask = torch.rand(50, 9, generator=g) > 0.1
    whole = RankingMetrics((1, 5))
    whole.update(pos, neg, mask)
    a, b = RankingMetrics((1, 5)), RankingMetrics((1, 5))
    i, j = _halves(50)
    a.update(pos[i], neg[i], mask[i])
    b.update(pos[j], neg[j], mask[j])
    merged = a.merge([b])
    assert merged.num_rows == 50
    for key, val in whole.compute().items():
        assert merged.compute()[key] == pytest.approx(val, abs=1e-12)
    full = RankingMetrics((5,))
    full.update_full(torch.zeros(3, 5, dtype=torch.bool), torch.ones(3))
    with pytest.raises(ValueError, match='already holds'):
        RankingMetrics((5,)).merge([whole, full])


def test_ctr_and_rating_merge_equal_one_accumulator():
    g = torch.Generator().manual_seed(1)
    s, y = torch.randn(80, generator=g), (torch.rand(80, generator=g) > 0.5).float()
    users = torch.randint(0, 10, (80,), generator=g)
    i, j = _halves(80, 1)
    whole, a, b = CTRMetrics(), CTRMetrics(), CTRMetrics()
    whole.update(s, y, users)
    a.update(s[i], y[i], users[i])
    b.update(s[j], y[j], users[j])
    merged = a.merge([b]).compute()
    for key, val in whole.compute().items():
        assert merged[key] == pytest.approx(val, abs=1e-12)
    pred, target = torch.rand(40, generator=g) * 5, torch.randint(1, 6, (40,), generator=g).float()
    whole, a, b = RatingMetrics(), RatingMetrics(), RatingMetrics()
    whole.update(pred, target)
    a.update(pred[:15], target[:15])
    b.update(pred[15:], target[15:])
    merged = a.merge([b])
    assert merged.compute() == pytest.approx(whole.compute())
    assert torch.equal(merged.per_row(), whole.per_row())
