r"""The one plain training loop of cdrgraph: stages, early stopping, checkpoints, seeding."""
from cdrgraph.train.checkpoint import load_checkpoint, save_checkpoint
from cdrgraph.train.early_stopping import EarlyStopping
from cdrgraph.train.evaluate import evaluate
from cdrgraph.train.fit import FitResult, fit
from cdrgraph.train.seed import seed_everything

__all__ = ['fit', 'FitResult', 'evaluate', 'EarlyStopping', 'save_checkpoint', 'load_checkpoint',
           'seed_everything']
