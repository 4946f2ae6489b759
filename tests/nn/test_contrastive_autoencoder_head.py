"""ContrastiveAutoencoderHead: CAT-ART's contrastive autoencoder (MODELS.md §6.3, §6.8 #2-#4)."""
import math

import numpy as np
import pytest
import torch

from cdrgraph.nn.heads.contrastive_autoencoder_head import ContrastiveAutoencoderHead


def np_info_nce(a, b, tau):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    s = a @ b.T / tau

    def ce(m):
        m = m - m.max(axis=1, keepdims=True)
        return float(np.mean(-(np.diag(m) - np.log(np.exp(m).sum(axis=1)))))

    return 0.5 * (ce(s) + ce(s.T))


def test_encoder_decoder_shapes_widths_and_repr():
    head = ContrastiveAutoencoderHead(num_domains=3, channels=4)
    widths = [m.out_features for m in head.encoder if isinstance(m, torch.nn.Linear)]
    assert widths == [20, 12, 4]  # K*h -> 5h -> 3h -> h
    assert [m.out_features for m in head.decoder if isinstance(m, torch.nn.Linear)] == [12, 20, 12]
    # one PReLU (own slope) per hidden layer, as in the reference code
    assert sum(isinstance(m, torch.nn.PReLU) for m in head.encoder) == 2
    x = torch.randn(7, 3, 4)
    assert head(x).shape == (7, 4) and head.encode(x).shape == (7, 4)
    assert head.decode(head(x)).shape == (7, 3, 4)
    assert repr(head) == ('ContrastiveAutoencoderHead(num_domains=3, channels=4, hidden_multipliers=(5, 3), '
                          'temperature=0.1, loss_weights=(0.2, 0.4, 0.4))')


