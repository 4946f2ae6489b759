r"""PyG-style datasets of cdrgraph: each holds one cdrgraph :class:`~torch_geometric.data.HeteroData`."""
from cdrgraph.datasets.amazon_cdr import AmazonCDR
from cdrgraph.datasets.amazon_cdrib import AmazonCDRIB
from cdrgraph.datasets.douban_cdr import DoubanCDR
from cdrgraph.datasets.fake_cdr_dataset import FakeCDRDataset
from cdrgraph.datasets.movie_lens_cdr import MovieLensCDR
from cdrgraph.datasets.movie_lens_domains import MovieLensDomains
from cdrgraph.datasets.xmrec import XMRec

__all__ = ['AmazonCDR', 'AmazonCDRIB', 'DoubanCDR', 'FakeCDRDataset', 'MovieLensCDR', 'MovieLensDomains', 'XMRec']
