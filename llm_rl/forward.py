"""The policy's forward pass on rollout rows: the one place that turns token rows into response logits.

Every consumer of the logits of a rollout's response positions goes through :func:`response_logits`:
re-scoring (:func:`llm_rl.rollout.score`: log-probs and entropy of π_old, π_θ, π_ref), the
differentiable entropy of the entropy bonus (:mod:`llm_rl.update`) and the probe states of the
entropy-dynamics diagnostics (:func:`llm_rl.diagnostics.state_logits`). Positions are
:func:`position_ids_from_mask`, as in generation (:func:`llm_rl.rollout.generate`), so a re-scoring
pass sees exactly the positions the sampler saw.
"""

from __future__ import annotations

import torch


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """``cumsum(mask) - 1`` clamped at 0: positions that ignore left padding."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


def response_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int
                    ) -> torch.Tensor:
    """Logits ``[B, R, V]`` whose position t predicts response token t of each row.

    Runs ``model`` once (no KV cache) on rows of ``P + R`` columns, keeping only the last ``R + 1``
    logit positions (``logits_to_keep``) and dropping the final one, which predicts past the response.

    Args:
      model: a Hugging Face causal LM.
      input_ids: ``[B, P + R]`` left-padded prompt columns, then response columns.
      attention_mask: ``[B, P + R]``, 0 on left padding.
      prompt_len: P (>= 1); there must be at least one response column (R >= 1).
    Returns:
      the model's logits, in its output dtype (bfloat16 under a CUDA autocast; callers cast), with the
      autograd graph when gradients are enabled.
    """
    if input_ids.dim() != 2 or input_ids.shape != attention_mask.shape:
        raise ValueError("input_ids and attention_mask must both be [B, L] with the same shape")
    R = input_ids.shape[1] - prompt_len
    if R < 1 or prompt_len < 1:
        raise ValueError(f"need prompt_len >= 1 and at least one response column, got P={prompt_len}, R={R}")
    out = model(input_ids=input_ids, attention_mask=attention_mask,
                position_ids=position_ids_from_mask(attention_mask), use_cache=False, logits_to_keep=R + 1)
    return out.logits[:, :-1]


def gather_states(per_rows, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int,
                  state_rows: torch.Tensor, state_cols: torch.Tensor, *, micro_batch: int = 16,
                  temperature: float = 1.0) -> torch.Tensor:
    """``[S, V]`` (float32, CPU) of ``per_rows`` at the response positions ``(state_rows[i], state_cols[i])``,
    divided by ``temperature``: ``per_rows(ids, mask)`` maps micro-batches of ``micro_batch`` distinct rows,
    each cut after the last probed column of the micro-batch (a causal model's earlier positions do not
    see later tokens), to ``[b, R', V]`` per response position (logits, or their forward-mode change).

    Args:
      input_ids, attention_mask: ``[B, P + R]``; prompt_len: P; state_rows, state_cols: ``[S]`` long.
    """
    if state_rows.shape != state_cols.shape or state_rows.dim() != 1 or len(state_rows) == 0:
        raise ValueError("state_rows and state_cols must be non-empty 1-D tensors of one length")
    rows = torch.unique(state_rows)
    out = None
    for a in range(0, len(rows), micro_batch):
        rb = rows[a:a + micro_batch]
        width = prompt_len + int(state_cols[torch.isin(state_rows, rb)].max()) + 1
        idx = rb.to(input_ids.device)
        vals = per_rows(input_ids[idx, :width], attention_mask[idx, :width])  # [b, R', V]
        if out is None:
            out = torch.empty(len(state_rows), vals.shape[-1], dtype=torch.float32)
        for j, r in enumerate(rb.tolist()):
            sel = (state_rows == r).nonzero().flatten()
            out[sel] = vals[j, state_cols[sel].to(vals.device)].detach().float().cpu() / temperature
    return out
