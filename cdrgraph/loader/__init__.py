r"""Training and evaluation batches (one schema for full-graph and sampled modes)."""
from cdrgraph.loader.cdr_batch import CDRBatch

__all__ = ['CDRBatch']
