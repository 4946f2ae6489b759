import math

import pytest
import torch

from cdrgraph.nn.conv.bi_tgcf_conv import BiTGCFConv


def test_hand_computed_example():
    # u0-i0, u0-i1, u1-i1; item 2 isolated. deg u0=2, u1=1, i0=1, i1=2
    ei = torch.tensor([[0, 0, 1], [0, 1, 1]])
    xu = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    xi = torch.tensor([[2.0, 0.0], [0.0, 4.0], [5.0, 5.0]])
    conv = BiTGCFConv(dropout=0.0)
    out_u, out_i = conv(xu, xi, ei)
    s2 = math.sqrt(2.0)
    su = torch.tensor([[2.0 / s2, 2.0], [0.0, 4.0 / s2]])
    si = torch.tensor([[1.0 / s2, 0.0], [0.5, 1.0 / s2], [0.0, 0.0]])
    torch.testing.assert_close(out_u, xu + su + xu * su)
    torch.testing.assert_close(out_i, xi + si + xi * si)
    torch.testing.assert_close(out_i[2], xi[2])   # isolated node keeps its row


def test_dropout_only_in_training():
    torch.manual_seed(0)
    ei = torch.tensor([[0, 1], [0, 1]])
    xu, xi = torch.randn(2, 200), torch.randn(2, 200)
    conv = BiTGCFConv(dropout=0.5)
    conv.eval()
    ref_u, ref_i = conv(xu, xi, ei)
    conv.train()
    out_u, _ = conv(xu, xi, ei)
    dropped = out_u == 0
    assert 0.3 < dropped.float().mean() < 0.7
    torch.testing.assert_close(out_u[~dropped], 2.0 * ref_u[~dropped])


def test_errors_and_repr():
    with pytest.raises(ValueError, match='dropout'):
        BiTGCFConv(dropout=1.0)
    conv = BiTGCFConv(0.3)
    assert repr(conv) == 'BiTGCFConv(dropout=0.3)'
    assert list(conv.parameters()) == []
    conv.reset_parameters()
