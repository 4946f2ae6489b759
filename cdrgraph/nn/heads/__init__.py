r"""Readout / decoder heads of cdrgraph."""
from cdrgraph.nn.heads.mapping_head import MappingHead
from cdrgraph.nn.heads.meta_bridge_head import MetaBridgeHead
from cdrgraph.nn.heads.user_aggregator_head import UniCDRAggregator

__all__ = ['MappingHead', 'MetaBridgeHead', 'UniCDRAggregator']
