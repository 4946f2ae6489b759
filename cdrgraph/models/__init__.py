r"""cdrgraph models (each a :class:`CDRModel`)."""
from cdrgraph.models.base import CDRModel

__all__ = ['CDRModel']
