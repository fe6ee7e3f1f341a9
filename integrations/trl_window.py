"""Clip-Cov / KL-Cov token selection over one whole optimizer step of TRL's ``GRPOTrainer``.

An optimizer step of TRL is a *window* of ``W = current_gradient_accumulation_steps`` micro-batches on each of
``R`` processes. The paper's selection scope is that whole step (docs/ecosystem.md §1.7), so the scope
statistics are computed once, at the window's first micro-batch, on the window's tokens of every process:

    X_r   = cat_p X_{r,p}              rows of process r's micro-batches p = 0..W-1, each [B, T_r]
    X     = cat_r pad_T(X_r)           all-gathered in rank order, padded to T = max_r T_r   -> [R·W·B, T]
    stats = theory.objectives.compute_cov_stats(X's current log π, log π_old, A, mask; generator g)

and micro-batch p of process r uses rows ``(r·W + p)·B … (r·W + p + 1)·B`` and columns ``:T_r`` of
``stats.selected`` (:func:`micro_batch_stats`). Every process draws the same keys from an identically
seeded generator on the same gathered tensors, so all processes agree on the selection, and it equals the
selection of one process holding the concatenated batch (tests/test_integration_trl.py checks it with 2
gloo processes).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from theory.objectives import CovStats, compute_cov_stats

__all__ = ["WindowBatch", "WindowSelection", "gather_window", "micro_batch_stats", "select_window",
           "selection_generator"]


@dataclass(frozen=True)
class WindowBatch:
    """The tokens of one process's optimizer-step window, micro-batches concatenated along rows.

    Attributes:
      log_prob: ``[W·B, T]`` current log π of the sampled tokens (no grad).
      old_log_prob: ``[W·B, T]`` log π_old (= ``log_prob`` on-policy).
      advantages: ``[W·B, T]`` per-token advantages.
      mask: ``[W·B, T]`` bool, the tokens the loss counts.
      rows_per_micro_batch: B (every micro-batch of the window has the same number of rows).
    """

    log_prob: torch.Tensor
    old_log_prob: torch.Tensor
    advantages: torch.Tensor
    mask: torch.Tensor
    rows_per_micro_batch: int


@dataclass(frozen=True)
class WindowSelection:
    """The whole step's selection and where this process's rows sit in it.

    Attributes:
      stats: :class:`theory.objectives.CovStats` of the gathered ``[R·W·B, T]`` window.
      row_offset: index of this process's first row in the gathered window (r·W·B).
      rows_per_micro_batch: B.
      local_width: T_r, this process's completion width (columns beyond it are padding).
    """

    stats: CovStats
    row_offset: int
    rows_per_micro_batch: int
    local_width: int


def selection_generator(seed: int, step: int, device) -> torch.Generator:
    """The generator of optimizer step ``step``: seeded with ``seed·1_000_003 + step`` on ``device``, so a
    step's Clip-Cov draw depends only on (seed, step) — identical on every process and after resuming."""
    if not isinstance(seed, int) or not isinstance(step, int) or step < 0:
        raise ValueError(f"seed must be an int and step an int >= 0, got seed={seed!r}, step={step!r}")
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + step)


def gather_window(batch: WindowBatch, accelerator=None) -> tuple[WindowBatch, int]:
    """All-gather ``batch`` across processes (rank order), each padded to the widest T first (mask False).

    Args:
      batch: this process's window; accelerator: an ``accelerate.Accelerator`` (None or one process:
        returned unchanged).
    Returns:
      (the gathered ``[R·W·B, T]`` window, this process's row offset r·W·B).
    Raises:
      ValueError: the processes hold different numbers of rows (TRL splits generation batches evenly).
    """
    if accelerator is None or accelerator.num_processes == 1:
        return batch, 0
    rows = torch.tensor([batch.mask.shape[0]], device=batch.mask.device)
    all_rows = accelerator.gather(rows)
    if bool((all_rows != rows).any()):
        raise ValueError(f"processes hold different numbers of window rows: {all_rows.tolist()}")
    parts = []
    for t, fill in ((batch.log_prob, 0.0), (batch.old_log_prob, 0.0), (batch.advantages, 0.0),
                    (batch.mask.to(torch.uint8), 0)):
        parts.append(accelerator.gather(accelerator.pad_across_processes(t, dim=1, pad_index=fill)))
    gathered = WindowBatch(parts[0], parts[1], parts[2], parts[3].bool(), batch.rows_per_micro_batch)
    return gathered, accelerator.process_index * batch.mask.shape[0]


def select_window(batch: WindowBatch, *, objective: str, params: dict, generator: torch.Generator,
                  accelerator=None) -> WindowSelection:
    """Clip-Cov / KL-Cov selection over the whole optimizer step (module docstring):
    ``compute_cov_stats`` of the all-gathered window, with this process's place in it.

    Args:
      batch: this process's window (:class:`WindowBatch`); objective / params: the objective's registry
        name and hyperparameters; generator: :func:`selection_generator` of the step (same on every
        process); accelerator: as :func:`gather_window`.
    Returns:
      :class:`WindowSelection`.
    """
    if batch.rows_per_micro_batch < 1 or batch.mask.shape[0] % batch.rows_per_micro_batch:
        raise ValueError(f"window rows {batch.mask.shape[0]} are not a multiple of the micro-batch rows "
                         f"{batch.rows_per_micro_batch}")
    full, offset = gather_window(batch, accelerator)
    stats = compute_cov_stats(full.log_prob, full.old_log_prob, full.advantages, full.mask,
                              objective=objective, generator=generator, **params)
    return WindowSelection(stats, offset, batch.rows_per_micro_batch, batch.mask.shape[1])


def micro_batch_stats(sel: WindowSelection, position: int) -> CovStats:
    """The :class:`CovStats` of micro-batch ``position`` (0-based within the window) of this process: the
    global means/N/quota and its ``[B, T_r]`` block of ``stats.selected``."""
    b = sel.rows_per_micro_batch
    start = sel.row_offset + position * b
    stats = sel.stats
    if stats.selected is None:
        return stats
    if position < 0 or start + b > stats.selected.shape[0]:
        raise ValueError(f"micro-batch position {position} lies outside the selected window")
    return replace(stats, selected=stats.selected[start:start + b, :sel.local_width])
