r"""The benchmark suite in one command: machine references + every speed benchmark -> suite.json / suite.md.

Runs, in this order and in one go,

1. ``bench_machine.py``  — dense sgemm GFLOP/s and memory-copy GB/s (the references);
2. ``bench_lgconv.py``   — one propagation layer, forward and forward+backward, ours vs PyG's ``LGConv``;
3. ``bench_full_ranking.py`` — full-ranking evaluation (10k users × 50k items, training items masked, top-20);
4. ``bench_sampling.py`` — loader throughput (full graph and sampled subgraphs);
5. ``bench_training.py`` — BPR-MF (dense / sparse gradients) and LightGCN-3 (ours / PyG) samples/s, negative
   sampling, peak memory, epoch time and peak memory of every registered model on Sport–Cloth;
6. ``bench_profile.py``  — cProfile of one BPR-MF step, one LightGCN step and one full-ranking evaluation
   (no per-sample Python loop in a hot path),

each as a subprocess writing its JSON into ``<out-dir>/suite_parts/``, then
writes ``<out-dir>/suite.json`` (every figure with its target, whether it
meets it, its ratio to the target and to the machine references, plus the
raw results) and ``<out-dir>/suite.md`` (the same as tables). The load
average is printed (and stored) at the start and at the end: the project
machine is shared, and figures measured under load are not meaningful.

Launcher settings, passed to every benchmark process:

* ``THP_MEM_ALLOC_ENABLE=1`` (``--no-thp`` to leave it unset): torch's CPU
  allocator backs large tensors with transparent huge pages, which removes
  most page-fault time of fresh layer outputs (about 20 % of a LightGCN step
  on the project machine; memory copy into fresh buffers 3.7 -> 9.6 GB/s);
* ``--threads N`` -> ``OMP_NUM_THREADS`` / ``--threads`` of each benchmark.
  ``0`` (default) picks torch's default, except that when the 1-minute load
  average already exceeds ``cpu_count - 1`` it uses one thread: OpenMP
  threads that wait for a busy core spin, which made a BPR-MF step 50-100×
  slower at two threads under a load of 5 on 2 cores.

Usage::

    python benchmarks/run_all.py                 # ~100k x 50k x 2M graph + Sport-Cloth; ~15 min on 2 cores
    python benchmarks/run_all.py --quick         # small graphs, in-process, < 1 min (used by the tests)
    python benchmarks/run_all.py --only machine lgconv training --threads 2
"""
from __future__ import annotations

import os
import sys

if '--no-thp' not in sys.argv:   # before torch allocates anything (this process runs benchmarks in --quick)
    os.environ.setdefault('THP_MEM_ALLOC_ENABLE', '1')

import argparse  # noqa: E402
import contextlib  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import os.path as osp  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(HERE)
sys.path[:0] = [p for p in (HERE, ROOT) if p not in sys.path]

PARTS = ('machine', 'lgconv', 'full_ranking', 'sampling', 'training', 'profile')

#: targets of issue 9 (100k users x 50k items x 2M interactions, d = 64)
TARGETS: dict[str, tuple[str, float, str]] = {
    'propagation_forward_fraction_of_memcpy': ('>=', 0.60, 'of the memory-copy bandwidth for the bytes it moves'),
    'propagation_forward_backward_over_forward': ('<=', 2.2, 'forward+backward / forward'),
    'full_ranking_fraction_of_sgemm': ('>=', 0.40, 'scoring FLOP rate / sgemm rate (whole evaluation timed)'),
    'bpr_mf_sparse_samples_per_s': ('>=', 250_000.0, 'samples/s (280k measured by the issue)'),
    'lightgcn3_samples_per_s': ('>=', 12_000.0, "samples/s (PyG's LightGCN: 764 by the issue)"),
    'negative_sampling_ms_per_batch': ('<=', 2.0, 'ms per 4096-sample batch, training positives rejected'),
    'lightgcn3_peak_rss_mib': ('<=', 2048.0, 'MiB peak resident memory of a LightGCN-3 training process'),
    'per_sample_python_loops': ('<=', 0.0, 'profiled hot paths with a per-sample Python loop'),
}


def load_avg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def choose_threads(requested: int) -> int:
    r"""``requested``, or for ``0``: torch's default unless the machine is already loaded (then 1)."""
    if requested > 0:
        return requested
    cpus = os.cpu_count() or 1
    return 1 if os.getloadavg()[0] > cpus - 1 else cpus


