"""Helper of tests/test_integration_trl.py: one process of a 2-process (gloo) run of the TRL integration's
optimizer-step selection. Launched twice with RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set; each process
builds the same seeded window (``window_data``), keeps its block of rows cut to its own completion width,
selects through ``accelerate``'s all-gather and saves its micro-batches' ``selected`` blocks to
``OUT_DIR/rank{r}.pt``.

Usage: python tests/trl_two_process_selection.py OBJECTIVE OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROWS_PER_MICRO_BATCH, MICRO_BATCHES, WORLD = 3, 2, 2
WIDTHS = (7, 5)          # completion width of each process (the gathered window is padded to 7)
PARAMS = {"clip_cov": {"clip_ratio": 0.05, "cov_lb": -10.0, "cov_ub": 10.0},
          "kl_cov": {"kl_ratio": 0.05}}
SEED, STEP = 3, 4


def window_data(seed: int = 0):
    """The whole window of every process, ``[WORLD·MICRO_BATCHES·B, max(WIDTHS)]``: (lp, old, adv, mask);
    rows of process r have mask False beyond WIDTHS[r]."""
    g = torch.Generator().manual_seed(seed)
    n, t = WORLD * MICRO_BATCHES * ROWS_PER_MICRO_BATCH, max(WIDTHS)
    lp = -torch.rand(n, t, generator=g) * 3
    old = lp + 0.1 * torch.randn(n, t, generator=g)
    adv = torch.randn(n, 1, generator=g).expand(n, t).contiguous()
    mask = torch.rand(n, t, generator=g) > 0.2
    per = n // WORLD
    for r, w in enumerate(WIDTHS):
        mask[r * per:(r + 1) * per, w:] = False
    return lp, old, adv, mask


def main(objective: str, out_dir: str) -> None:
    from accelerate import Accelerator

    from integrations.trl_window import WindowBatch, micro_batch_stats, select_window, selection_generator

    acc = Accelerator(cpu=True)
    r = acc.process_index
    if acc.num_processes != WORLD:
        raise SystemExit(f"expected {WORLD} processes, got {acc.num_processes}")
    lp, old, adv, mask = window_data()
    per = lp.shape[0] // WORLD
    w = WIDTHS[r]
    local = [x[r * per:(r + 1) * per, :w] for x in (lp, old, adv, mask)]
    batch = WindowBatch(*local, ROWS_PER_MICRO_BATCH)
    sel = select_window(batch, objective=objective, params=PARAMS[objective],
                        generator=selection_generator(SEED, STEP, "cpu"), accelerator=acc)
    blocks = [micro_batch_stats(sel, p).selected for p in range(MICRO_BATCHES)]
    torch.save({"blocks": blocks, "num_tokens": int(sel.stats.num_tokens)}, Path(out_dir) / f"rank{r}.pt")
    acc.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
