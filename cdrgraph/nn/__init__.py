r"""Layers, heads, embeddings and losses of cdrgraph."""
from cdrgraph.nn.conv.bipartite_lg_conv import BipartiteLGConv
from cdrgraph.nn.embedding import DomainEmbedding
from cdrgraph.nn.feature_embedding import FeatureEmbedding
from cdrgraph.nn.field_spec import FieldSpec
from cdrgraph.nn.loss import BPRLoss, InfoNCELoss, PointwiseBCELoss, RatingMSELoss, SampledBCELoss

__all__ = ['BipartiteLGConv', 'DomainEmbedding', 'FeatureEmbedding', 'FieldSpec', 'BPRLoss', 'SampledBCELoss',
           'PointwiseBCELoss', 'RatingMSELoss', 'InfoNCELoss']