# ---------------------------------------------------------------------------------------- arguments
def bench_argv(part: str, quick: bool, threads: int, out: str) -> tuple[str, list[str]]:
    r"""Script and arguments of one part (full-size or ``--quick``)."""
    t = ['--threads', str(threads)]
    if part == 'machine':
        return 'bench_machine.py', (['--gemm-n', '512', '--copy-mib', '32', '--repeats', '3'] if quick else
                                    ['--gemm-n', '2048', '--copy-mib', '256', '--repeats', '5']) + ['--out', out]
    if part == 'lgconv':
        size = ['--users', '2000', '--items', '1000', '--edges', '20000', '--repeats', '1'] if quick else \
            ['--users', '100000', '--items', '50000', '--edges', '2000000', '--repeats', '3']
        return 'bench_lgconv.py', size + ['--dim', '64', '--device', 'cpu', '--methods', 'ours_csr,pyg_lgconv',
                                          '--out', out]
    if part == 'full_ranking':
        size = ['--users', '500', '--items', '1000', '--edges', '5000', '--chunk-sizes', '256'] if quick else \
            ['--users', '10000', '--items', '50000', '--edges', '200000', '--chunk-sizes', '1024']
        return 'bench_full_ranking.py', size + ['--dim', '64', '--out', out] + t
    if part == 'sampling':
        size = ['--num-edges', '20000', '--num-users', '2000', '--items', '800', '400', '--max-batches', '5'] \
            if quick else ['--num-edges', '1000000', '--max-batches', '50']
        return 'bench_sampling.py', size + ['--json', out] + t
    if part == 'training':
        size = ['--users', '2000', '--items', '1000', '--edges', '20000', '--steps', '3', '--gcn-steps', '1',
                '--pyg-steps', '1', '--warmup', '1', '--ns-repeats', '5', '--pyg-ns-repeats', '1',
                '--no-sport-cloth', '--inprocess'] if quick else []
        return 'bench_training.py', size + ['--out', out] + t
    if part == 'profile':
        size = ['--users', '2000', '--items', '1000', '--edges', '20000', '--eval-users', '500',
                '--batch-size', '512'] if quick else []
        return 'bench_profile.py', size + ['--out', out] + t
    raise ValueError(f'unknown part {part!r}; choose from {PARTS}')


@contextlib.contextmanager
def _argv(argv: list[str]) -> Iterator[None]:
    old = sys.argv
    sys.argv = argv
    try:
        yield
    finally:
        sys.argv = old


