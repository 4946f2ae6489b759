r"""Machine references of the benchmark suite: dense sgemm GFLOP/s and memory-copy GB/s.

Every speed figure of ``benchmarks/run_all.py`` is also reported as a ratio
to what this machine can do at all, measured in the same run:

* ``sgemm_gflops`` — ``float32`` matrix product ``[n, n] @ [n, n]``
  (``2 n³`` flops; the bound of full-ranking scoring, a dense product of
  user and item embeddings);
* ``memcpy_gb_s`` — :meth:`torch.Tensor.copy_` of a ``--copy-mib`` buffer
  into a preallocated one, counting read + write bytes: the bound of
  propagation, embedding lookups and optimiser sweeps, which are all
  bandwidth bound;
* ``clone_gb_s`` — the same bytes with :meth:`torch.Tensor.clone` (the
  reference of ``bench_lgconv.py``). ``clone`` allocates its output, so it
  also pays the page faults of fresh memory: measured 3.7 GB/s against
  18 GB/s for ``copy_`` on the 2-core project machine (9.6 GB/s with
  ``THP_MEM_ALLOC_ENABLE=1``), which makes a "fraction of the clone
  bandwidth" exceed 100 %. Ratios use ``memcpy_gb_s``.

Both use all of torch's intra-op threads (``torch.get_num_threads()``) and
report the median of ``--repeats`` runs after one warm-up. The load average
is printed with them: on a shared machine another process holding a core
halves these figures, and every figure measured against them.

Usage::

    python benchmarks/bench_machine.py [--gemm-n 2048 --copy-mib 256 --repeats 5 --out results/machine.json]
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import platform
import statistics
import time
from collections.abc import Callable

import torch

__all__ = ['median_ms', 'sgemm_gflops', 'memcpy_gb_s', 'load_avg', 'machine_info', 'measure']


def median_ms(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    r"""Median wall time of ``fn()`` in milliseconds over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    r"""Dense ``float32`` matrix-product rate in GFLOP/s (``2 n³`` flops per product)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    out = torch.empty(n, n)
    ms = median_ms(lambda: torch.mm(a, b, out=out), repeats)
    return 2.0 * n ** 3 / (ms / 1e3) / 1e9


def memcpy_gb_s(num_mib: int = 256, repeats: int = 5, clone: bool = False) -> float:
    r"""Memory-copy bandwidth in GB/s of a ``num_mib`` MiB buffer, read + write counted: ``copy_``
    into a preallocated buffer, or ``clone`` (fresh output, page faults included) with ``clone=True``."""
    buf = torch.ones(num_mib * 2 ** 20 // 4)
    if clone:
        ms = median_ms(buf.clone, repeats)
    else:
        out = torch.zeros_like(buf)
        ms = median_ms(lambda: out.copy_(buf), repeats)
    return 2.0 * buf.numel() * 4 / (ms / 1e3) / 1e9


def load_avg() -> list[float]:
    r"""The 1, 5 and 15 minute load averages (``[]`` where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux/macOS
        return []


def machine_info() -> dict:
    r"""CPU count, torch threads, versions and the ``THP_MEM_ALLOC_ENABLE`` setting."""
    return {'cpu_count': os.cpu_count(), 'torch_threads': torch.get_num_threads(), 'torch': torch.__version__,
            'python': platform.python_version(), 'platform': platform.platform(),
            'thp_mem_alloc_enable': os.environ.get('THP_MEM_ALLOC_ENABLE')}


def measure(gemm_n: int = 2048, copy_mib: int = 256, repeats: int = 5) -> dict:
    r"""Both references plus :func:`machine_info` and the load average, as one dict."""
    return {'sgemm_gflops': sgemm_gflops(gemm_n, repeats), 'memcpy_gb_s': memcpy_gb_s(copy_mib, repeats),
            'clone_gb_s': memcpy_gb_s(copy_mib, repeats, clone=True),
            'gemm_n': gemm_n, 'copy_mib': copy_mib, 'repeats': repeats, 'load_avg': load_avg(), **machine_info()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--gemm-n', type=int, default=2048)
    parser.add_argument('--copy-mib', type=int, default=256)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--out', default=None, help='write the references as JSON here')
    args = parser.parse_args(argv)
    ref = measure(args.gemm_n, args.copy_mib, args.repeats)
    print(f"machine: sgemm {ref['sgemm_gflops']:.1f} GFLOP/s (n={args.gemm_n}), memory copy "
          f"{ref['memcpy_gb_s']:.2f} GB/s ({args.copy_mib} MiB; clone {ref['clone_gb_s']:.2f} GB/s), "
          f"{ref['torch_threads']} threads, "
          f"load avg {ref['load_avg']}")
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(ref, f, indent=2)
    return ref


if __name__ == '__main__':
    main()
