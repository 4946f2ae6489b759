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
# # Quickstart: data → split → candidates → three models → one table
#
# Synthetic two-domain data by default (no files needed, well under a minute on a laptop CPU). Set
# `DATASET = 'amazon'` to run the same cells on Amazon Sport–Cloth (DisenCDR/UniCDR protocol; needs the raw
# files in `RAW_DIR`, see `datasets/`), with more epochs.

# %%
import os.path as osp

import torch
from IPython.display import display

from cdrgraph.data import INTERACTS
from cdrgraph.data.stats import dataset_stats
from cdrgraph.datasets import AmazonCDR, FakeCDRDataset
from cdrgraph.metrics import Evaluator, summarize
from cdrgraph.models import BPRMF, LightGCN, Popularity
from cdrgraph.train import evaluate, fit, seed_everything
from cdrgraph.transforms import EvalCandidates, GivenSplit, LeaveOneOut, ValidFromTrain

torch.set_num_threads(2)

# %%
DATASET = 'fake'   # 'fake' (synthetic, default) or 'amazon' (Amazon Sport–Cloth, real data)

# %%
if DATASET == 'fake':
    data = FakeCDRDataset(num_domains=2, num_users=300, num_items=150, avg_degree=10, seed=0)[0]
    splits = LeaveOneOut(order='time', seed=0)(data)
    EPOCHS, NUM_NEGATIVES = 8, 99
else:
    RAW_DIR = '../../shared/data/amazon-disencdr'
    data = AmazonCDR(root=osp.expanduser('~/.cache/cdrgraph/amazon-disencdr'), raw_dir=RAW_DIR,
                     pair='sport_cloth')[0]
    splits = ValidFromTrain(seed=0)(GivenSplit()(data))
    EPOCHS, NUM_NEGATIVES = 50, 999
display(dataset_stats(data, components=False)['domains'])

# %% [markdown]
# Every model is scored on the same persisted candidates: 1 held-out positive + `NUM_NEGATIVES` sampled
# negatives per test user and domain.

# %%
train, val, test = EvalCandidates(num_negatives=NUM_NEGATIVES, seed=0, dataset_id=DATASET)(splits)
evaluator = Evaluator('sampled', ks=(1, 5, 10))
print(train)

# %%
results = {}
for name, build in {
    'Popularity': lambda: Popularity.from_data(train),
    'BPRMF': lambda: BPRMF.from_data(train, embedding_dim=32),
    'LightGCN': lambda: LightGCN.from_data(train, embedding_dim=32, num_layers=2),
}.items():
    seed_everything(0)
    model = build()
    fit(model, train, val, evaluator=evaluator, epochs=EPOCHS, lr=0.01, batch_size=256, patience=3,
        progress=False)
    results[name] = [evaluate(model, train, test, evaluator,
                              exclude=val[INTERACTS].edge_label_index)]
    print(name, {k: round(v, 4) for k, v in results[name][0].items() if k.startswith('ndcg@10')})

# %% [markdown]
# Mean ± std over seeds (one seed here) per metric and domain; `↓` marks a model below its baseline.

# %%
display(summarize(results, metrics=['hr@10', 'ndcg@10', 'mrr'], baseline={'LightGCN': 'BPRMF'}))
