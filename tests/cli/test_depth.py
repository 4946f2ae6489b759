"""Depth studies: layer combination, per-layer smoothness, the study's CSV/PNG outputs and the CLI."""
from __future__ import annotations

import os.path as osp

import pandas as pd
import pytest
import torch
import yaml

from cdrgraph.cli.depth import combine_layers, depth_study, layer_smoothness, use_combine_mode
from cdrgraph.cli.main import main
from cdrgraph.data.schema import INTERACTS, ITEM
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.metrics.smoothness import cross_domain_mad, dirichlet_energy, mad
from cdrgraph.models import BPRMF, HeroGRAPH, LightGCN
from cdrgraph.testing.graphs import overlap_graph

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def tiny_cfg(tmp_path, models=None) -> dict:
    return {
        'name': 'tiny_depth',
        'data': {'name': 'FakeCDRDataset', 'num_users': 40, 'num_items': 20, 'avg_degree': 5, 'seed': 0,
                 'side_features': False},
        'split': [{'name': 'LeaveOneOut', 'order': 'random', 'seed': 0}],
        'candidates': {'num_negatives': 5, 'seed': 0, 'dataset_id': 'tiny'},
        'evaluation': {'protocol': 'sampled', 'ks': [1, 5]},
        'train': {'epochs': 2, 'batch_size': 64, 'lr': 0.01},
        'models': models or {'LightGCN': {'model': {'embedding_dim': 4}}},
        'seeds': [0],
        'cache_dir': str(tmp_path / 'cache'),
    }


# ---------------------------------------------------------------- combination modes
def test_combine_modes_match_lightgcn():
    torch.manual_seed(0)
    data = overlap_graph()
    batch = CDRBatch.full(data)
    model = LightGCN.from_data(data, embedding_dim=3, num_layers=2)
    layers = model.encode_layers(batch)
    own = model.encode(batch)
    mean = combine_layers(layers, 'mean')
    torch.testing.assert_close(mean['user'], (layers[0]['user'] + layers[1]['user'] + layers[2]['user']) / 3)
    torch.testing.assert_close(mean['item'], own['item'])
    assert combine_layers(layers, 'last')['item'] is layers[-1]['item']
    # patched encode drives the model's scores (and hence its loss and evaluation)
    use_combine_mode(model, 'last')
    torch.testing.assert_close(model.encode(batch)['user'], layers[-1]['user'])
    use_combine_mode(model, 'mean')
    torch.testing.assert_close(model.encode(batch)['user'], own['user'])
    with pytest.raises(ValueError, match='mode'):
        combine_layers(layers, 'max')


def test_use_combine_mode_rejects_models_without_layers():
    data = overlap_graph()
    with pytest.raises(ValueError, match='encode_layers'):
        use_combine_mode(BPRMF.from_data(data, embedding_dim=2), 'last')
    model = BPRMF.from_data(data, embedding_dim=2)
    assert use_combine_mode(model, 'native') is model
    with pytest.raises(ValueError, match='combine mode'):
        use_combine_mode(model, 'sum')


# ---------------------------------------------------------------- per-layer smoothness
def test_layer_smoothness_shared_users():
    torch.manual_seed(0)
    data = overlap_graph()            # domain A: users 0-4, items 0-4; B: users 0,1,2,5, items 5-8
    model = LightGCN.from_data(data, embedding_dim=3, num_layers=1)
    df = layer_smoothness(model, data)
    # per layer: 4 metrics x 2 domains + mad_item x 2 + dirichlet/all + 2 cross metrics for A|B
    assert len(df) == 2 * (8 + 2 + 1 + 2)
    assert set(df['metric']) == {'dirichlet', 'dirichlet_ratio', 'mad_user', 'mad_item', 'mad_neighbor',
                                 'cross_mad_item', 'cross_mad_user'}
    val = df.set_index(['layer', 'metric', 'domain'])['value']
    xu, xi = model.user_emb.weight.detach(), model.item_emb.weight.detach()
    ei, dom = data[INTERACTS].edge_index, data[ITEM].domain
    e_b = ei[:, dom[ei[1]] == 1]
    assert val[(0, 'dirichlet', 'B')] == pytest.approx(dirichlet_energy(xu, xi, e_b).item(), rel=1e-5)
    assert val[(0, 'dirichlet', 'all')] == pytest.approx(dirichlet_energy(xu, xi, ei).item(), rel=1e-5)
    assert val[(0, 'mad_user', 'B')] == pytest.approx(mad(xu[[0, 1, 2, 5]]).item(), rel=1e-5)
    assert val[(0, 'mad_user', 'A')] == pytest.approx(mad(xu[:5]).item(), rel=1e-5)
    layer1 = model.encode_layers(CDRBatch.full(data))[1]
    assert val[(1, 'mad_item', 'A')] == pytest.approx(mad(layer1['item'][:5]).item(), rel=1e-5)
    assert val[(1, 'cross_mad_item', 'A|B')] == pytest.approx(
        cross_domain_mad(layer1['item'][:5], layer1['item'][5:], paired=False).item(), rel=1e-5)
    norm = layer1['user'][:5].pow(2).sum() + layer1['item'][:5].pow(2).sum()
    e_a = ei[:, dom[ei[1]] == 0]
    assert val[(1, 'dirichlet_ratio', 'A')] == pytest.approx(
        (dirichlet_energy(layer1['user'], layer1['item'], e_a) / norm).item(), rel=1e-5)