def run_part(part: str, quick: bool, threads: int, out: str, inprocess: bool) -> dict[str, Any]:
    r"""Run one benchmark (subprocess, or imported with ``inprocess``) and return its JSON output."""
    script, argv = bench_argv(part, quick, threads, out)
    t0 = time.perf_counter()
    status = 'ok'
    if inprocess:
        import torch
        torch.set_num_threads(threads)
        module = importlib.import_module(script[:-3])
        if part == 'full_ranking':   # its main() spawns a child per chunk size: call the child's body here
            ns = argparse.Namespace(users=int(argv[1]), items=int(argv[3]), edges=int(argv[5]), dim=64,
                                    threads=threads)
            row = module.run_one(ns, int(argv[7]))
            with open(out, 'w') as f:
                json.dump({'users': ns.users, 'items': ns.items, 'edges': ns.edges, 'dim': 64, 'rows': [row]}, f)
        else:
            with _argv([script] + argv):
                module.main()
    else:
        env = {**os.environ, 'OMP_NUM_THREADS': str(threads),
               'PYTHONPATH': os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')]))}
        proc = subprocess.run([sys.executable, osp.join(HERE, script)] + argv, env=env)
        status = 'ok' if proc.returncode == 0 else f'exit code {proc.returncode}'
    seconds = time.perf_counter() - t0
    if status != 'ok' or not osp.exists(out):
        return {'status': status if status != 'ok' else 'no output', 'seconds': seconds}
    with open(out) as f:
        result = json.load(f)
    return {'status': 'ok', 'seconds': seconds, 'result': result}


# ---------------------------------------------------------------------------------------- figures
def _figure(name: str, value: float | None, unit: str, machine_ratio: float | None = None,
            machine_note: str = '', **extra: Any) -> dict[str, Any]:
    fig: dict[str, Any] = {'name': name, 'value': value, 'unit': unit, 'machine_ratio': machine_ratio,
                           'machine_note': machine_note, **extra}
    if name in TARGETS and value is not None:
        op, target, note = TARGETS[name]
        fig.update(target=target, op=op, target_note=note,
                   meets=bool(value >= target if op == '>=' else value <= target),
                   ratio_to_target=(value / target if target else None))
    return fig


def figures(parts: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    r"""The suite's figures from the parts' raw results (missing parts give no figure)."""
    res = {k: v.get('result') for k, v in parts.items() if v.get('status') == 'ok'}
    mach = res.get('machine') or {}
    gflops, bw = mach.get('sgemm_gflops'), mach.get('memcpy_gb_s')
    out: list[dict[str, Any]] = []
    fwd_bytes = None
    lg = res.get('lgconv')
    if lg and 'ours_csr' in lg.get('results', {}):
        c, r = lg['config'], lg['results']['ours_csr']
        e, d = c['edges'], c['dim']
        # bytes one forward must move at least (bench_lgconv's model): 2E gathered rows, U+I written, the CSRs
        fwd_bytes = (2 * e * d + (c['users'] + c['items']) * d) * 4 + 2 * e * (8 + 4)
        achieved = fwd_bytes / (r['forward_ms'] / 1e3) / 1e9
        out.append(_figure('propagation_forward_ms', r['forward_ms'], 'ms'))
        if bw:
            out.append(_figure('propagation_forward_fraction_of_memcpy', achieved / bw, 'fraction', achieved / bw,
                               f'{achieved:.2f} GB/s effective / {bw:.2f} GB/s memcpy'))
        out.append(_figure('propagation_forward_backward_over_forward', r['forward_backward_ms'] / r['forward_ms'],
                           'x'))
        if 'pyg_lgconv' in lg['results']:
            p = lg['results']['pyg_lgconv']
            out.append(_figure('propagation_speedup_over_pyg_lgconv', p['forward_backward_ms'] /
                               r['forward_backward_ms'], 'x', machine_note='forward+backward, PyG LGConv on '
                               'edge_index'))
    fr = res.get('full_ranking')
    if fr and fr.get('rows'):
        row = min(fr['rows'], key=lambda r: r['seconds'])
        rate = 2.0 * fr['users'] * fr['items'] * fr['dim'] / row['seconds'] / 1e9
        out.append(_figure('full_ranking_seconds', row['seconds'], 's',
                           machine_note=f"{fr['users']} users x {fr['items']} items, top-20, chunk "
                                        f"{row['chunk_size']}"))
        if gflops:
            out.append(_figure('full_ranking_fraction_of_sgemm', rate / gflops, 'fraction', rate / gflops,
                               f'{rate:.1f} GFLOP/s effective / {gflops:.1f} GFLOP/s sgemm'))
        out.append(_figure('full_ranking_peak_over_setup_mib', row['peak_over_setup_mib'], 'MiB'))
    tr = res.get('training')
    if tr:
        syn, cfg = tr['synthetic'], tr['config']
        d, n = cfg['dim'], cfg['num_negatives']
        for key, name in (('bpr_sparse', 'bpr_mf_sparse_samples_per_s'), ('bpr_dense', 'bpr_mf_dense_samples_per_s')):
            if 'samples_per_s' in syn.get(key, {}):
                sps = syn[key]['samples_per_s']
                # rows touched per sample: user, positive, n negatives; ~8 passes each (lookup, gradient,
                # read + write of value, exp_avg, exp_avg_sq) -- a lower bound of the bytes a step moves
                moved = sps * (2 + n) * d * 4 * 8 / 1e9
                out.append(_figure(name, sps, 'samples/s', moved / bw if bw else None,
                                   f'{moved:.2f} GB/s touched by the batch rows (8 passes) / memcpy'))
        if 'samples_per_s' in syn.get('bpr_sparse', {}) and 'samples_per_s' in syn.get('bpr_dense', {}):
            out.append(_figure('bpr_mf_sparse_over_dense', syn['bpr_sparse']['samples_per_s'] /
                               syn['bpr_dense']['samples_per_s'], 'x', machine_note='issue: 6x'))
        g = syn.get('lightgcn3', {})
        if 'samples_per_s' in g:
            ratio, note = None, ''
            if bw and fwd_bytes and lg and lg['config']['edges'] == cfg['edges']:
                bound_ms = 3 * 2 * fwd_bytes / (bw * 1e9) * 1e3   # 3 layers, forward + backward
                ratio, note = bound_ms / g['ms_per_step'], f'propagation memcpy bound {bound_ms:.0f} ms / step time'
            out.append(_figure('lightgcn3_samples_per_s', g['samples_per_s'], 'samples/s', ratio, note))
            out.append(_figure('lightgcn3_peak_rss_mib', g['peak_rss_mib'], 'MiB',
                               machine_note='whole process (torch import, graph, model, Adam)' +
                               (' -- in-process run: upper bound' if g.get('inprocess') else '')))
            p = syn.get('pyg_lightgcn3', {})
            if 'samples_per_s' in p:
                out.append(_figure('pyg_lightgcn3_samples_per_s', p['samples_per_s'], 'samples/s'))
                out.append(_figure('lightgcn3_speedup_over_pyg', g['samples_per_s'] / p['samples_per_s'], 'x'))
        ns = syn.get('negative_sampling', {})
        if 'ms_per_batch' in ns:
            out.append(_figure('negative_sampling_ms_per_batch', ns['ms_per_batch'], 'ms',
                               machine_note=f"PyG negative_sampling {ns['pyg_ms_per_batch']:.1f} ms "
                                            f"({ns['pyg_ms_per_batch'] / ns['ms_per_batch']:.0f}x slower); "
                                            f"{ns['positives_drawn']} training positives drawn"))
    sa = res.get('sampling')
    if sa and sa.get('runs'):
        for run in sa['runs']:
            tag = f"{run['mode']}_{run['domain_policy']}" + (f"_{run['backend']}" if run.get('backend') else '')
            out.append(_figure(f'loader_{tag}_pairs_per_s', run['pairs_per_s'], 'pairs/s'))
    pr = res.get('profile')
    if pr:
        loops = [k for k, v in pr['profiles'].items() if v['per_sample_loop']]
        out.append(_figure('per_sample_python_loops', float(len(loops)), 'count',
                           machine_note='; '.join(f"{k}: {v['total_calls']} Python calls at n={v['size']}, "
                                                  f"{v['calls_at_double_size']} at 2n"
                                                  for k, v in pr['profiles'].items())))
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return ''
    if isinstance(v, bool):
        return 'yes' if v else '**no**'
    if isinstance(v, float):
        return f'{v:,.0f}' if abs(v) >= 1000 else f'{v:.3g}'
    return str(v)


def markdown(suite: dict[str, Any]) -> str:
    m = suite['machine']
    lines = [f"# Benchmark suite{' (quick)' if suite['config']['quick'] else ''}", '',
             f"Load average at start {suite['load_avg_start']}, at end {suite['load_avg_end']} "
             f"({m.get('cpu_count')} CPUs; figures under load are not meaningful). torch {m.get('torch')}, "
             f"{suite['config']['threads']} thread(s), THP_MEM_ALLOC_ENABLE={suite['config']['thp']}.", '',
             f"Machine references: sgemm {_fmt(m.get('sgemm_gflops'))} GFLOP/s, memory copy "
             f"{_fmt(m.get('memcpy_gb_s'))} GB/s (clone into fresh memory {_fmt(m.get('clone_gb_s'))} GB/s).", '',
             '| figure | measured | unit | target | meets | / target | / machine | note |',
             '|---|---:|---|---:|---|---:|---:|---|']
    for f in suite['figures']:
        target = f"{f['op']} {_fmt(float(f['target']))}" if 'target' in f else ''
        note = '; '.join(x for x in (f.get('target_note', ''), f.get('machine_note', '')) if x)
        lines.append(f"| {f['name']} | {_fmt(f['value'])} | {f['unit']} | {target} | {_fmt(f.get('meets'))} | "
                     f"{_fmt(f.get('ratio_to_target'))} | {_fmt(f.get('machine_ratio'))} | {note} |")
    tr = suite['parts'].get('training', {}).get('result') or {}
    sc = tr.get('sport_cloth') or {}
    lines += ['', '## Sport–Cloth: epoch time and peak memory per model', '']
    if 'status' in sc:
        lines.append(f"skipped: {sc.get('reason')}")
    else:
        lines += ['| model | epoch (s, extrapolated) | steps/epoch | ms/step per stage | peak RSS (MiB) | '
                  'parameters |', '|---|---:|---:|---|---:|---:|']
        for name, r in sc.items():
            if r.get('status') != 'ok':
                lines.append(f"| {name} | {r.get('status')}: {r.get('reason', '')[:120]} | | | | |")
                continue
            per = ', '.join(f"{s}: {v['s_per_step'] * 1e3:.0f}" for s, v in r['stages'].items())
            lines.append(f"| {name} | {r['epoch_s_extrapolated']:.1f} | {r['steps_per_epoch']} | {per} | "
                         f"{r['peak_rss_mib']:.0f} | {r['num_parameters']:,} |")
    pr = suite['parts'].get('profile', {}).get('result')
    if pr:
        lines += ['', '## Hot-path profiles (cProfile, top functions by own time)', '']
        for name, p in pr['profiles'].items():
            lines += [f"**{name}** (n = {p['size']}): {p['total_ms']:.1f} ms, {p['total_calls']} Python-level "
                      f"calls ({p['calls_at_double_size']} at 2n), max ncalls {p['max_ncalls']} "
                      f"({p['max_ncalls_function']}) — "
                      f"{'per-sample loop!' if p['per_sample_loop'] else 'no per-sample loop'}", '',
                      '| ncalls | tottime ms | cumtime ms | function |', '|---:|---:|---:|---|']
            lines += [f"| {r['ncalls']} | {r['tottime_ms']:.2f} | {r['cumtime_ms']:.2f} | `{r['function']}` |"
                      for r in p['top'][:8]]
            lines.append('')
    lines += ['', 'Per-part wall time: ' + ', '.join(f"{k} {v['seconds']:.0f} s ({v['status']})"
                                                    for k, v in suite['parts'].items())]
    return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='small graphs, in-process (plumbing check, < 1 min)')
    parser.add_argument('--only', nargs='+', choices=PARTS, default=list(PARTS))
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0: auto, see the module doc)')
    parser.add_argument('--no-thp', action='store_true', help='do not set THP_MEM_ALLOC_ENABLE=1')
    parser.add_argument('--inprocess', action='store_true', help='import the benchmarks instead of subprocesses '
                        '(default with --quick; peak-memory figures become upper bounds)')
    parser.add_argument('--out-dir', default=None,
                        help='default: benchmarks/results (benchmarks/results/quick with --quick)')
    args = parser.parse_args(argv)
    out_dir = args.out_dir or osp.join(HERE, 'results', 'quick' if args.quick else '')
    parts_dir = osp.join(out_dir, 'suite_parts')
    os.makedirs(parts_dir, exist_ok=True)
    inprocess = args.inprocess or args.quick
    start = load_avg()
    threads = choose_threads(args.threads)
    print(f'benchmark suite{" (quick)" if args.quick else ""}: load average at start {start}, '
          f'{os.cpu_count()} CPUs -> {threads} thread(s); THP_MEM_ALLOC_ENABLE='
          f'{os.environ.get("THP_MEM_ALLOC_ENABLE")}', flush=True)
    t0 = time.perf_counter()
    parts: dict[str, dict[str, Any]] = {}
    for part in args.only:
        print(f'\n### {part}', flush=True)
        parts[part] = run_part(part, args.quick, threads, osp.join(parts_dir, f'{part}.json'), inprocess)
        print(f'### {part}: {parts[part]["status"]} in {parts[part]["seconds"]:.1f} s', flush=True)
    machine = dict((parts.get('machine') or {}).get('result') or {})
    suite = {'config': {'quick': args.quick, 'threads': threads, 'thp': os.environ.get('THP_MEM_ALLOC_ENABLE'),
                        'inprocess': inprocess, 'parts': list(args.only)},
             'load_avg_start': start, 'load_avg_end': load_avg(), 'seconds': time.perf_counter() - t0,
             'machine': machine, 'targets': {k: {'op': o, 'value': v, 'note': n} for k, (o, v, n) in TARGETS.items()},
             'figures': figures(parts), 'parts': parts}
    with open(osp.join(out_dir, 'suite.json'), 'w') as f:
        json.dump(suite, f, indent=2)
    with open(osp.join(out_dir, 'suite.md'), 'w') as f:
        f.write(markdown(suite))
    print(f'\nload average at end {suite["load_avg_end"]} (start {start}); {suite["seconds"]:.0f} s')
    for fig in suite['figures']:
        tgt = f"  target {fig['op']} {fig['target']:g}: {'meets' if fig['meets'] else 'MISSES'}" if 'target' in fig \
            else ''
        print(f"{fig['name']:48s} {_fmt(fig['value']):>12} {fig['unit']}{tgt}")
    print(f'wrote {osp.join(out_dir, "suite.json")} and suite.md')
    return suite


if __name__ == '__main__':
    main()
