"""Shared pytest fixtures: where the real data lives and markers that skip cleanly."""
from __future__ import annotations

import os
import os.path as osp

import pytest
import torch

# Unit tests run on tiny tensors, where intra-op threads only add synchronisation (measured 10-40x slower
# fits on a shared 2-core machine); CDRGRAPH_TEST_THREADS=N restores N threads (e.g. for slow real-data tests).
torch.set_num_threads(int(os.environ.get('CDRGRAPH_TEST_THREADS', '1')))

#: ../shared/data beside the repository (override with CDRGRAPH_SHARED_DATA)
SHARED_DATA = os.environ.get(
    'CDRGRAPH_SHARED_DATA', osp.abspath(osp.join(osp.dirname(__file__), '..', '..', 'shared', 'data')))


def shared_path(*parts: str) -> str:
    return osp.join(SHARED_DATA, *parts)


@pytest.fixture(scope='session')
def shared_data() -> str:
    """Path of ../shared/data; skips the test when it is absent."""
    if not osp.isdir(SHARED_DATA):
        pytest.skip(f'real data not found at {SHARED_DATA}')
    return SHARED_DATA


def pytest_collection_modifyitems(config, items):
    try:
        import torch
        has_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason='needs a CUDA device')
    for item in items:
        if 'gpu' in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
