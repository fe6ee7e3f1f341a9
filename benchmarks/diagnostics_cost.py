"""Cost of the chunked full-vocabulary diagnostics pass (theory.vocab_stats) against one plain
``torch.logsumexp`` over the same logits, measured in the same run.

    python benchmarks/diagnostics_cost.py [--rows 8192] [--vocab 151936] [--device cpu|cuda] [--eager-only]

Prints the time of each variant, the ratio ``cost: <x>x`` (target <= 1.5x) on its last line, and the
peak extra memory of the chunked pass against the naive unchunked one (each measured in a fresh
subprocess on CPU via ru_maxrss, or with torch.cuda.max_memory_allocated on CUDA).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

from theory.vocab_stats import default_chunk_rows, vocab_stats


def _make(rows, vocab, device, seed=0, block=1):
    """bf16 logits and logit changes, generated block-wise so no float32 [rows, V] copy ever exists."""
    g = torch.Generator(device=device).manual_seed(seed)
    z = torch.empty(rows, vocab, dtype=torch.bfloat16, device=device)
    d = torch.empty_like(z)
    for i in range(0, rows, block):
        n = min(block, rows - i)
        z[i:i + n] = torch.randn(n, vocab, generator=g, device=device) * 3
        d[i:i + n] = torch.randn(n, vocab, generator=g, device=device) * 1e-3
    return z, d


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def _time(fn, device, repeats=3):
    fn()
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def _peak_child(kind, rows, vocab, device):
    """Peak extra memory (bytes) of one variant, measured beyond the inputs."""
    code = f"""
import json, resource, torch, sys
sys.path.insert(0, '.')
from benchmarks.diagnostics_cost import _make
from theory.vocab_stats import vocab_stats, vocab_stats_reference
z, d = _make({rows}, {vocab}, '{device}')
if '{device}' == 'cuda':
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
else:
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
if '{kind}' == 'chunked':
    vocab_stats(z, d)
elif '{kind}' == 'naive':
    vocab_stats_reference(z, d)
else:
    torch.logsumexp(z, -1)
if '{device}' == 'cuda':
    peak = torch.cuda.max_memory_allocated() - base
else:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
print(json.dumps(peak))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if res.returncode != 0:
        return float("nan")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=8192)
    ap.add_argument("--vocab", type=int, default=151936)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--chunk-rows", type=int, default=0, help="rows per chunk (0 = default_chunk_rows)")
    ap.add_argument("--eager-only", action="store_true", help="skip the torch.compile variant")
    ap.add_argument("--memory", action="store_true", help="also measure peak memory (runs subprocesses)")
    args = ap.parse_args()
    z, d = _make(args.rows, args.vocab, args.device)
    chunk = args.chunk_rows or default_chunk_rows(args.vocab)
    print(f"rows={args.rows} vocab={args.vocab} device={args.device} dtype=bfloat16 chunk_rows={chunk} "
          f"threads={torch.get_num_threads()}")
    t_lse = _time(lambda: torch.logsumexp(z, -1), args.device)
    print(f"logsumexp (baseline)           {t_lse:8.3f} s")
    t_eager = _time(lambda: vocab_stats(z, d, chunk_rows=chunk), args.device)
    print(f"chunked pass, eager            {t_eager:8.3f} s   {t_eager / t_lse:5.2f}x")
    best = t_eager
    if not args.eager_only:
        t0 = time.perf_counter()
        vocab_stats(z[:chunk], d[:chunk], compiled=True)
        print(f"  (torch.compile warm-up {time.perf_counter() - t0:.1f} s, once per process)")
        t_comp = _time(lambda: vocab_stats(z, d, chunk_rows=chunk, compiled=True), args.device)
        print(f"chunked pass, torch.compile    {t_comp:8.3f} s   {t_comp / t_lse:5.2f}x")
        best = min(best, t_comp)
    if args.memory:
        chunk_bytes = chunk * args.vocab * 4
        peaks = {k: _peak_child(k, args.rows, args.vocab, args.device) for k in ("chunked", "naive")}
        print(f"peak extra memory: chunked {peaks['chunked'] / 2**20:.0f} MiB "
              f"({peaks['chunked'] / chunk_bytes:.1f} chunks of {chunk_bytes / 2**20:.0f} MiB); "
              f"naive unchunked {peaks['naive'] / 2**20:.0f} MiB")
    print(f"cost: {best / t_lse:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