def test_layer_smoothness_per_domain_users():
    torch.manual_seed(0)
    data = overlap_graph()
    model = HeroGRAPH.from_data(data, embedding_dim=2, num_layers=1, aggr='lightgcn')
    df = layer_smoothness(model, data)
    val = df.set_index(['layer', 'metric', 'domain'])['value']
    z = model.encode_layers(CDRBatch.full(data))[1]
    xu = z['user'].detach()                      # [U, K, D]
    both = torch.tensor([0, 1, 2])                # users active in A and B
    assert val[(1, 'cross_mad_user_paired', 'A|B')] == pytest.approx(
        cross_domain_mad(xu[both, 0], xu[both, 1]).item(), rel=1e-5)
    ei, dom = data[INTERACTS].edge_index, data[ITEM].domain
    e_a, e_b = ei[:, dom[ei[1]] == 0], ei[:, dom[ei[1]] == 1]
    expected = dirichlet_energy(xu[:, 0], z['item'], e_a) + dirichlet_energy(xu[:, 1], z['item'], e_b)
    assert val[(1, 'dirichlet', 'all')] == pytest.approx(expected.item(), rel=1e-5)


# ---------------------------------------------------------------- the study
def test_depth_study_on_fake_data(tmp_path):
    out = str(tmp_path / 'depth')
    study = depth_study(tiny_cfg(tmp_path), layers=[2, 0, 1], seeds=[0], out=out,
                        combine_modes=('mean', 'last'))
    assert study.skipped == {}
    metrics = pd.read_csv(osp.join(out, 'depth_metrics.csv'))
    smooth = pd.read_csv(osp.join(out, 'depth_smoothness.csv'))
    assert list(metrics.columns) == ['model', 'combine', 'num_layers', 'seed', 'protocol', 'metric', 'domain',
                                     'value']
    hr = metrics[metrics['metric'] == 'hr@5']
    assert sorted(zip(hr['combine'], hr['num_layers'], hr['domain'], strict=True)) == sorted(
        (m, L, d) for m in ('mean', 'last') for L in (0, 1, 2) for d in ('d0', 'd1', 'mean'))
    assert set(metrics['model']) == {'LightGCN'} and set(metrics['protocol']) == {'sampled'}
    # L = 0 is one model shared by both modes
    l0 = metrics[metrics['num_layers'] == 0].pivot_table(index=['metric', 'domain'], columns='combine',
                                                         values='value')
    assert (l0['mean'] == l0['last']).all()
    # smoothness of layers 0..L of every trained model
    layers = smooth.groupby(['combine', 'num_layers'])['layer'].apply(lambda s: sorted(set(s))).to_dict()
    assert layers == {(m, L): list(range(L + 1)) for m in ('mean', 'last') for L in (0, 1, 2)}
    per_layer = smooth.groupby(['combine', 'num_layers', 'layer']).size()
    assert (per_layer == 13).all()
    # LightGCN's layer-0 output is the ego table itself; propagation lowers the raw Dirichlet energy
    deep = smooth[(smooth['num_layers'] == 2) & (smooth['metric'] == 'dirichlet') & (smooth['domain'] == 'all')]
    for _, g in deep.groupby('combine'):
        values = g.sort_values('layer')['value'].tolist()
        assert values[2] < values[0]
    assert sorted(osp.basename(p) for p in study.figures) == ['metric_vs_depth.png', 'smoothness_vs_layer.png']
    for path in study.figures:
        with open(path, 'rb') as f:
            head = f.read(8)
        assert head == PNG_MAGIC and osp.getsize(path) > 5000
    assert yaml.safe_load(open(osp.join(out, 'config.yaml')))['depth']['layers'] == [0, 1, 2]


def test_depth_cli(tmp_path, capsys):
    path = tmp_path / 'depth.yaml'
    path.write_text(yaml.safe_dump(tiny_cfg(tmp_path)))
    out = str(tmp_path / 'cli')
    assert main(['depth', str(path), '--layers', '0,1', '--seeds', '0', '--combine', 'last,learned',
                 '--out', out]) == 0
    assert 'depth study written to' in capsys.readouterr().out
    df = pd.read_csv(osp.join(out, 'depth_metrics.csv'))
    assert set(df['combine']) == {'last', 'learned'} and set(df['num_layers']) == {0, 1}
    # the learned mode trains its own model (trainable layer weights): its L = 1 numbers differ from 'last'
    l1 = df[(df['num_layers'] == 1) & (df['metric'] == 'ndcg@5')].pivot_table(index='domain', columns='combine',
                                                                               values='value')
    assert not (l1['last'] == l1['learned']).all()
    assert osp.getsize(osp.join(out, 'metric_vs_depth.png')) > 0
    # a config without a propagating model is a one-line error
    path.write_text(yaml.safe_dump(tiny_cfg(tmp_path, models={'BPRMF': {'model': {'embedding_dim': 4}}})))
    assert main(['depth', str(path), '--layers', '0,1', '--out', out]) == 2
    assert 'propagating model' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(['depth', str(path), '--layers', '1,-2'])


def test_learned_mode_needs_a_model_built_for_it():
    data = overlap_graph()
    model = LightGCN.from_data(data, embedding_dim=2, num_layers=1)
    with pytest.raises(ValueError, match="combine='learned'"):
        use_combine_mode(model, 'learned')
    learned = LightGCN.from_data(data, embedding_dim=2, num_layers=1, combine='learned')
    assert use_combine_mode(learned, 'learned') is learned
