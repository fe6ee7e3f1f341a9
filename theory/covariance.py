"""The batch covariance of paper Eq. 10 — what Clip-Cov and KL-Cov rank tokens by — and its
decomposition into within-state and between-state parts (docs/theory.md §1.9); the response-level
covariance of paper §3.3, Eqs. 8-9 (:func:`response_covariance`, docs/theory.md §1.16).

Shapes: ``log_probs``, ``advantages`` and ``mask`` are token-level ``[B, T]`` (any shape works; means
are over every unmasked entry passed in).
"""

from __future__ import annotations

import torch

from ._checks import check_float_tensor, check_mask, check_same_shape, compute_dtype
from .aggregation import masked_mean


def token_covariance(log_probs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token centred products of paper Eq. 10:

        Cov(y_i) = (log π(y_i) − mean_j log π(y_j)) · (A_i − mean_j A_j),

    with means over the unmasked tokens. Their mean is the (biased, (N−1)/N) sample estimate of the
    NPG covariance Cov_π(ℓ, A) of Theorem 2 — not the PG covariance of Theorem 1 — when every token
    shares one state; across states it pools (see :func:`covariance_decomposition`).

    Args:
      log_probs: ``[B, T]`` log π of the sampled tokens (masked entries may be anything finite).
      advantages: ``[B, T]``; mask: ``[B, T]`` bool or 0/1.
    Returns:
      ``[B, T]`` products, exactly 0 at masked tokens. Gradients are not blocked (detach if needed).
    """
    check_float_tensor(log_probs, "log_probs")
    check_float_tensor(advantages, "advantages")
    check_same_shape(log_probs, advantages, "log_probs", "advantages")
    m = check_mask(mask, log_probs)
    dtype = compute_dtype(log_probs, advantages)
    lp, adv, mf = log_probs.to(dtype), advantages.to(dtype), m.to(dtype)
    lp = torch.where(m, lp, torch.zeros_like(lp))
    adv = torch.where(m, adv, torch.zeros_like(adv))
    cov = (lp - masked_mean(lp, m)) * (adv - masked_mean(adv, m))  # all-masked: means are 0, no error
    return cov * mf


def covariance_decomposition(
    log_probs: torch.Tensor, advantages: torch.Tensor, state_ids: torch.Tensor,
    weights: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Law of total covariance for a batch of samples pooled over states (docs/theory.md §1.9 item 3):

        Cov_pooled(ℓ, A) = E_s[Cov(ℓ, A | s)] + Cov_s(E[ℓ | s], E[A | s]),

    with every moment taken under the empirical (optionally ``weights``-weighted) distribution of the
    batch. The between-state term has nothing to do with Lemma 1; the within-state term is what the
    per-state theory speaks about.

    Args:
      log_probs, advantages: ``[N]`` per-sample values; state_ids: integer ``[N]`` state labels;
      weights: optional non-negative ``[N]`` sample weights (default uniform).
    Returns:
      dict with scalar tensors ``pooled``, ``within``, ``between`` (pooled == within + between) and
      ``per_state`` ``[S]`` within-state covariances, S = max(state_ids) + 1 (0 for absent states).
    """
    check_float_tensor(log_probs, "log_probs", min_dim=1)
    check_float_tensor(advantages, "advantages", min_dim=1)
    check_same_shape(log_probs, advantages, "log_probs", "advantages")
    if log_probs.dim() != 1:
        raise ValueError("covariance_decomposition expects flat [N] inputs; flatten the batch first")
    if not isinstance(state_ids, torch.Tensor) or state_ids.dtype not in (torch.int32, torch.int64):
        raise ValueError("state_ids must be an integer torch.Tensor")
    check_same_shape(state_ids, log_probs, "state_ids", "log_probs")
    if (state_ids < 0).any():
        raise ValueError("state_ids must be non-negative")
    dtype = compute_dtype(log_probs, advantages)
    lp, adv = log_probs.to(dtype), advantages.to(dtype)
    w = torch.ones_like(lp) if weights is None else check_float_tensor(weights, "weights").to(dtype)
    check_same_shape(w, lp, "weights", "log_probs")
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be non-negative with a positive sum")
    w = w / w.sum()
    ids = state_ids.long()
    n_states = int(ids.max()) + 1

    def seg(x):  # Σ_{i in s} x_i                                                     [S]
        return torch.zeros(n_states, dtype=dtype, device=lp.device).index_add_(0, ids, x)

    p_s = seg(w)
    safe = p_s.clamp_min(torch.finfo(dtype).tiny)
    mean_lp_s, mean_adv_s = seg(w * lp) / safe, seg(w * adv) / safe
    lp_c, adv_c = lp - mean_lp_s[ids], adv - mean_adv_s[ids]
    per_state = torch.where(p_s > 0, seg(w * lp_c * adv_c) / safe, torch.zeros_like(p_s))
    within = (p_s * per_state).sum()
    mlp, madv = (w * lp).sum(), (w * adv).sum()
    between = (p_s * (mean_lp_s - mlp) * (mean_adv_s - madv)).sum()
    pooled = (w * (lp - mlp) * (adv - madv)).sum()
    return {"pooled": pooled, "within": within, "between": between, "per_state": per_state}


RESPONSE_FORMS = ("pg", "npg")
"""what the response log-likelihood is paired with: ``pg`` π(y|x)·A (paper Eq. 8, Theorem 1), ``npg`` A
(Theorem 2, the pairing of Eq. 10)"""


def response_covariance(token_log_probs: torch.Tensor, mask: torch.Tensor, advantages: torch.Tensor,
                        group_ids: torch.Tensor, form: str = "pg") -> dict[str, torch.Tensor]:
    """The response-level covariance of paper §3.3 (Eqs. 8-9; docs/theory.md §1.16), per group and batch.

    Bandit view: the state is the prompt x, the action a whole response y. With the length-normalised
    response log-likelihood (Eq. 9)

        ℓ(y) = (1/|y|) Σ_t log π(y_t | y_<t, x),

    the group covariance over the K responses of one prompt (Eq. 8) is the population (1/K) form

        Cov_g = mean_{y in g}[(ℓ(y) − mean_g ℓ)(u(y) − mean_g u)],  u(y) = exp(ℓ(y))·A(y)  (``pg``)
                                                                    u(y) = A(y)            (``npg``),

    and the batch value is the mean of Cov_g over the groups ("group-wise covariance for each prompt,
    averaged across a batch of prompts"). π(y|x) in Eq. 8 is read as exp of the normalised ℓ (the paper
    does not say; docs/paper.md §4).

    Args:
      token_log_probs: ``[B, T]`` log π of each response token (masked entries may be anything finite).
      mask: ``[B, T]`` bool or 0/1, the response tokens; every row needs at least one.
      advantages: ``[B]`` the response (sequence) advantage A(y).
      group_ids: ``[B]`` integer prompt id of each response (ids need not be contiguous).
      form: one of :data:`RESPONSE_FORMS`.
    Returns:
      dict with ``per_group`` ``[G]`` (groups in ascending id order), ``group_ids`` ``[G]``,
      ``batch_mean`` (scalar: mean of ``per_group``) and ``log_lik`` ``[B]`` (ℓ of each response).
      Groups of one response have covariance 0.
    """
    if form not in RESPONSE_FORMS:
        raise ValueError(f"form must be one of {RESPONSE_FORMS}, got {form!r}")
    check_float_tensor(token_log_probs, "token_log_probs")
    if token_log_probs.dim() != 2:
        raise ValueError(f"token_log_probs must be [B, T], got shape {tuple(token_log_probs.shape)}")
    m = check_mask(mask, token_log_probs)
    check_float_tensor(advantages, "advantages")
    b = token_log_probs.shape[0]
    if advantages.shape != (b,):
        raise ValueError(f"advantages must have shape [{b}] (one per response), "
                         f"got {tuple(advantages.shape)}")
    if not isinstance(group_ids, torch.Tensor) or group_ids.dtype not in (torch.int32, torch.int64):
        raise ValueError("group_ids must be an integer torch.Tensor")
    if group_ids.shape != (b,):
        raise ValueError(f"group_ids must have shape [{b}], got {tuple(group_ids.shape)}")
    if b == 0:
        raise ValueError("no responses")
    lengths = m.sum(-1)
    if bool((lengths == 0).any()):
        raise ValueError("every response needs at least one unmasked token (a row of mask is all False)")
    dtype = compute_dtype(token_log_probs, advantages)
    zero = torch.zeros((), dtype=dtype, device=token_log_probs.device)
    lp = torch.where(m, token_log_probs.to(dtype), zero)
    ell = lp.sum(-1) / lengths.to(dtype)                                                  # Eq. 9, [B]
    adv = advantages.to(dtype)
    u = ell.exp() * adv if form == "pg" else adv
    uniq, inv = torch.unique(group_ids.long(), return_inverse=True)
    n_g = uniq.numel()

    def seg_mean(x):  # mean over each group's responses                                       [G]
        s = torch.zeros(n_g, dtype=dtype, device=x.device).index_add_(0, inv, x)
        c = torch.zeros(n_g, dtype=dtype, device=x.device).index_add_(0, inv, torch.ones_like(x))
        return s / c

    per_group = seg_mean((ell - seg_mean(ell)[inv]) * (u - seg_mean(u)[inv]))
    return {"per_group": per_group, "group_ids": uniq, "batch_mean": per_group.mean(), "log_lik": ell}
