r"""cdrgraph models (each a :class:`CDRModel`)."""
from cdrgraph.models._ctr_fields import DomainFields
from cdrgraph.models.base import CDRModel
from cdrgraph.models.bi_tgcf import BiTGCF
from cdrgraph.models.bpr_mf import BPRMF
from cdrgraph.models.cat_art import CATART, CATARTCompat, CATARTVariant
from cdrgraph.models.cdtm import CDTM, CDTMOptions
from cdrgraph.models.cmf import CMF
from cdrgraph.models.dacdr import DACDR, DACDROptions
from cdrgraph.models.dnn import DNN
from cdrgraph.models.emcdr import EMCDR
from cdrgraph.models.hero_graph import HeroGRAPH
from cdrgraph.models.light_gcn import LightGCN
from cdrgraph.models.mmoe import MMoE
from cdrgraph.models.mpf import MPF
from cdrgraph.models.ple import PLE
from cdrgraph.models.popularity import Popularity
from cdrgraph.models.ptupcdr import PTUPCDR, PTUPCDRCompat
from cdrgraph.models.shared_bottom import SharedBottom
from cdrgraph.models.star import STAR
from cdrgraph.models.tgt_only import TgtOnly
from cdrgraph.models.uni_cdr import UniCDR, UniCDRCompat, UniCDRConfig
from cdrgraph.models.uni_cdr_plus import UniCDRPlus, UniCDRPlusConfig

__all__ = ['CDRModel', 'Popularity', 'BPRMF', 'LightGCN', 'CMF', 'TgtOnly', 'EMCDR', 'PTUPCDR',
           'PTUPCDRCompat', 'BiTGCF', 'HeroGRAPH', 'UniCDR', 'UniCDRCompat',
           'SharedBottom', 'MMoE', 'PLE', 'STAR', 'DNN', 'CDTM', 'CDTMOptions', 'DomainFields', 'DACDR',
           'DACDROptions', 'CATART', 'CATARTVariant', 'CATARTCompat', 'MPF', 'UniCDRConfig', 'UniCDRPlus',
           'UniCDRPlusConfig']
