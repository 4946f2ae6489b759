r"""Explicit registries of the names a config file may use (never arbitrary imports)."""
from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

__all__ = ['Registry', 'MODELS', 'DATASETS', 'SPLITS']


class Registry:
    r"""A fixed table ``name -> 'module.path:ClassName'`` whose classes are
    imported lazily on first use, so a module that is missing (or fails to
    import) only matters when its name is used, and then gives a clear error.
    Config files can only name entries of the table: nothing else is ever
    imported. :meth:`register` adds a class object explicitly (plugins, tests).

    Args:
        kind (str): what the registry holds, used in messages (e.g. ``'model'``).
        entries (dict[str, str], optional): ``name -> 'module:Class'`` paths
            inside the ``cdrgraph`` package. (default: :obj:`None`)

    Example:
        >>> from cdrgraph.cli.registry import MODELS
        >>> MODELS.get('BPRMF')
        <class 'cdrgraph.models.bpr_mf.BPRMF'>
        >>> 'LightGCN' in MODELS
        True
    """

    def __init__(self, kind: str, entries: Mapping[str, str] | None = None) -> None:
        self.kind = kind
        self._paths: dict[str, str] = {}
        self._classes: dict[str, type] = {}
        for name, path in (entries or {}).items():
            module, sep, attr = path.partition(':')
            if not sep or not module.startswith('cdrgraph.') or not attr:
                raise ValueError(f"Registry({kind!r}): entry {name!r} -> {path!r} must be "
                                 "'cdrgraph.<module>:<Class>'")
            self._paths[name] = path

    def register(self, name: str, cls: type, overwrite: bool = False) -> type:
        r"""Register the class object ``cls`` under ``name``; returns ``cls``."""
        if not isinstance(cls, type):
            raise TypeError(f'{self.kind} registry: {name!r} must be registered with a class, got {cls!r}')
        if name in self and not overwrite:
            raise KeyError(f'{self.kind} registry: {name!r} is already registered; '
                           'pass overwrite=True to replace it')
        self._classes[name] = cls
        return cls

    def unregister(self, name: str) -> None:
        self._classes.pop(name, None)
        self._paths.pop(name, None)

    def names(self) -> list[str]:
        return sorted(set(self._paths) | set(self._classes))

    def __contains__(self, name: object) -> bool:
        return name in self._paths or name in self._classes

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def get(self, name: str) -> type:
        r"""The class registered as ``name``.

        Raises:
            KeyError: ``name`` is unknown; the message lists the known names.
            ImportError: the module of ``name`` cannot be imported.
        """
        if name in self._classes:
            return self._classes[name]
        if name not in self._paths:
            import difflib
            close = difflib.get_close_matches(str(name), self.names(), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ''
            known = ', '.join(self.names())
            raise KeyError(f'unknown {self.kind} {name!r}{hint}; known {self.kind}s: {known}')
        module, _, attr = self._paths[name].partition(':')
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ImportError(f'{self.kind} {name!r} is registered as {self._paths[name]}, which cannot be '
                              f'imported: {e}') from e
        self._classes[name] = cls
        return cls

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(kind={self.kind!r}, names={self.names()})'


#: model name -> model class (a subclass of :class:`~cdrgraph.models.CDRModel`)
MODELS = Registry('model', {
    'Popularity': 'cdrgraph.models.popularity:Popularity',
    'BPRMF': 'cdrgraph.models.bpr_mf:BPRMF',
    'LightGCN': 'cdrgraph.models.light_gcn:LightGCN',
    'CMF': 'cdrgraph.models.cmf:CMF',
    'TgtOnly': 'cdrgraph.models.tgt_only:TgtOnly',
    'EMCDR': 'cdrgraph.models.emcdr:EMCDR',
    'PTUPCDR': 'cdrgraph.models.ptupcdr:PTUPCDR',
    'BiTGCF': 'cdrgraph.models.bi_tgcf:BiTGCF',
    'HeroGRAPH': 'cdrgraph.models.hero_graph:HeroGRAPH',
    'UniCDR': 'cdrgraph.models.uni_cdr:UniCDR',
    'UniCDRPlus': 'cdrgraph.models.uni_cdr_plus:UniCDRPlus',
    'DACDR': 'cdrgraph.models.dacdr:DACDR',
    'SharedBottom': 'cdrgraph.models.shared_bottom:SharedBottom',
    'MMoE': 'cdrgraph.models.mmoe:MMoE',
    'PLE': 'cdrgraph.models.ple:PLE',
    'STAR': 'cdrgraph.models.star:STAR',
    'DNN': 'cdrgraph.models.dnn:DNN',
    'CATART': 'cdrgraph.models.cat_art:CATART',
    'MPF': 'cdrgraph.models.mpf:MPF',
    'CDTM': 'cdrgraph.models.cdtm:CDTM',
})

#: dataset name -> dataset class
DATASETS = Registry('dataset', {
    'AmazonCDR': 'cdrgraph.datasets.amazon_cdr:AmazonCDR',
    'AmazonCDRIB': 'cdrgraph.datasets.amazon_cdrib:AmazonCDRIB',
    'DoubanCDR': 'cdrgraph.datasets.douban_cdr:DoubanCDR',
    'XMRec': 'cdrgraph.datasets.xmrec:XMRec',
    'MovieLensDomains': 'cdrgraph.datasets.movie_lens_domains:MovieLensDomains',
    'MovieLensCDR': 'cdrgraph.datasets.movie_lens_cdr:MovieLensCDR',
    'FakeCDRDataset': 'cdrgraph.datasets.fake_cdr_dataset:FakeCDRDataset',
})

#: split / split-tuple transform name -> transform class
SPLITS = Registry('split', {
    'GivenSplit': 'cdrgraph.transforms.given_split:GivenSplit',
    'LeaveOneOut': 'cdrgraph.transforms.leave_one_out:LeaveOneOut',
    'RatioSplit': 'cdrgraph.transforms.ratio_split:RatioSplit',
    'ValidFromTrain': 'cdrgraph.transforms.valid_from_train:ValidFromTrain',
    'ColdStartSplit': 'cdrgraph.transforms.cold_start_split:ColdStartSplit',
    'SelectDomains': 'cdrgraph.transforms.select_domains:SelectDomains',
    'CTRLabels': 'cdrgraph.transforms.ctr_labels:CTRLabels',
    'CTRNegatives': 'cdrgraph.transforms.ctr_negatives:CTRNegatives',
})
