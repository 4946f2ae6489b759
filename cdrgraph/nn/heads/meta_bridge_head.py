r"""PTUPCDR's personalised bridge: a characteristic encoder (attention over the
source history) and a meta network that outputs a per-user mapping matrix."""
from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.nn import MLP

__all__ = ['MetaBridgeHead']


class MetaBridgeHead(torch.nn.Module):
    r"""Personalised bridge of `"Personalized Transfer of User Preferences for
    Cross-domain Recommendation" <https://arxiv.org/abs/2110.11154>`_ (Zhu et
    al., WSDM 2022) (MODELS.md §9.5). For a user with source history
    :math:`\mathbf{x}_1, \dots, \mathbf{x}_M` (item vectors, some slots padded)
    and source factor :math:`\mathbf{u}`:

    .. math::
        a_j &= \operatorname{softmax}_{j \in \text{valid}}
              \big(\mathbf{w}_2^\top \mathrm{ReLU}(\mathbf{W}_1 \mathbf{x}_j + \mathbf{b}_1)\big)

        \mathbf{p} &= \textstyle\sum_j a_j \mathbf{x}_j

        \mathbf{W}_u &= \operatorname{reshape}_{h \times h'}\big(
              \mathbf{W}_4 \mathrm{ReLU}(\mathbf{W}_3 \mathbf{p} + \mathbf{b}_3) + \mathbf{b}_4\big)

        \hat{\mathbf{u}} &= \mathbf{u}\, \mathbf{W}_u \quad \text{(row vector times matrix)}

    Padded slots are given by the boolean ``mask`` (never detected by value):
    they get weight exactly ``0`` and their content does not matter. A user
    whose history is empty (no valid slot) gets the learnable "no history"
    characteristic :attr:`no_history` (initialised to zero) instead of
    :math:`\mathbf{p}`.

    Args:
        in_channels (int): size ``h`` of item and user factors.
        meta_dim (int, optional): hidden width of the meta network.
            (default: :obj:`50`)
        out_channels (int, optional): size ``h'`` of the mapped user vector;
            :obj:`None` means ``in_channels``. (default: :obj:`None`)

    Shapes:
        - **input:** history ``[B, M, h]``, mask ``bool[B, M]``, user ``[B, h]``
        - **output:** ``[B, h']`` (and attention ``[B, M]`` with
          ``return_attention=True``)

    Example:
        >>> head = MetaBridgeHead(10, meta_dim=50)
        >>> hist, mask = torch.randn(4, 20, 10), torch.rand(4, 20) < 0.5
        >>> head(hist, mask, torch.randn(4, 10)).shape
        torch.Size([4, 10])
        >>> head.bridge(head.characteristic(hist, mask)).shape   # per-user W_u
        torch.Size([4, 10, 10])
    """

    def __init__(self, in_channels: int, meta_dim: int = 50, out_channels: int | None = None) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        if in_channels < 1 or meta_dim < 1 or out_channels < 1:
            raise ValueError(f'MetaBridgeHead: sizes must be positive, got in_channels={in_channels}, '
                             f'meta_dim={meta_dim}, out_channels={out_channels}')
        self.in_channels = in_channels
        self.meta_dim = meta_dim
        self.out_channels = out_channels
        # characteristic encoder: w2^T ReLU(W1 x + b1)
        self.attention_mlp = MLP([in_channels, in_channels, 1], act='relu', norm=None, bias=[True, False],
                                 plain_last=True)
        # meta network (bridge decoder): W4 ReLU(W3 p + b3) + b4
        self.decoder = MLP([in_channels, meta_dim, in_channels * out_channels], act='relu', norm=None,
                           plain_last=True)
        self.no_history = torch.nn.Parameter(torch.zeros(in_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.attention_mlp.reset_parameters()
        self.decoder.reset_parameters()
        torch.nn.init.zeros_(self.no_history)

    def _check(self, history: Tensor, mask: Tensor) -> None:
        if history.dim() != 3 or history.size(-1) != self.in_channels:
            raise ValueError(f'MetaBridgeHead: history must be [B, M, {self.in_channels}], got '
                             f'{tuple(history.shape)}')
        if mask.dtype != torch.bool or mask.shape != history.shape[:2]:
            raise ValueError(f'MetaBridgeHead: mask must be bool{list(history.shape[:2])} (True = real '
                             f'item), got {mask.dtype}{list(mask.shape)}')

    def attention(self, history: Tensor, mask: Tensor) -> Tensor:
        r"""Attention weights ``[B, M]``: a softmax over the valid slots of
        each row, exactly ``0`` on padded slots (all ``0`` for an empty row)."""
        self._check(history, mask)
        logits = self.attention_mlp(history.reshape(-1, self.in_channels)).view(mask.shape)
        logits = logits.masked_fill(~mask, float('-inf'))
        has = mask.any(-1, keepdim=True)
        logits = torch.where(has, logits, torch.zeros_like(logits))  # empty rows: no NaN
        return torch.softmax(logits, dim=-1).masked_fill(~mask, 0.0)

    def characteristic(self, history: Tensor, mask: Tensor) -> Tensor:
        r"""User characteristic ``p = Σ_j a_j x_j`` ``[B, h]``
        (:attr:`no_history` for empty rows)."""
        return self._pool(history, mask, self.attention(history, mask))

    def _pool(self, history: Tensor, mask: Tensor, att: Tensor) -> Tensor:
        # padded slots get weight 0; zero their content too so non-finite padding cannot leak
        x = history.masked_fill(~mask.unsqueeze(-1), 0.0)
        p = (att.unsqueeze(-1) * x).sum(1)
        return torch.where(mask.any(-1, keepdim=True), p, self.no_history.expand_as(p))

    def bridge(self, characteristic: Tensor) -> Tensor:
        r"""Per-user mapping matrices ``W_u`` ``[B, h, h']`` from the
        characteristic ``[B, h]`` (row-major reshape of the decoder output)."""
        out = self.decoder(characteristic)
        return out.view(-1, self.in_channels, self.out_channels)

    def forward(self, history: Tensor, mask: Tensor, user: Tensor,
                return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        if user.dim() != 2 or user.size(0) != history.size(0) or user.size(1) != self.in_channels:
            raise ValueError(f'MetaBridgeHead: user must be [{history.size(0)}, {self.in_channels}], got '
                             f'{tuple(user.shape)}')
        att = self.attention(history, mask)
        p = self._pool(history, mask, att)
        out = torch.bmm(user.unsqueeze(1), self.bridge(p)).squeeze(1)
        return (out, att) if return_attention else out

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, {self.out_channels}, '
                f'meta_dim={self.meta_dim})')
