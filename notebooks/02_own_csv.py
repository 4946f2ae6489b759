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
# # Your own interactions: CSV → cross-domain graph → validation → statistics
#
# A CDR dataset is one table of `(user, item, domain[, rating, time])` rows. By default this notebook writes
# a small toy CSV into a temporary folder; set `CSV_PATH` to your own file (and the column names below) to
# build the graph of your data instead.

# %%
import os.path as osp
import tempfile

import pandas as pd
from IPython.display import Image, display

from cdrgraph.data import from_interactions, validate
from cdrgraph.data.analytics import degree_distribution, draw_user_subgraph, plot_degree_distribution
from cdrgraph.data.stats import dataset_stats, format_stats
from cdrgraph.datasets import FakeCDRDataset

# %%
CSV_PATH = None   # None: a toy CSV written to a temp folder; or the path of your own interactions CSV

# %%
workdir = tempfile.mkdtemp(prefix='cdrgraph-own-csv-')
if CSV_PATH is None:
    # toy rows: users shared by name across a 'books' and a 'movies' domain, integer timestamps
    toy = FakeCDRDataset(num_domains=2, num_users=60, num_items=30, avg_degree=6, seed=1)[0]
    ei = toy['user', 'interacts', 'item'].edge_index
    pd.DataFrame({
        'user_id': [f'u{u}' for u in ei[0].tolist()],
        'item_id': [f'i{i}' for i in ei[1].tolist()],
        'category': [['books', 'movies'][d] for d in toy['item'].domain[ei[1]].tolist()],
        'timestamp': toy['user', 'interacts', 'item'].time.tolist(),
    }).to_csv(osp.join(workdir, 'interactions.csv'), index=False)
    CSV_PATH = osp.join(workdir, 'interactions.csv')
df = pd.read_csv(CSV_PATH)
display(df.head())

# %% [markdown]
# `from_interactions` maps raw ids to contiguous node ids (users shared across domains by raw id, one item node
# per (domain, item)), adds the reverse and derived edges, and returns the raw-id maps.

# %%
data, id_maps = from_interactions(df, user='user_id', item='item_id', domain='category', time='timestamp',
                                  duplicates='drop', source=CSV_PATH, return_id_maps=True)
validate(data)
print(data)

# %%
print('first users:', list(id_maps['user'][:5]), '| first items:', list(id_maps['item'][:3]))
stats = dataset_stats(data)
print(format_stats(stats))

# %% [markdown]
# Degree distributions per domain (log-log) and the sampled two-hop neighbourhood of one user, which reaches
# the other domain through shared users.

# %%
degrees = degree_distribution(data)
display(degrees['user'].head(10))
display(Image(plot_degree_distribution(degrees, osp.join(workdir, 'degrees.png'), title='toy interactions')))
draw_user_subgraph(data, user=0, hops=2, path=osp.join(workdir, 'user0.png'), max_neighbors=6)
display(Image(osp.join(workdir, 'user0.png')))
