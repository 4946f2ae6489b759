r"""cdrgraph models (each a :class:`CDRModel`)."""
from cdrgraph.models.base import CDRModel
from cdrgraph.models.bpr_mf import BPRMF
from cdrgraph.models.light_gcn import LightGCN
from cdrgraph.models.popularity import Popularity

__all__ = ['CDRModel', 'Popularity', 'BPRMF', 'LightGCN']
