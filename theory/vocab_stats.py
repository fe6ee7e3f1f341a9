"""Full-vocabulary reductions of LLM logits in one chunked pass, with bounded extra memory.

For token states with logits z ∈ ℝ^V (V ≈ 1.5·10⁵ for Qwen) and, optionally, a logit change δ, one pass
over row chunks computes per row:

    log Z = logsumexp(z)                    H = −Σ π ℓ                    (paper Eq. 5, per token)
    Σ π²                                    Σ π² ℓ                        (collision prob., discriminator E_π S = Σ π²(ℓ + H))
    −Cov_π(ℓ, δ)                            (Lemma 1, first-order ΔH)
    −½ [Var_π(δ) + E_π((ℓ + H)(δ − E_π δ)²)] (second-order term, theory.md §1.4)

Naive equivalent (what :func:`vocab_stats_reference` computes in float64, materialising [rows, V]):
``ell = log_softmax(z); p = ell.exp(); H = -(p*ell).sum(-1)``, ``theory.first_order_entropy_change(z, δ)``
and ``theory.second_order_entropy_change(z, δ)``. The chunked pass never holds more than a few
``[chunk_rows, V]`` float32 temporaries; ``compiled=True`` fuses the chunk body with ``torch.compile``
(falls back to eager when compilation is unavailable).

All moments are taken on shifted logits z − max z, which keeps float32 sums accurate.
"""

from __future__ import annotations

import functools
import warnings

import torch

from ._checks import check_float_tensor, check_same_shape

STAT_NAMES = ("log_z", "entropy", "sum_p2", "sum_p2_logp")
STEP_STAT_NAMES = ("first_order", "second_order")


def _chunk_body(z: torch.Tensor, d: torch.Tensor | None):
    """Reductions for one chunk ``z [r, V]`` (compute dtype), optional ``d [r, V]``."""
    m = z.amax(-1, keepdim=True)
    zc = z - m  # ≤ 0, −inf at masked entries
    e = torch.exp(zc)
    s = e.sum(-1, keepdim=True)
    log_s = torch.log(s)
    p = e / s
    ell = torch.where(p > 0, zc - log_s, torch.zeros_like(zc))  # ℓ, 0 where π = 0 (masked)
    pl = p * ell
    h = -pl.sum(-1)
    out = [(m + log_s).squeeze(-1), h, (p * p).sum(-1), (p * pl).sum(-1)]
    if d is not None:
        d = torch.where(p > 0, d, torch.zeros_like(d))
        ed = (p * d).sum(-1, keepdim=True)
        dc = d - ed
        lh = ell + h.unsqueeze(-1)  # ℓ + H (E_π[ℓ + H] = 0)
        pdc = p * dc
        first = -(lh * pdc).sum(-1)
        var = (pdc * dc).sum(-1)
        coskew = (lh * pdc * dc).sum(-1)
        out += [first, first - 0.5 * (var + coskew)]
    return tuple(out)


@functools.lru_cache(maxsize=None)
def _compiled_body():
    return torch.compile(_chunk_body, dynamic=False)


def _check(logits, delta):
    check_float_tensor(logits, "logits", min_dim=2, allow_neg_inf=True)
    if logits.dim() != 2:
        raise ValueError(f"logits must be [rows, V], got shape {tuple(logits.shape)}; flatten leading dims")
    if logits.shape[-1] < 1 or torch.isneginf(logits).all(-1).any():
        raise ValueError("every row of logits needs at least one finite entry")
    if delta is not None:
        check_float_tensor(delta, "delta", min_dim=2)
        check_same_shape(logits, delta, "logits", "delta")


def default_chunk_rows(vocab: int, budget_elems: int = 1 << 22) -> int:
    """Rows per chunk so that one ``[rows, V]`` float32 temporary holds ≈ ``budget_elems`` (16 MiB)."""
    return max(1, budget_elems // max(vocab, 1))


def vocab_stats(
    logits: torch.Tensor,
    delta: torch.Tensor | None = None,
    *,
    chunk_rows: int | None = None,
    compiled: bool = False,
    compute_dtype: torch.dtype | None = None,
) -> dict[str, torch.Tensor]:
    """Per-row vocabulary reductions in one chunked pass (see module docstring for the formulas).

    Args:
      logits: ``[rows, V]`` (float16/bfloat16/float32/float64; ``-inf`` = masked entry).
      delta: optional ``[rows, V]`` logit change (e.g. z_new − z_old after an optimizer step).
      chunk_rows: rows per chunk (default: :func:`default_chunk_rows`).
      compiled: fuse the chunk body with ``torch.compile`` (same results up to float rounding).
      compute_dtype: float32 or float64; default float32 (float64 if given float64). Use float64 when
        differences of entropies matter: float32 entropies carry ~1e-7 relative rounding, as large as the
        entropy change of a small optimizer step.
    Returns:
      dict of ``[rows]`` tensors: ``log_z, entropy, sum_p2, sum_p2_logp`` and, with ``delta``,
      ``first_order, second_order`` (predicted ΔH), in the compute dtype.
    """
    _check(logits, delta)
    rows, vocab = logits.shape
    chunk = chunk_rows or default_chunk_rows(vocab)
    if chunk < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk}")
    dtype = compute_dtype or (torch.float64 if logits.dtype == torch.float64 else torch.float32)
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"compute_dtype must be torch.float32 or torch.float64, got {dtype}")
    body = _chunk_body
    if compiled:
        try:
            body = _compiled_body()
        except Exception as err:  # pragma: no cover - depends on the toolchain
            warnings.warn(f"torch.compile unavailable ({err}); using the eager chunk body", stacklevel=2)
    names = STAT_NAMES + (STEP_STAT_NAMES if delta is not None else ())
    out = {k: torch.empty(rows, dtype=dtype, device=logits.device) for k in names}
    for start in range(0, rows, chunk):
        sl = slice(start, min(start + chunk, rows))
        z = logits[sl].to(dtype)
        d = None if delta is None else delta[sl].to(dtype)
        if compiled and z.shape[0] != chunk:  # pad the tail so the compiled kernel sees one shape
            pad = chunk - z.shape[0]
            z = torch.cat([z, z.new_zeros(pad, vocab)])
            d = None if d is None else torch.cat([d, d.new_zeros(pad, vocab)])
        res = body(z, d)
        n = sl.stop - sl.start
        for k, v in zip(names, res):
            out[k][sl] = v[:n]
    return out


def vocab_stats_reference(logits: torch.Tensor, delta: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The naive float64 formulas :func:`vocab_stats` must equal (materialises ``[rows, V]``)."""
    from .entropy_dynamics import first_order_entropy_change, second_order_entropy_change

    _check(logits, delta)
    z = logits.double()
    ell = torch.log_softmax(z, -1)
    p = ell.exp()
    ell0 = torch.where(p > 0, ell, torch.zeros_like(ell))
    out = {
        "log_z": torch.logsumexp(z, -1),
        "entropy": -(p * ell0).sum(-1),
        "sum_p2": (p * p).sum(-1),
        "sum_p2_logp": (p * p * ell0).sum(-1),
    }
    if delta is not None:
        out["first_order"] = first_order_entropy_change(z, delta.double())
        out["second_order"] = second_order_entropy_change(z, delta.double())
    return out
