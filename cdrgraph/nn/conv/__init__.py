r"""Message-passing layers of cdrgraph."""
from cdrgraph.nn.conv.bi_tgcf_conv import BiTGCFConv
from cdrgraph.nn.conv.bipartite_lg_conv import BipartiteLGConv
from cdrgraph.nn.conv.item_graph_conv import ItemGraphConv
from cdrgraph.nn.conv.recurrent_attention_conv import RecurrentAttentionConv
from cdrgraph.nn.conv.transfer_conv import TransferConv

__all__ = ['BipartiteLGConv', 'BiTGCFConv', 'TransferConv', 'RecurrentAttentionConv', 'ItemGraphConv']
