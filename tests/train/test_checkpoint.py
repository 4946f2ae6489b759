"""Atomic, weights_only-safe checkpoints."""
from __future__ import annotations

import os

import pytest
import torch

from cdrgraph.train.checkpoint import check_weights_only_safe, load_checkpoint, save_checkpoint


def test_roundtrip_with_optimizer(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    obj = {'model': model.state_dict(), 'optimizer': opt.state_dict(), 'epoch': 3, 'best': None,
           'history': [{'loss': 0.5, 'stage': 'joint'}], 'pair': (1, 'a')}
    path = str(tmp_path / 'sub' / 'c.pt')
    save_checkpoint(obj, path)
    out = torch.load(path, weights_only=True)  # loadable by the strict loader directly
    assert out['epoch'] == 3 and out['best'] is None and out['history'] == [{'loss': 0.5, 'stage': 'joint'}]
    assert torch.equal(out['model']['weight'], model.weight)
    opt2 = torch.optim.Adam(model.parameters(), lr=0.1)
    opt2.load_state_dict(load_checkpoint(path)['optimizer'])
    assert torch.equal(opt2.state_dict()['state'][0]['exp_avg'], opt.state_dict()['state'][0]['exp_avg'])


def test_unsafe_content_named():
    with pytest.raises(TypeError, match=r"checkpoint\['extra'\]\['fn'\].*function"):
        check_weights_only_safe({'extra': {'fn': lambda x: x}})
    with pytest.raises(TypeError, match='key'):
        check_weights_only_safe({(1, 2): 0})


def test_crash_in_writer_keeps_previous_file(tmp_path, monkeypatch):
    path = str(tmp_path / 'last.pt')
    save_checkpoint({'epoch': 1}, path)

    def broken_save(obj, f, *args, **kwargs):
        f.write(b'partial')
        raise OSError('disk full')

    monkeypatch.setattr(torch, 'save', broken_save)
    with pytest.raises(OSError, match='disk full'):
        save_checkpoint({'epoch': 2}, path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ['last.pt']  # no temporary left over
    assert load_checkpoint(path)['epoch'] == 1


def test_crash_before_first_checkpoint_leaves_nothing(tmp_path, monkeypatch):
    def broken_save(obj, f, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, 'save', broken_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({'epoch': 2}, str(tmp_path / 'x.pt'))
    assert os.listdir(tmp_path) == []


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'):
        load_checkpoint(str(tmp_path / 'nope.pt'))
    bad = tmp_path / 'bad.pt'
    bad.write_bytes(b'garbage')
    with pytest.raises(RuntimeError, match='weights_only=True'):
        load_checkpoint(str(bad))