@pytest.mark.parametrize('kwargs, match', [
    (dict(num_domains=1, channels=4), 'num_domains >= 2'),
    (dict(num_domains=2, channels=4, temperature=0.0), 'temperature must be > 0'),
    (dict(num_domains=2, channels=4, loss_weights=(1.0, 1.0)), 'loss_weights must be three'),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ContrastiveAutoencoderHead(**kwargs)


def test_bad_input_shape_raises():
    head = ContrastiveAutoencoderHead(2, 4)
    with pytest.raises(ValueError, match=r'x must be \[B, 2, 4\]'):
        head(torch.randn(3, 8))
    with pytest.raises(ValueError, match='slot must be long'):
        head.mask(torch.randn(3, 2, 4), slot=torch.tensor([0, 1, 2]))


def test_mask_replaces_exactly_one_slot_by_pad():
    torch.manual_seed(0)
    head = ContrastiveAutoencoderHead(4, 3)
    x = torch.randn(50, 4, 3)
    masked, slot = head.mask(x)
    is_pad = (masked == head.pad).all(-1)
    same = (masked == x).all(-1)
    assert torch.equal(is_pad.sum(1), torch.ones(50, dtype=torch.long))
    assert torch.equal(is_pad.float().argmax(1), slot)
    assert torch.equal(same, ~is_pad)


def test_mask_frequency_is_uniform_and_seeded():
    head = ContrastiveAutoencoderHead(4, 2)
    x = torch.zeros(40000, 4, 2)
    _, slot = head.mask(x, generator=torch.Generator().manual_seed(3))
    freq = torch.bincount(slot, minlength=4).float() / slot.numel()
    assert torch.allclose(freq, torch.full((4,), 0.25), atol=0.01)
    _, again = head.mask(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(slot, again)


def test_fill_puts_pad_in_missing_slots_only():
    head = ContrastiveAutoencoderHead(3, 2)
    x = torch.randn(2, 3, 2)
    missing = torch.tensor([[False, True, False], [False, False, False]])
    out = head.fill(x, missing)
    assert torch.equal(out[0, 1], head.pad.detach()) and torch.equal(out[~missing], x[~missing])
    assert head.fill(x, None) is x


def test_contrastive_term_matches_numpy_reference():
    torch.manual_seed(1)
    head = ContrastiveAutoencoderHead(3, 4, temperature=0.1)
    x = torch.randn(6, 3, 4)
    slot = torch.tensor([0, 1, 2, 0, 1, 2])
    con, _, _ = head.loss_terms(x, slot=slot)
    c = head.encode(x).detach().numpy().astype(np.float64)
    c_masked = head.encode(head.mask(x, slot)[0]).detach().numpy().astype(np.float64)
    assert con.item() == pytest.approx(np_info_nce(c, c_masked, 0.1), rel=1e-5)


def test_identical_orthogonal_views_give_the_analytic_value():
    # make f read slot 0 only (PReLU slopes 1 -> linear), mask slot 1: both views give the same code
    head = ContrastiveAutoencoderHead(2, 2, temperature=0.5)
    lins = [m for m in head.encoder if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for m in head.encoder:
            if isinstance(m, torch.nn.PReLU):
                m.weight.fill_(1.0)
        for lin in lins:
            lin.weight.zero_()
            lin.bias.zero_()
            lin.weight[:2, :2] = torch.eye(2)
    x = torch.tensor([[[1.0, 0.0], [5.0, 5.0]], [[0.0, 1.0], [-3.0, 2.0]]])
    con, _, _ = head.loss_terms(x, slot=torch.tensor([1, 1]))
    # S = I / tau for both directions: CE = log(1 + (B - 1) e^{-1/tau})
    assert con.item() == pytest.approx(math.log(1 + math.exp(-2.0)), rel=1e-5)


def test_loss_weights_and_reconstruction_only():
    torch.manual_seed(2)
    head = ContrastiveAutoencoderHead(3, 4)
    x = torch.randn(5, 3, 4)
    slot = torch.tensor([2, 0, 1, 1, 0])
    con, rec, rec_masked = head.loss_terms(x, slot=slot)
    torch.testing.assert_close(head.loss(x, slot=slot), 0.2 * con + 0.4 * rec + 0.4 * rec_masked)
    torch.testing.assert_close(rec, ((head.decode(head.encode(x)) - x) ** 2).mean())
    torch.testing.assert_close(head.loss(x, reconstruction_only=True), rec)
    custom = ContrastiveAutoencoderHead(3, 4, loss_weights=(1.0, 0.0, 0.0))
    custom.load_state_dict(head.state_dict())
    torch.testing.assert_close(custom.loss(x, slot=slot), con)


def test_pad_learns_from_the_masked_view_and_target_is_detached():
    head = ContrastiveAutoencoderHead(2, 3)
    x = torch.randn(4, 2, 3, requires_grad=True)
    head.loss(x).backward()
    assert head.pad.grad is not None and head.pad.grad.abs().sum() > 0
    # reconstruction-only: no masked view, so the pad gets no gradient
    head.zero_grad()
    head.loss(x, reconstruction_only=True).backward()
    assert head.pad.grad is None or head.pad.grad.abs().sum() == 0


def test_autoencoder_reconstructs_a_tiny_batch_when_nothing_is_masked():
    # 4 users span at most a 4-dim subspace of R^{K*h}: the h = 4 bottleneck can reconstruct them exactly
    torch.manual_seed(0)
    head = ContrastiveAutoencoderHead(3, 4)
    x = torch.randn(4, 3, 4)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = head.loss(x, reconstruction_only=True).item()
    for _ in range(100):
        opt.zero_grad()
        loss = head.loss(x, reconstruction_only=True)
        loss.backward()
        opt.step()
    assert loss.item() < 1e-3 * first
    torch.testing.assert_close(head.decode(head(x)), x, atol=0.05, rtol=0)


def test_reset_parameters_is_seeded_and_undoes_training():
    head = ContrastiveAutoencoderHead(2, 3)
    torch.manual_seed(5)
    head.reset_parameters()
    state = {k: v.clone() for k, v in head.state_dict().items()}
    with torch.no_grad():
        for p in head.parameters():
            p.add_(1.0)
    torch.manual_seed(5)
    head.reset_parameters()
    for k, v in head.state_dict().items():
        assert torch.equal(v, state[k]), k
