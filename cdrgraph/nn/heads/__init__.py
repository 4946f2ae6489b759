r"""Readout / decoder heads of cdrgraph."""
from cdrgraph.nn.heads.mapping_head import MappingHead
from cdrgraph.nn.heads.meta_bridge_head import MetaBridgeHead

__all__ = ['MappingHead', 'MetaBridgeHead']
