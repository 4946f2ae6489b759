r"""Message-passing layers of cdrgraph."""
from cdrgraph.nn.conv.bipartite_lg_conv import BipartiteLGConv

__all__ = ['BipartiteLGConv']
