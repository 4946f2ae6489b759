r"""Readout / decoder heads of cdrgraph."""
from cdrgraph.nn.heads.cgc_layer import CGCLayer
from cdrgraph.nn.heads.domain_gate import DomainGate
from cdrgraph.nn.heads.domain_towers import DomainTowers
from cdrgraph.nn.heads.expert_bank import ExpertBank
from cdrgraph.nn.heads.mapping_head import MappingHead
from cdrgraph.nn.heads.meta_bridge_head import MetaBridgeHead
from cdrgraph.nn.heads.partitioned_norm import PartitionedNorm
from cdrgraph.nn.heads.star_linear import StarLinear
from cdrgraph.nn.heads.user_aggregator_head import UniCDRAggregator

__all__ = ['MappingHead', 'MetaBridgeHead', 'UniCDRAggregator', 'ExpertBank', 'DomainGate', 'DomainTowers',
           'CGCLayer', 'StarLinear', 'PartitionedNorm']
