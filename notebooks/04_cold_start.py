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
# # Cold-start bridges
#
# Users who are new to a *target* domain but active in a *source* domain. `ColdStartSplit` makes a fraction
# β of the overlapping users cold: all their target interactions are held out (a tenth of them validate, the
# rest test), their source history stays. We compare
#
# * **TgtOnly** — matrix factorisation on the target domain only (cold users have untrained rows);
# * **CMF** — one user table over both domains;
# * **EMCDR** — pre-trained source/target factors and a mapping learnt on the overlapping warm users;
# * **PTUPCDR** — a meta network that turns the user's source history into a personalised bridge;
# * **DACDR** — domain-aware cross-attention over the source history, trained end to end;
#
# on the rating protocol (MSE training, MAE/RMSE over the cold test users' target ratings) for several β,
# with one `run_sweep` call. Set `DATASET = 'douban'` for Douban Book → Music (needs `../shared/data`).

# %%
import os.path as osp
import tempfile

import torch
from IPython.display import display

from cdrgraph.cli.experiment import run_sweep

torch.set_num_threads(2)

# %%
DATASET = 'fake'   # 'fake' (synthetic, default) or 'douban' (Douban Book -> Music, real data)

# %%
out = tempfile.mkdtemp(prefix='cdrgraph-cold-start-')
if DATASET == 'fake':
    data = {'name': 'FakeCDRDataset', 'num_domains': 2, 'num_users': 200, 'num_items': 80, 'avg_degree': 10,
            'user_overlap': 0.8, 'ratings': True, 'seed': 0}
    source, target, FRACTIONS, EPOCHS = 'd0', 'd1', [0.2, 0.5], 8
else:
    data = {'name': 'DoubanCDR', 'root': '~/.cache/cdrgraph/douban-gadtcdr',
            'raw_dir': '../../shared/data/douban-gadtcdr', 'domains': ['book', 'music']}
    source, target, FRACTIONS, EPOCHS = 'book', 'music', [0.2, 0.5, 0.8], 30
cfg = {
    'name': f'cold_start_{DATASET}',
    'data': data,
    'split': [{'name': 'ColdStartSplit', 'source': source, 'target': target, 'fraction': 0.2, 'seed': 0}],
    'evaluation': {'protocol': 'rating'},
    'train': {'epochs': EPOCHS, 'lr': 0.01, 'batch_size': 256, 'patience': 3},
    'models': {
        'TgtOnly': {'model': {'embedding_dim': 10}},
        'CMF': {'model': {'embedding_dim': 10}},
        'EMCDR': {'model': {'embedding_dim': 10}},
        'PTUPCDR': {'model': {'embedding_dim': 10}},
        'DACDR': {'model': {'embedding_dim': 16}, 'train': {'lr': 0.005}},
    },
    'seeds': [0],
    'cache_dir': osp.join(out, 'cache'),
}

# %%
results = run_sweep(cfg, {'split.0.fraction': FRACTIONS}, out)

# %% [markdown]
# MAE and RMSE of the cold test users, per β (rows) and method (columns); lower is better. TgtOnly has
# nothing to go on for a cold user, every bridge uses the source history.

# %%
table = results.query("metric in ['mae', 'rmse'] and domain == 'mean'").pivot_table(
    index=['split.0.fraction', 'metric'], columns='model', values='value')
display(table[list(cfg['models'])].round(4))

# %% [markdown]
# How much of TgtOnly's error each bridge removes on the cold users (MAE, share of TgtOnly's):

# %%
mae = table.xs('mae', level='metric')
display((1 - mae.div(mae['TgtOnly'], axis=0)).drop(columns='TgtOnly').round(3))
