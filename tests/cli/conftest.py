"""A tiny FakeCDRDataset experiment config shared by the CLI tests."""
from __future__ import annotations

import importlib.util
import os.path as osp

import pytest
import yaml

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def tiny_config(tmp_path) -> dict:
    return {
        'name': 'tiny',
        'data': {'name': 'FakeCDRDataset', 'num_users': 40, 'num_items': 20, 'avg_degree': 5, 'seed': 0,
                 'side_features': False},
        'split': [{'name': 'LeaveOneOut', 'order': 'random', 'seed': 0}],
        'candidates': {'num_negatives': 5, 'seed': 0, 'dataset_id': 'tiny'},
        'evaluation': {'protocol': 'sampled', 'ks': [1, 5], 'also_full': True},
        'train': {'epochs': 1, 'batch_size': 64, 'lr': 0.01},
        'models': {'BPRMF': {'model': {'embedding_dim': 4}}},
        'seeds': [0],
        'cache_dir': str(tmp_path / 'cache'),
    }


@pytest.fixture
def tiny_cfg(tmp_path):
    return tiny_config(tmp_path)


@pytest.fixture
def tiny_yaml(tmp_path, tiny_cfg):
    path = tmp_path / 'tiny.yaml'
    path.write_text(yaml.safe_dump(tiny_cfg))
    return str(path)


@pytest.fixture
def benchmark_script():
    r"""Import a script of ``benchmarks/`` by name (``benchmark_script('relabel_run')``)."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, 'benchmarks', f'{name}.py'))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    return load
