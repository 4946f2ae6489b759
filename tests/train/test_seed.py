"""seed_everything and RNG-state capture/restore."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from cdrgraph.train.checkpoint import load_checkpoint, save_checkpoint
from cdrgraph.train.seed import get_rng_state, seed_everything, set_rng_state


def _draw():
    return random.random(), float(np.random.rand()), torch.rand(3).tolist(), random.gauss(0, 1)


def test_same_seed_same_numbers():
    seed_everything(7)
    a = _draw()
    seed_everything(7)
    assert _draw() == a
    seed_everything(8)
    assert _draw() != a


def test_state_roundtrip_through_weights_only_checkpoint(tmp_path):
    seed_everything(1)
    _draw()
    np.random.standard_normal()  # leaves a cached gaussian in NumPy's state
    state = get_rng_state()
    expected = _draw()
    save_checkpoint({'rng': state}, str(tmp_path / 'rng.pt'))
    seed_everything(99)
    _draw()
    set_rng_state(load_checkpoint(str(tmp_path / 'rng.pt'))['rng'])
    assert _draw() == expected


@pytest.mark.parametrize('bad', [-1, 2**32, 1.5, True])
def test_bad_seed(bad):
    with pytest.raises(ValueError, match='seed must be an int'):
        seed_everything(bad)


def test_incomplete_state():
    with pytest.raises(KeyError, match='lacks'):
        set_rng_state({'torch': torch.get_rng_state()})
