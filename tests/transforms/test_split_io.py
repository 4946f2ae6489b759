"""save_split / load_split: round trip, manifest, checksums, atomic writes."""
from __future__ import annotations

import json
import os

import pandas as pd
import pytest
import torch

from cdrgraph.data import from_interactions
from cdrgraph.transforms._split_utils import edges_checksum
from cdrgraph.transforms.cold_start_split import ColdStartSplit
from cdrgraph.transforms.eval_candidates import EvalCandidates
from cdrgraph.transforms.leave_one_out import LeaveOneOut
from cdrgraph.transforms.split_io import SplitChecksumError, load_split, save_split

EI = ('user', 'interacts', 'item')


def build():
    rows = [(u, f'{d}{(u * 3 + j) % 15}', d, j) for u in range(12) for d in 'ab' for j in range(5)]
    return from_interactions(pd.DataFrame(rows, columns=['user', 'item', 'domain', 'time']), time='time')


def assert_same(x, y):
    assert set(x.node_types) == set(y.node_types) and set(x.edge_types) == set(y.edge_types)
    other = [y._global_store] + [y[t] for t in x.node_types] + [y[t] for t in x.edge_types]
    for a, b in zip(list(x.stores), other, strict=True):
        assert set(a.keys()) == set(b.keys())
        for k in a.keys():
            va, vb = a[k], b[k]
            if isinstance(va, torch.Tensor):
                assert va.dtype == vb.dtype and torch.equal(va, vb), k
            else:
                assert va == vb, k


def test_round_trip_and_manifest(tmp_path):
    data = build()
    split = EvalCandidates(num_negatives=4, dataset_id='toy')(LeaveOneOut(order='time')(data))
    man_path = save_split(str(tmp_path / 's'), split, manifest={'dataset': 'toy'})
    loaded = load_split(str(tmp_path / 's'), expected_checksum=edges_checksum(data))
    for a, b in zip(split, loaded, strict=True):
        assert_same(a, b)
    with open(man_path) as f:
        man = json.load(f)
    assert man['rule'] == "LeaveOneOut(order='time', validation=True, seed=0)"
    assert man['seed'] == 0 and man['dataset'] == 'toy'
    assert man['input_checksum'] == edges_checksum(data)
    assert man['counts']['test'] == {'train_edges': 72, 'label_rows': 24, 'candidate_width': 4,
                                     'candidates': 96}
    assert man['candidates_checksum']['train'] is None and len(man['candidates_checksum']['test']) == 64
    # plain dicts of tensors: loadable without unpickling arbitrary objects
    obj = torch.load(str(tmp_path / 's' / 'test.pt'), weights_only=True)
    assert isinstance(obj, dict) and set(obj) == {'global', 'node', 'edge'}
    assert not [f for f in os.listdir(tmp_path / 's') if f.endswith('.tmp')]


def test_cold_start_metadata_round_trip(tmp_path):
    split = ColdStartSplit('a', 'b', 0.5)(build())
    save_split(str(tmp_path), split)
    loaded = load_split(str(tmp_path))
    assert torch.equal(loaded[2].cold_test_users, split[2].cold_test_users)
    assert loaded[2].target_domain == 1 and loaded[0].domain_names == ['a', 'b']


def test_checksum_mismatches_raise(tmp_path):
    data = build()
    split = EvalCandidates(num_negatives=4)(LeaveOneOut(order='time')(data))
    path = str(tmp_path)
    save_split(path, split)
    with pytest.raises(SplitChecksumError, match='input_checksum'):
        load_split(path, expected_checksum='0' * 64)
    # a modified candidate list (re-saved file) is caught by the file and candidate checksums
    obj = torch.load(os.path.join(path, 'test.pt'), weights_only=True)
    for et, attrs in obj['edge']:
        if tuple(et) == EI:
            attrs['edge_label_neg'] = attrs['edge_label_neg'].flip(1)
    torch.save(obj, os.path.join(path, 'test.pt'))
    with pytest.raises(SplitChecksumError, match='test.pt'):
        load_split(path)
    with open(os.path.join(path, 'manifest.json')) as f:
        man = json.load(f)
    from cdrgraph.transforms.split_io import _sha256_file
    man['files']['test']['sha256'] = _sha256_file(os.path.join(path, 'test.pt'))
    with open(os.path.join(path, 'manifest.json'), 'w') as f:
        json.dump(man, f)
    with pytest.raises(SplitChecksumError, match='candidate lists'):
        load_split(path)


def test_missing_manifest(tmp_path):
    with pytest.raises(FileNotFoundError, match='manifest.json'):
        load_split(str(tmp_path))
