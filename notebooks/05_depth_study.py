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
# # Over-smoothing depth study
#
# LightGCN trained at several depths `L`, with the layer **mean** (LightGCN's readout) and the **last** layer
# only, on synthetic two-domain data by default. For every trained model we record the per-domain test
# metrics and, for every layer `l = 0 … L`, the Dirichlet energy and MAD of the layer's output (within each
# domain and across domains). The same study runs from the shell:
# `cdrgraph depth configs/depth_fake.yaml --layers 0,1,2,4 --seeds 0,1`.
#
# Set `DATASET = 'amazon'` for Amazon Sport–Cloth (needs the raw files; much slower).

# %%
import os.path as osp
import tempfile

import torch
from IPython.display import Image, display

from cdrgraph.cli.depth import depth_study

torch.set_num_threads(2)

# %%
DATASET = 'fake'   # 'fake' (synthetic, default) or 'amazon' (Amazon Sport–Cloth, real data)

# %%
out = tempfile.mkdtemp(prefix='cdrgraph-depth-')
if DATASET == 'fake':
    data = {'name': 'FakeCDRDataset', 'num_domains': 2, 'num_users': 200, 'num_items': 100, 'avg_degree': 10,
            'seed': 0}
    split = [{'name': 'LeaveOneOut', 'order': 'time', 'seed': 0}]
    LAYERS, EPOCHS, NUM_NEGATIVES = [0, 1, 2, 3], 5, 99
else:
    data = {'name': 'AmazonCDR', 'root': '~/.cache/cdrgraph/amazon-disencdr',
            'raw_dir': '../../shared/data/amazon-disencdr', 'pair': 'sport_cloth'}
    split = [{'name': 'GivenSplit'}, {'name': 'ValidFromTrain', 'seed': 0}]
    LAYERS, EPOCHS, NUM_NEGATIVES = [0, 1, 2, 3, 4, 6], 50, 999
cfg = {
    'name': f'depth_{DATASET}',
    'data': data,
    'split': split,
    'candidates': {'num_negatives': NUM_NEGATIVES, 'seed': 0, 'dataset_id': f'depth_{DATASET}'},
    'evaluation': {'protocol': 'sampled', 'ks': [5, 10]},
    'train': {'epochs': EPOCHS, 'lr': 0.01, 'batch_size': 256, 'patience': 3},
    'models': {'LightGCN': {'model': {'embedding_dim': 32}}},
    'seeds': [0],
    'cache_dir': osp.join(out, 'cache'),
}

# %%
study = depth_study(cfg, layers=LAYERS, out=out, combine_modes=('mean', 'last'))
print(study)

# %% [markdown]
# Test NDCG@10 per domain against the depth, for both readouts.

# %%
ndcg = study.metrics.query("metric == 'ndcg@10'")
display(ndcg.pivot_table(index='num_layers', columns=['combine', 'domain'], values='value').round(4))
display(Image(study.figures[0]))

# %% [markdown]
# Smoothness of every layer of the deepest model: the Dirichlet energy relative to `‖X‖²` and the MAD fall as
# messages are passed — representations of a domain's items, and of the two domains, move together.

# %%
deep = study.smoothness.query(f'num_layers == {max(LAYERS)}')
display(deep.pivot_table(index=['combine', 'metric', 'domain'], columns='layer', values='value').round(4))
display(Image(study.figures[1]))
