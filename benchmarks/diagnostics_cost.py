"""Cost of the chunked full-vocabulary diagnostics pass (theory.vocab_stats) against one plain
``torch.logsumexp`` over the same logits, measured in the same run.

    python benchmarks/diagnostics_cost.py [--rows 8192] [--vocab 151936] [--device cpu|cuda] [--eager-only]
        [--json-out FILE]

Prints the time of each variant (eager, and fused with ``torch.compile``), the ratio ``cost: <x>x`` of
the faster one (target <= 1.5x) on its last line, and the peak extra memory of the chunked pass in units
of one ``[chunk_rows, V]`` float32 chunk (target <= 2) against the naive unchunked float64 formulas
(:func:`peak_extra_bytes`: allocator events on CPU, ``max_memory_allocated`` on CUDA). The naive version
is measured on ``--naive-rows`` rows and scaled linearly, since at 8192 rows it needs ~100 GiB.
``--json-out FILE`` also writes the numbers (``cost_ratio``, ``peak_extra_chunks`` of the faster variant,
per-variant seconds, device name) as JSON (``entropy-mech reproduce --profile gpu`` reads it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from theory.vocab_stats import default_chunk_rows, vocab_stats, vocab_stats_reference


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


def peak_extra_bytes(fn, device) -> int:
    """Peak bytes allocated by ``fn()`` beyond what existed before it (allocator level, exact).

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: the profiler's allocation/free events, whose running
    sum is the live extra memory; its maximum is the peak (RSS high-water marks miss freed chunks).
    """
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and str(e.device_type()).endswith("CPU"))
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=8192)
    ap.add_argument("--vocab", type=int, default=151936)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--chunk-rows", type=int, default=0, help="rows per chunk (0 = default_chunk_rows)")
    ap.add_argument("--eager-only", action="store_true", help="skip the torch.compile variant")
    ap.add_argument("--naive-rows", type=int, default=64,
                    help="rows for the naive float64 memory measurement (scaled linearly to --rows)")
    ap.add_argument("--json-out", default="", help="also write the measured numbers to this JSON file")
    args = ap.parse_args()
    if min(args.rows, args.vocab, args.naive_rows) < 1 or args.chunk_rows < 0:
        ap.error("--rows, --vocab and --naive-rows must be >= 1, --chunk-rows >= 0")
    z, d = _make(args.rows, args.vocab, args.device)
    chunk = args.chunk_rows or default_chunk_rows(args.vocab, args.device)
    print(f"rows={args.rows} vocab={args.vocab} device={args.device} dtype=bfloat16 chunk_rows={chunk} "
          f"threads={torch.get_num_threads()}")
    t_lse = _time(lambda: torch.logsumexp(z, -1), args.device)
    print(f"logsumexp (baseline)           {t_lse:8.3f} s")
    variants = {"eager": False} if args.eager_only else {"eager": False, "torch.compile": True}
    best, times, best_name, compile_error = float("inf"), {}, "eager", None
    for name, compiled in variants.items():
        if compiled:
            t0 = time.perf_counter()
            try:  # a broken compiler tool chain must not cost the eager numbers of a one-shot GPU run
                vocab_stats(z[:chunk], d[:chunk], chunk_rows=chunk, compiled=True)
            except Exception as err:  # noqa: BLE001 - reported, then the eager variant stands alone
                compile_error = f"{type(err).__name__}: {err}"[:500]
                print(f"  torch.compile failed, eager only: {compile_error}")
                continue
            print(f"  (torch.compile warm-up {time.perf_counter() - t0:.1f} s, once per process)")
        t = _time(lambda: vocab_stats(z, d, chunk_rows=chunk, compiled=compiled), args.device)
        print(f"chunked pass, {name:16s} {t:8.3f} s   {t / t_lse:5.2f}x")
        times[name] = t
        if t < best:
            best, best_name = t, name
    chunk_bytes = chunk * args.vocab * 4
    peak = peak_extra_bytes(lambda: vocab_stats(z, d, chunk_rows=chunk), args.device)
    peak_c = None
    if "torch.compile" in times:
        peak_c = peak_extra_bytes(lambda: vocab_stats(z, d, chunk_rows=chunk, compiled=True), args.device)
        print(f"peak extra memory, torch.compile: {peak_c / 2**20:.1f} MiB = "
              f"{peak_c / chunk_bytes:.2f} chunks")
    n = min(args.naive_rows, args.rows)
    naive = peak_extra_bytes(lambda: vocab_stats_reference(z[:n], d[:n]), args.device) * args.rows / n
    print(f"peak extra memory, eager: chunked {peak / 2**20:.1f} MiB = {peak / chunk_bytes:.2f} chunks of "
          f"{chunk_bytes / 2**20:.1f} MiB (target <= 2); naive unchunked float64 {naive / 2**30:.1f} GiB "
          f"(measured on {n} rows, scaled to {args.rows})")
    print(f"cost: {best / t_lse:.2f}x")
    if args.json_out:
        from rundir.files import atomic_write_json

        best_peak = peak_c if best_name == "torch.compile" and peak_c is not None else peak
        dev_name = (torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda")
                    else "cpu")
        atomic_write_json(Path(args.json_out), {
            "rows": args.rows, "vocab": args.vocab, "device": args.device, "device_name": dev_name,
            "chunk_rows": chunk, "threads": torch.get_num_threads(), "logsumexp_s": t_lse,
            "variant_s": times, "best_variant": best_name, "cost_ratio": best / t_lse,
            "peak_extra_chunks": best_peak / chunk_bytes, "peak_extra_chunks_eager": peak / chunk_bytes,
            "peak_extra_chunks_compiled": None if peak_c is None else peak_c / chunk_bytes,
            "naive_extra_gib": naive / 2**30, "compile_error": compile_error,
            "targets": {"cost_ratio": 1.5, "peak_extra_chunks": 2.0}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
