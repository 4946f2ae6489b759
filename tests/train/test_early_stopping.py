"""EarlyStopping semantics."""
from __future__ import annotations

import math

import pytest

from cdrgraph.train.early_stopping import EarlyStopping


def test_max_mode_patience():
    s = EarlyStopping(patience=2)
    assert [s.step(v, e) for e, v in enumerate([0.1, 0.3, 0.2])] == [True, True, False]
    assert not s.should_stop
    s.step(0.3, 3)  # equal is not an improvement
    assert s.should_stop and s.best == 0.3 and s.best_epoch == 1 and s.num_bad == 2


def test_min_mode_and_delta():
    s = EarlyStopping(patience=1, mode='min', min_delta=0.05)
    assert s.step(1.0, 0)
    assert not s.step(0.97, 1)  # improvement smaller than min_delta
    assert s.should_stop and s.best == 1.0


def test_improvement_resets_counter():
    s = EarlyStopping(patience=2)
    for e, v in enumerate([0.5, 0.4, 0.6, 0.5]):
        s.step(v, e)
    assert s.num_bad == 1 and s.best_epoch == 2 and not s.should_stop


def test_non_finite_never_improves():
    s = EarlyStopping(patience=3)
    assert not s.step(math.nan, 0) and s.best is None
    assert s.step(0.1, 1) and not s.step(math.inf, 2)


def test_state_dict_roundtrip():
    s = EarlyStopping(patience=3)
    s.step(0.2, 0)
    s.step(0.1, 1)
    t = EarlyStopping(patience=3)
    t.load_state_dict(s.state_dict())
    assert (t.best, t.best_epoch, t.num_bad) == (0.2, 0, 1)
    assert repr(t) == "EarlyStopping(patience=3, mode='max', min_delta=0.0)"


@pytest.mark.parametrize('kw,msg', [({'mode': 'up'}, 'mode'), ({'patience': 0}, 'patience'),
                                    ({'min_delta': -1.0}, 'min_delta')])
def test_bad_args(kw, msg):
    with pytest.raises(ValueError, match=msg):
        EarlyStopping(**kw)
