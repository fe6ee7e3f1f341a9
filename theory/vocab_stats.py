"""Full-vocabulary reductions of LLM logits in one chunked pass, with bounded extra memory.

For token states with logits z ∈ ℝ^V (V ≈ 1.5·10⁵ for Qwen) and, optionally, a logit change δ, one pass
over row chunks computes per row:

    log Z = logsumexp(z)                    H = −Σ π ℓ                    (paper Eq. 5, per token)
    Σ π²                                    Σ π² ℓ                        (collision prob., discriminator
                                                                           E_π S = Σ π²(ℓ + H))
    −Cov_π(ℓ, δ)                            (Lemma 1, first-order ΔH)
    −½ [Var_π(δ) + E_π((ℓ + H)(δ − E_π δ)²)] (second-order term, docs/theory.md §1.4)

Naive equivalent (what :func:`vocab_stats_reference` computes in float64, materialising [rows, V]):
``ell = log_softmax(z); p = ell.exp(); H = -(p*ell).sum(-1)``, ``theory.first_order_entropy_change(z, δ)``
and ``theory.second_order_entropy_change(z, δ)``. The chunked pass rewrites all of them through eight
raw moments of e = exp(z − max z) (:func:`_tile_moments`, :func:`_stats_from_moments`): per element one
max, one exp and eight streaming sums. Row chunks, split into vocabulary tiles in eager mode, bound the
extra memory to 1.5 ``[chunk_rows, V]`` buffers. ``compiled=True`` fuses the moment sums with
``torch.compile`` into one loop over the row after the max, close to the cost of one ``logsumexp``
(benchmarks/diagnostics_cost.py); it falls back to eager when compilation is unavailable.

Accuracy: every product is formed from z − max z ≤ 0 and from δ − δ[argmax z], so neither a large logit
offset nor a common shift of δ (softmax-invariant) enters a cancellation.
"""

from __future__ import annotations

import functools
import warnings

import torch

from ._checks import check_float_tensor, check_same_shape

STAT_NAMES = ("log_z", "entropy", "sum_p2", "sum_p2_logp")
STEP_STAT_NAMES = ("first_order", "second_order")


def _tile_moments(z, d, m, d_ref, dtype: torch.dtype) -> torch.Tensor:
    """Raw moments of one ``[r, Vt]`` tile of logits ``z`` (and logit change ``d``), in ``dtype``.

    With the row max ``m`` and δ_ref = δ[argmax z] of the whole row, u = z − m ≤ 0, e = exp(u) and
    δ' = δ − δ_ref, returns ``[r, 4]`` (``[r, 8]`` with ``d``) sums over the tile's columns:

        Σ e,  Σ e u,  Σ e²,  Σ e² u  [,  Σ e δ',  Σ e u δ',  Σ e δ'²,  Σ e u δ'²]

    Sums over disjoint tiles add up to the row's sums. Masked (−inf) entries are clamped to −1e30, where
    e = 0 and every product is 0. Buffers: u (→ e·u → e·u·δ'), e (→ e·δ'), δ', each ``[r, Vt]``.
    """
    u = z.to(dtype, copy=True)
    u.sub_(m).clamp_min_(-1e30)
    e = torch.exp(u)
    eu = u.mul_(e)
    cols = [e.sum(-1), eu.sum(-1), _dot(e, e), _dot(eu, e)]
    if d is not None:
        dd = d.to(dtype, copy=True).sub_(d_ref)
        cols += [_dot(e, dd), _dot(eu, dd), _dot(e.mul_(dd), dd), _dot(eu.mul_(dd), dd)]
    return torch.stack(cols, -1)


def _stats_from_moments(m: torch.Tensor, mom: torch.Tensor) -> list[torch.Tensor]:
    """Per-row statistics from the row max ``m [r]`` and the summed raw moments ``mom [r, 4|8]``.

    With s = Σ e (π = e / s, ℓ = u − log s), a = Σ e u / s = E_π u, μ = E_π δ':

        log Z = m + log s        H = log s − a        Σ π² = Σ e² / s²
        Σ π² ℓ = (Σ e² u − log s · Σ e²) / s²
        Cov_π(ℓ, δ) = Σ e u δ' / s − a μ                Var_π(δ) = Σ e δ'² / s − μ²
        E_π[(ℓ + H)(δ − E_π δ)²] = Σ e u δ'² / s − a Σ e δ'² / s − 2 μ Cov_π(ℓ, δ)

    (ℓ + H = u − a). Returns ``[log_z, entropy, sum_p2, sum_p2_logp(, first_order, second_order)]``.
    """
    s, log_s = mom[:, 0], torch.log(mom[:, 0])
    a = mom[:, 1] / s
    out = [m + log_s, log_s - a, mom[:, 2] / s**2, (mom[:, 3] - log_s * mom[:, 2]) / s**2]
    if mom.shape[1] == 8:
        mu = mom[:, 4] / s
        cov = mom[:, 5] / s - a * mu
        m2 = mom[:, 6] / s
        coskew = mom[:, 7] / s - a * m2 - 2 * mu * cov
        out += [-cov, -cov - 0.5 * ((m2 - mu * mu) + coskew)]
    return out


