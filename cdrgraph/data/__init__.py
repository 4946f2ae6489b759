r"""The cdrgraph data contract: schema names, the graph builder and :func:`validate`."""
from cdrgraph.data.build import IdMaps, add_derived_edges, domain_item_ranges, from_interactions
from cdrgraph.data.schema import (
    ACTIVE_IN,
    BELONGS_TO,
    DOMAIN,
    INTERACTS,
    ITEM,
    PAD,
    REV_INTERACTS,
    TEST,
    TRAIN,
    USER,
    VAL,
    domain_names,
    num_domains,
    validate,
)
from cdrgraph.data.stats import dataset_stats, format_stats

__all__ = [
    'USER', 'ITEM', 'DOMAIN', 'INTERACTS', 'REV_INTERACTS', 'BELONGS_TO', 'ACTIVE_IN',
    'TRAIN', 'VAL', 'TEST', 'PAD',
    'from_interactions', 'add_derived_edges', 'domain_item_ranges', 'validate', 'domain_names', 'num_domains',
    'IdMaps', 'dataset_stats', 'format_stats',
]
