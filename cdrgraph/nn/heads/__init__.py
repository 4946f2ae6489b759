r"""Readout / decoder heads of cdrgraph."""
from cdrgraph.nn.heads.attention_transfer_head import AttentionTransferHead
from cdrgraph.nn.heads.behavior_tower_head import BehaviorTowerHead
from cdrgraph.nn.heads.cgc_layer import CGCLayer
from cdrgraph.nn.heads.combination_attention_head import CombinationAttentionHead
from cdrgraph.nn.heads.contrastive_autoencoder_head import ContrastiveAutoencoderHead
from cdrgraph.nn.heads.deep_interest_aggregator_head import DeepInterestAggregatorHead
from cdrgraph.nn.heads.domain_aware_attention_head import DomainAwareAttentionHead
from cdrgraph.nn.heads.domain_gate import DomainGate
from cdrgraph.nn.heads.domain_towers import DomainTowers
from cdrgraph.nn.heads.expert_bank import ExpertBank
from cdrgraph.nn.heads.mapping_head import MappingHead
from cdrgraph.nn.heads.meta_bridge_head import MetaBridgeHead
from cdrgraph.nn.heads.partitioned_norm import PartitionedNorm
from cdrgraph.nn.heads.sequential_aggregator_head import SequentialAggregatorHead
from cdrgraph.nn.heads.star_linear import StarLinear
from cdrgraph.nn.heads.transfer_matrix_head import TransferMatrixHead
from cdrgraph.nn.heads.user_aggregator_head import UniCDRAggregator

__all__ = ['MappingHead', 'MetaBridgeHead', 'UniCDRAggregator', 'ExpertBank', 'DomainGate', 'DomainTowers',
           'CGCLayer', 'StarLinear', 'PartitionedNorm', 'TransferMatrixHead', 'CombinationAttentionHead',
           'DomainAwareAttentionHead', 'ContrastiveAutoencoderHead', 'AttentionTransferHead',
           'SequentialAggregatorHead', 'DeepInterestAggregatorHead', 'BehaviorTowerHead']
