# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Multi-target CDR and the negative-transfer table
#
# Every domain is a target: a cross-domain model must never do worse than the single-domain model on any
# domain (*negative transfer*). We train per-domain BPR-MF (**SMF**, one model per domain through
# `select_domains: per_domain`), **CMF** (one shared user table), **MPF** (shared + domain-specific user
# factors) and **CAT-ART** (SMF pre-training, a contrastive autoencoder over the users' per-domain vectors,
# attention-based transfer per target) on three domains with shared users, rank all items of each domain
# (training items excluded) and mark every cell below SMF with `↓`.
#
# The same experiment runs from the shell with a YAML file (see `benchmarks/configs/multi_target_ml100k.yaml`).
# Set `DATASET = 'movielens'` for the MovieLens-100K genre domains (needs `../shared/data`; a few minutes).

# %%
import os.path as osp
import tempfile

import torch
from IPython.display import Markdown, display

from cdrgraph.cli.experiment import run_experiment
from cdrgraph.metrics.report import summarize

torch.set_num_threads(2)

# %%
DATASET = 'fake'   # 'fake' (synthetic, default) or 'movielens' (ML-100K genres, real data)

# %%
out = tempfile.mkdtemp(prefix='cdrgraph-multi-target-')
if DATASET == 'fake':
    data = {'name': 'FakeCDRDataset', 'num_domains': 3, 'num_users': 150, 'num_items': 60, 'avg_degree': 12,
            'user_overlap': 1.0, 'seed': 0}
    EPOCHS, STAGE_EPOCHS = 6, {'pretrain': 6, 'cat': 3, 'art': 4}
else:
    data = {'name': 'MovieLensDomains', 'root': '~/.cache/cdrgraph/movielens-100k-5genres',
            'raw_dir': '../../shared/data/movielens-100k', 'variant': '100k', 'domain_by': 'genre',
            'domains': ['Action', 'Adventure', 'Comedy', 'Crime', 'Drama'], 'require_all_domains': True}
    EPOCHS, STAGE_EPOCHS = 100, {'pretrain': 100, 'cat': 20, 'art': 40}
cfg = {
    'name': f'multi_target_{DATASET}',
    'data': data,
    'split': [{'name': 'RatioSplit', 'train': 0.8, 'val': 0.1, 'test': 0.1, 'seed': 0}],
    'evaluation': {'protocol': 'full', 'ks': [10, 20],
                   'report': {'full': ['precision@10', 'recall@10', 'ndcg@10', 'ndcg@20']}},
    'train': {'epochs': EPOCHS, 'lr': 0.005, 'batch_size': 256, 'eval_every': 2, 'patience': 3},
    'models': {
        'SMF': {'class': 'BPRMF', 'model': {'embedding_dim': 32}, 'select_domains': 'per_domain'},
        'CMF': {'model': {'embedding_dim': 32, 'objective': 'bpr'}},
        'MPF': {'model': {'embedding_dim': 32}},
        'CATART': {'model': {'embedding_dim': 32}, 'train': {'stage_epochs': STAGE_EPOCHS}},
    },
    'baseline': {'CMF': 'SMF', 'MPF': 'SMF', 'CATART': 'SMF'},
    'seeds': [0],
    'cache_dir': osp.join(out, 'cache'),
}

# %%
results = run_experiment(cfg, out)
display(Markdown(open(osp.join(out, 'results.md')).read()))

# %% [markdown]
# The long table holds every metric of every domain and seed; `summarize` turns it into mean ± std cells and
# marks negative transfer. Here we count, per model, the domain × metric cells below SMF.

# %%
runs = {}
for (model, seed), g in results.query("protocol == 'full'").groupby(['model', 'seed']):
    runs.setdefault(model, []).append({f'{m}/{d}': v for m, d, v in zip(g['metric'], g['domain'], g['value'])})
table = summarize(runs, baseline=cfg['baseline'], metrics=['precision@10', 'recall@10', 'ndcg@10', 'ndcg@20'])
cells = table.loc[:, table.columns.get_level_values('domain') != 'mean']   # domain x metric cells
below = cells.apply(lambda col: col.str.contains('↓')).sum(axis=1)
display(below.to_frame('cells below SMF').assign(cells=cells.shape[1]))
