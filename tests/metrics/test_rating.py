import math

import pytest
import torch

from cdrgraph.metrics.rating import RatingMetrics, mae, rmse

PRED = torch.tensor([1.0, 4.0, 3.5])
TARGET = torch.tensor([2.0, 4.0, 5.0])  # errors -1, 0, -1.5


def test_mae_rmse_hand_computed():
    assert mae(PRED, TARGET) == pytest.approx(2.5 / 3)
    assert rmse(PRED, TARGET) == pytest.approx(math.sqrt((1 + 0 + 2.25) / 3))


def test_clip_and_errors():
    assert mae(torch.tensor([6.0, 0.0]), torch.tensor([5.0, 1.0]), clip=(1, 5)) == 0.0
    with pytest.raises(ValueError, match='same shape'):
        mae(PRED, TARGET[:2])
    with pytest.raises(ValueError, match='non-finite'):
        rmse(torch.tensor([float('nan')]), torch.tensor([1.0]))
    assert math.isnan(mae(torch.empty(0), torch.empty(0)))


def test_rating_metrics_pooled_over_chunks_not_per_user_mean():
    m = RatingMetrics()
    m.update(PRED[:1], TARGET[:1])  # "user A": error 1
    m.update(PRED[1:], TARGET[1:])  # "user B": errors 0, 1.5
    out = m.compute()
    assert out['mae'] == pytest.approx(2.5 / 3)  # pooled; the per-user mean would be (1 + 0.75) / 2
    assert out['rmse'] == pytest.approx(math.sqrt(3.25 / 3))
    assert out['num_rows'] == 3
    assert m.per_row().tolist() == [-1.0, 0.0, -1.5]
    clipped = RatingMetrics(clip=(1, 5))
    clipped.update(torch.tensor([7.0]), torch.tensor([4.0]))
    assert clipped.compute()['mae'] == 1.0
    assert repr(clipped) == 'RatingMetrics(clip=(1.0, 5.0))'
    with pytest.raises(ValueError, match='low <= high'):
        RatingMetrics(clip=(5, 1))
