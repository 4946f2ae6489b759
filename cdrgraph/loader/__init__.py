r"""Training batches (one schema for full-graph and sampled modes), negatives, derived views and samplers."""
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.loader.csr_sampler import CSRNeighborSampler
from cdrgraph.loader.link_loader import CDRLinkLoader
from cdrgraph.loader.negative_sampler import NegativeSampler
from cdrgraph.loader.views import contexts, is_cold, overlap_users, train_csr, user_items

__all__ = ['CDRBatch', 'CDRLinkLoader', 'NegativeSampler', 'CSRNeighborSampler',
           'train_csr', 'user_items', 'contexts', 'overlap_users', 'is_cold']
