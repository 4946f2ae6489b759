r"""UniCDR+'s deep-interest (target-aware, DIN-style) interaction aggregator
(MODELS.md §4.3 (c))."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ['DeepInterestAggregatorHead']


class DeepInterestAggregatorHead(torch.nn.Module):
    r"""Deep-interest aggregator of `"A Unified Framework for Cross-Domain
    Recommendation" <https://arxiv.org/abs/2409.04540>`_ (Cao et al., 2024)
    (MODELS.md §4.3 (c), [ours, DIN-style]). For every candidate
    :math:`\mathbf{v}_i`, context items :math:`\mathbf{x}_j` get the
    unnormalised weight of an attention MLP (DIN, Zhou et al., KDD 2018):

    .. math::
        a_{ij} &= \mathrm{MLP}_{att}([\mathbf{x}_j; \mathbf{v}_i; \mathbf{x}_j - \mathbf{v}_i;
                  \mathbf{x}_j \odot \mathbf{v}_i]) \cdot m_j

        \mathbf{p}_i &= \textstyle\sum_j a_{ij} \mathbf{x}_j

        \mathbf{g}_i &= \lambda_a \mathbf{e} + (1 - \lambda_a)\, \mathbf{W}_{agg} \mathbf{p}_i

    with :math:`\mathrm{MLP}_{att}: 4h \to 80 \to 40 \to 1` (PReLU, no
    softmax: the weights are not normalised). Masked slots get weight ``0``;
    an empty context gives :math:`\mathbf{g}_i = \lambda_a \mathbf{e}`.

    Args:
        channels (int): embedding size ``h``.
        hidden (Sequence[int], optional): hidden widths of the attention MLP.
            (default: :obj:`(80, 40)`)
        lambda_a (float, optional): :math:`\lambda_a \in [0, 1]`, weight of
            the ID embedding. (default: :obj:`0.5`)

    Shapes:
        - **input:** ID embedding ``e [B, h]``, context ``x [B, M, h]``, mask
          ``bool[B, M]``, candidates ``target [B, C, h]``
        - **output:** ``g [B, C, h]``

    Example:
        >>> agg = DeepInterestAggregatorHead(8)
        >>> e, x, mask, v = torch.randn(4, 8), torch.randn(4, 5, 8), torch.rand(4, 5) < 0.5, torch.randn(4, 3, 8)
        >>> agg(e, x, mask, v).shape
        torch.Size([4, 3, 8])
    """

    def __init__(self, channels: int, hidden: Sequence[int] = (80, 40), lambda_a: float = 0.5) -> None:
        super().__init__()
        hidden = tuple(int(w) for w in hidden)
        if channels < 1 or any(w < 1 for w in hidden):
            raise ValueError(f'DeepInterestAggregatorHead: channels and hidden widths must be positive, got '
                             f'{channels}, {hidden}')
        if not 0.0 <= lambda_a <= 1.0:
            raise ValueError(f'DeepInterestAggregatorHead: lambda_a must lie in [0, 1], got {lambda_a}')
        self.channels = channels
        self.hidden = hidden
        self.lambda_a = lambda_a
        layers: list[torch.nn.Module] = []
        width = 4 * channels
        for w in hidden:
            layers += [torch.nn.Linear(width, w), torch.nn.PReLU(w)]
            width = w
        layers.append(torch.nn.Linear(width, 1))
        self.att = torch.nn.Sequential(*layers)
        self.lin_agg = torch.nn.Linear(channels, channels, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for mod in self.att:
            if isinstance(mod, torch.nn.PReLU):
                torch.nn.init.constant_(mod.weight, 0.25)
            else:
                mod.reset_parameters()
        self.lin_agg.reset_parameters()

    def weights(self, x: Tensor, mask: Tensor, target: Tensor) -> Tensor:
        r"""Attention weights :math:`a` ``[B, C, M]`` (``0`` on masked slots)."""
        b, m, h = x.shape
        c = target.size(1)
        xx = x.unsqueeze(1).expand(b, c, m, h)
        vv = target.unsqueeze(2).expand(b, c, m, h)
        feats = torch.cat([xx, vv, xx - vv, xx * vv], dim=-1)
        a = self.att(feats.reshape(-1, 4 * h)).view(b, c, m)      # 2-D input: PReLU's channel axis is 1
        return a * mask.unsqueeze(1).to(a.dtype)

    def forward(self, e: Tensor, x: Tensor, mask: Tensor, target: Tensor) -> Tensor:
        h = self.channels
        if e.dim() != 2 or x.dim() != 3 or target.dim() != 3 or e.shape != (x.size(0), h) or \
                x.size(2) != h or mask.shape != x.shape[:2] or target.shape[0] != x.size(0) or target.size(2) != h:
            raise ValueError(f'DeepInterestAggregatorHead: expected e [B, {h}], x [B, M, {h}], mask [B, M], '
                             f'target [B, C, {h}]; got {tuple(e.shape)}, {tuple(x.shape)}, {tuple(mask.shape)}, '
                             f'{tuple(target.shape)}')
        if mask.dtype != torch.bool:
            raise ValueError(f'DeepInterestAggregatorHead: mask must be bool, got {mask.dtype}')
        a = self.weights(x, mask, target)
        p = torch.einsum('bcm,bmh->bch', a, x * mask.unsqueeze(-1).to(x.dtype))
        return self.lambda_a * e.unsqueeze(1) + (1.0 - self.lambda_a) * self.lin_agg(p)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.channels}, hidden={list(self.hidden)}, '
                f'lambda_a={self.lambda_a})')
