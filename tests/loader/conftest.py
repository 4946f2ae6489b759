"""Tiny graphs shared by the loader tests."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cdrgraph.data import from_interactions


@pytest.fixture
def hand_graph():
    r"""4 users, domain 'a' (items 0..3) and 'b' (items 4..7), with time and rating.

    u0: a0 (t5), a1 (t1), a2 (t3), b0 (t2)
    u1: a0 (t1), b1 (t4), b2 (t1)
    u2: b0 (t7), b3 (t3)
    u3: a3 (t2)
    """
    rows = [(0, 'i0', 'a', 5, 4.0), (0, 'i1', 'a', 1, 3.0), (0, 'i2', 'a', 3, 5.0), (0, 'j0', 'b', 2, 1.0),
            (1, 'i0', 'a', 1, 2.0), (1, 'j1', 'b', 4, 5.0), (1, 'j2', 'b', 1, 4.0),
            (2, 'j0', 'b', 7, 3.0), (2, 'j3', 'b', 3, 2.0),
            (3, 'i3', 'a', 2, 1.0)]
    df = pd.DataFrame(rows, columns=['user', 'item', 'domain', 'time', 'rating'])
    return from_interactions(df, time='time', rating='rating')


@pytest.fixture
def random_graph():
    r"""Factory of random multi-domain graphs (deduplicated) built with from_interactions."""
    def make(num_users: int = 60, items=(30, 12, 5), num_edges: int = 600, seed: int = 0,
             rating: bool = False):
        rng = np.random.default_rng(seed)
        dom = rng.integers(0, len(items), num_edges)
        sizes = np.asarray(items)
        item = (rng.random(num_edges) * sizes[dom]).astype(np.int64)
        df = pd.DataFrame({'user': rng.integers(0, num_users, num_edges), 'item': item,
                           'domain': np.asarray([f'd{k}' for k in range(len(items))])[dom]})
        if rating:
            df['rating'] = rng.integers(1, 6, num_edges).astype(float)
        df = df.drop_duplicates(['user', 'item', 'domain'])
        return from_interactions(df, rating='rating' if rating else None)
    return make
