"""The notebooks (jupytext percent ``.py`` sources) execute top to bottom; the ``.ipynb`` twins carry no outputs."""
from __future__ import annotations

import glob
import os
import os.path as osp

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
NOTEBOOKS = osp.join(ROOT, 'notebooks')
SOURCES = sorted(glob.glob(osp.join(NOTEBOOKS, '[0-9][0-9]_*.py')))
#: notebooks that take more than ~20 s on a busy 2-core CPU
SLOW = {'04_cold_start.py', '05_depth_study.py'}


def _param(path: str):
    name = osp.basename(path)
    return pytest.param(path, id=name, marks=[pytest.mark.slow] if name in SLOW else [])


def test_notebook_sources_exist():
    names = {osp.basename(p) for p in SOURCES}
    assert {'01_quickstart.py', '02_own_csv.py', '03_multi_target.py', '04_cold_start.py',
            '05_depth_study.py'} <= names


@pytest.mark.parametrize('path', [_param(p) for p in SOURCES])
def test_ipynb_twin_has_no_outputs_and_matches_source(path):
    jupytext = pytest.importorskip('jupytext')
    nbformat = pytest.importorskip('nbformat')
    twin = path[:-3] + '.ipynb'
    assert osp.isfile(twin), f'{twin} is missing: run `jupytext --to ipynb {osp.relpath(path, ROOT)}`'
    nb = nbformat.read(twin, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == 'code':
            assert cell.outputs == [] and cell.execution_count is None, f'{twin} holds outputs'
    src = jupytext.read(path)
    assert [c.source for c in nb.cells] == [c.source for c in src.cells], \
        f'{twin} is out of date: run `jupytext --to ipynb {osp.relpath(path, ROOT)}`'


@pytest.mark.parametrize('path', [_param(p) for p in SOURCES])
def test_notebook_executes(path, tmp_path, monkeypatch):
    jupytext = pytest.importorskip('jupytext')
    nbclient = pytest.importorskip('nbclient')
    pytest.importorskip('ipykernel', reason='ipykernel is needed to start a python3 kernel')
    nb = jupytext.read(path)
    # no classes are defined in a notebook: they only use cdrgraph's public API
    assert not any(line.startswith('class ') for c in nb.cells if c.cell_type == 'code'
                   for line in c.source.splitlines())
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join([ROOT, os.environ.get('PYTHONPATH', '')]).rstrip(os.pathsep))
    monkeypatch.setenv('MPLBACKEND', 'Agg')
    client = nbclient.NotebookClient(nb, kernel_name='python3', timeout=300, startup_timeout=60,
                                     resources={'metadata': {'path': str(tmp_path)}})
    try:
        setup = client.setup_kernel()
        setup.__enter__()
    except Exception as e:  # no kernel spec, no ZMQ, sandbox without sockets, ...
        pytest.skip(f'cannot start a python3 Jupyter kernel: {type(e).__name__}: {e}')
    try:
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
    finally:
        setup.__exit__(None, None, None)
    errors = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs if o.output_type == 'error']
    assert not errors
