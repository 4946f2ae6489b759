"""Private split helpers: stable seeding, rounding, grouping."""
from __future__ import annotations

import hashlib
import json

import torch

from cdrgraph.transforms._split_utils import group_positions, round_half_up, sha256_tensors, stable_seed


def test_stable_seed_is_sha256_of_the_parts():
    payload = json.dumps(['toy', 'test', 'Sport', '0'], separators=(',', ':')).encode()
    digest = hashlib.sha256(payload).digest()
    assert stable_seed('toy', 'test', 'Sport', 0) == int.from_bytes(digest[:8], 'big') & (2**63 - 1)
    assert stable_seed('toy', 'test', 'Sport', 0) != stable_seed('toy', 'val', 'Sport', 0)
    assert 0 <= stable_seed('x') < 2**63


def test_round_half_up():
    assert [round_half_up(x) for x in (0.5, 1.5, 2.5, 2.4999, 0.1 * 25)] == [1, 2, 3, 2, 3]


def test_group_positions():
    group = torch.tensor([1, 0, 1, 1, 0])
    order = torch.tensor([5, 3, 1, 5, 2])  # ties (5, 5) keep edge order
    perm, rank, size = group_positions(group, order)
    assert perm.tolist() == [4, 1, 2, 0, 3]
    assert rank.tolist() == [0, 1, 0, 1, 2]
    assert size.tolist() == [2, 2, 3, 3, 3]


def test_sha256_tensors_depends_on_shape_and_values():
    a = torch.arange(6)
    assert sha256_tensors(a) == sha256_tensors(torch.arange(6))
    assert sha256_tensors(a) != sha256_tensors(a.view(2, 3))
    assert sha256_tensors(a, None) != sha256_tensors(a)