def _dot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Row-wise Σ_v x y for ``[r, V]`` inputs. Eager on CPU: one BLAS dot per row (fastest there, and no
    ``[r, V]`` temporary); otherwise ``vecdot``, which ``torch.compile`` fuses into the row loop."""
    if x.device.type == "cpu" and not torch.compiler.is_compiling():
        return torch.stack([torch.dot(a, b) for a, b in zip(x, y)])
    return torch.linalg.vecdot(x, y)


@functools.lru_cache(maxsize=None)
def _compiled_moments():
    return torch.compile(_tile_moments, dynamic=False)


def _compiled_with_fallback():
    """The compiled moment function; if compiling fails (no C++ compiler, unsupported device, ...), warn
    once and use the eager one for the rest of the call."""
    fn = None

    def call(*args):
        nonlocal fn
        if fn is None:
            try:
                return _compiled_moments()(*args)
            except Exception as err:  # pragma: no cover - depends on the toolchain
                warnings.warn(f"torch.compile failed ({type(err).__name__}: {err}); using the eager pass",
                              stacklevel=3)
                fn = _tile_moments
        return fn(*args)

    return call


def _check(logits, delta, *, values: bool = True):
    """Type, rank and shape checks; with ``values`` also the full NaN/inf/masked-row scan."""
    check_float_tensor(logits if values else logits[:0], "logits", min_dim=2, allow_neg_inf=True)
    if logits.dim() != 2:
        raise ValueError(f"logits must be [rows, V], got shape {tuple(logits.shape)}; flatten leading dims")
    if logits.shape[-1] < 1 or (values and torch.isneginf(logits).all(-1).any()):
        raise ValueError("every row of logits needs at least one finite entry")
    if delta is not None:
        check_float_tensor(delta if values else delta[:0], "delta", min_dim=2)
        check_same_shape(logits, delta, "logits", "delta")


def _raise_for_bad_rows(logits, delta, out) -> None:
    """Value check after the pass: NaN/±inf inputs (and all-masked rows) make their row's results
    non-finite, so a full scan is needed only on those rows, to name the problem."""
    finite = torch.stack([torch.isfinite(v) for v in out.values()]).all(0)
    if bool(finite.all()):
        return
    bad = (~finite).nonzero().squeeze(-1)
    _check(logits[bad], None if delta is None else delta[bad])
    raise ValueError(f"non-finite result in {bad.numel()} row(s) (first: row {int(bad[0])}) although the "
                     "inputs are finite: values too large for the compute dtype; "
                     "use compute_dtype=torch.float64")


def default_chunk_rows(
    vocab: int, device: torch.device | str | None = None, budget_elems: int | None = None
) -> int:
    """Rows per chunk so that one ``[rows, V]`` float32 temporary holds about ``budget_elems`` elements.

    Default budget: 2^20 elements (4 MiB, cache-sized: the eager CPU pass re-reads each chunk several
    times) on CPU, 2^24 (64 MiB) on accelerators, where fewer, larger launches matter more.
    """
    if budget_elems is None:
        budget_elems = 1 << 20 if torch.device(device or "cpu").type == "cpu" else 1 << 24
    return max(1, budget_elems // max(vocab, 1))


def vocab_stats(
    logits: torch.Tensor,
    delta: torch.Tensor | None = None,
    *,
    chunk_rows: int | None = None,
    compiled: bool = False,
    compute_dtype: torch.dtype | None = None,
    vocab_tiles: int | None = None,
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
      vocab_tiles: split each chunk's columns into this many tiles (default 2 in eager mode, where a
        tile holds three ``[chunk_rows, V / tiles]`` buffers, so the peak extra memory is 1.5 chunks of
        ``[chunk_rows, V]``; 1 when ``compiled``, whose fused loop holds no ``[rows, V]`` buffer).
    Returns:
      dict of ``[rows]`` tensors: ``log_z, entropy, sum_p2, sum_p2_logp`` and, with ``delta``,
      ``first_order, second_order`` (predicted ΔH), in the compute dtype.
    """
    _check(logits, delta, values=False)  # value checks: after the pass, on non-finite rows only
    rows, vocab = logits.shape
    chunk = chunk_rows or default_chunk_rows(vocab, logits.device)
    if chunk < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk}")
    dtype = compute_dtype or (torch.float64 if logits.dtype == torch.float64 else torch.float32)
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"compute_dtype must be torch.float32 or torch.float64, got {dtype}")
    tiles = (1 if compiled else 2) if vocab_tiles is None else vocab_tiles
    if not isinstance(tiles, int) or tiles < 1:
        raise ValueError(f"vocab_tiles must be an int >= 1, got {tiles!r}")
    width = -(-vocab // tiles)
    moments = _compiled_with_fallback() if compiled else _tile_moments
    names = STAT_NAMES + (STEP_STAT_NAMES if delta is not None else ())
    out = {k: torch.empty(rows, dtype=dtype, device=logits.device) for k in names}
    for start in range(0, rows, chunk):
        sl = slice(start, min(start + chunk, rows))
        z = logits[sl]
        d = None if delta is None else delta[sl]
        if compiled and z.shape[0] != chunk:  # pad the tail so the compiled kernel sees one shape
            pad = chunk - z.shape[0]
            z = torch.cat([z, z.new_zeros(pad, vocab)])
            d = None if d is None else torch.cat([d, d.new_zeros(pad, vocab)])
        m, arg = z.max(-1, keepdim=True)  # exact in the input dtype; NaN rows stay NaN
        m = m.to(dtype)
        d_ref = None if d is None else d.gather(-1, arg).to(dtype)
        mom = sum(moments(z[:, c:c + width], None if d is None else d[:, c:c + width], m, d_ref, dtype)
                  for c in range(0, vocab, width))
        n = sl.stop - sl.start
        for k, v in zip(names, _stats_from_moments(m.squeeze(-1), mom)):
            out[k][sl] = v[:n]
    _raise_for_bad_rows(logits, delta, out)
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
