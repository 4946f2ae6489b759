r"""Splits and graph transforms (PyG :class:`BaseTransform` subclasses)."""
from cdrgraph.transforms.cold_start_split import ColdStartSplit
from cdrgraph.transforms.ctr_labels import CTRLabels
from cdrgraph.transforms.ctr_negatives import CTRNegatives
from cdrgraph.transforms.eval_candidates import EvalCandidates
from cdrgraph.transforms.given_split import GivenSplit
from cdrgraph.transforms.leave_one_out import LeaveOneOut
from cdrgraph.transforms.ratio_split import RatioSplit
from cdrgraph.transforms.select_domains import SelectDomains
from cdrgraph.transforms.split_io import SplitChecksumError, load_split, save_split
from cdrgraph.transforms.valid_from_train import ValidFromTrain

__all__ = [
    'GivenSplit', 'LeaveOneOut', 'RatioSplit', 'ValidFromTrain', 'ColdStartSplit', 'SelectDomains',
    'EvalCandidates', 'save_split', 'load_split', 'SplitChecksumError', 'CTRLabels', 'CTRNegatives',
]
