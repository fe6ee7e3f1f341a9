"""Entropy-dynamics diagnostics of one optimizer step of a neural policy, state by state.

For a probe set of token states s (prefixes) with logits z_s before and z'_s after one optimizer step, and
every token sampled at s in the mini-batch (every response through that prefix: token a_i, advantage A_i,
aggregation weight w_i of the loss), this measures (Cui et al. 2025 §3; docs/theory.md §1.2-1.9, §1.17):

==================  ==========================================================  =====================
per-state quantity  definition                                                  reference
==================  ==========================================================  =====================
``dH_obs``          H(z') − H(z), full vocabulary, float64 reductions           observed
``dH_first``        −Cov_π(log π, z' − z)   (on the *measured* Δz: an identity  Lemma 1
                    check of the Taylor expansion, true for any small Δz)
``dH_second``       first − ½[Var_π δ + E_π((ℓ + H)(δ − E δ)²)]                 docs/theory.md §1.4
``dH_lin``          −Cov_π(log π, J_s Δθ), Δθ the step taken                    §1.17 (linearised)
``dH_own``          part of dH_lin produced by the samples at s                 §1.17
``dH_cross``        part produced by the other tokens of the mini-batch         §1.17
``dH_hist``         part produced by optimizer history (momentum, decay)        §1.17
``dH_thm1``         η Σ_{i at s} w_i (−A_i)(S_{a_i} − E_π S), S_b = π_b(ℓ_b+H)  Theorem 1, §1.8
``dH_thm2``         η Σ_{i at s} w_i (−A_i)(ℓ_{a_i} + H)                        Theorem 2 (per sample)
==================  ==========================================================  =====================

The theorem predictions use only the update rule and the data the update used: η is the optimizer's step
size where it has one (plain SGD: lr times the clipping factor) and otherwise a per-step fit constrained to
η >= 0, so a prediction of the wrong sign cannot score (its fitted η is 0). The decomposition terms come
from :mod:`llm_rl.decomposition`. Every vocabulary reduction goes through ``theory.vocab_stats`` (one
chunked pass; memory bounded by a chunk, not [states × V]).

Per-step summary keys (``diag/*`` in the metrics JSONL) are listed in :data:`SUMMARY_KEYS`; the per-run
summary is :func:`llm_rl.diagnostics_summary.summarize_run`.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext

import torch

from rundir.diagnostics_files import save_per_state
from theory import covariance_decomposition, token_covariance
from theory.agreement import nonneg_scale, pearson, r2, sign_accuracy
from theory.vocab_stats import default_chunk_rows, vocab_stats

from . import decomposition as dec
from .diagnostics_summary import summarize_run
from .distributed import all_reduce_sum_
from .forward import gather_states, response_logits
from .metrics import DIAG_KEYS as SUMMARY_KEYS
from .metrics import TOP_PERCENTS

__all__ = ["SUMMARY_KEYS", "TOP_PERCENTS", "StepProbe", "diagnose_step", "probe_states", "state_logits",
           "summarize_run", "top_percent_means"]


def probe_states(input_ids: torch.Tensor, response_mask: torch.Tensor, prompt_len: int, *,
                 max_states: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The probe set of a batch of responses: up to ``max_states`` unique states (prompt + response prefix),
    the first met walking the response positions in a seeded random order, and *every* response position of
    the batch at each of them (the responses that share the prefix). Vectorised: O(B·R) work and memory.

    Args:
      input_ids: ``[B, P + R]`` prompt (left-padded) + response ids; response_mask: ``[B, R]`` bool.
      prompt_len: P; max_states: cap on probed states (>= 1); generator: CPU generator of the order.
    Returns:
      dict with ``state_rows, state_cols`` ``[S]`` (first position of each state, in batch order),
      ``rows, cols, state_index`` ``[N]`` (every position at a probed state, row-major) and
      ``state_of`` ``[B, R]`` (the state of each position, −1 where not probed).
    """
    if max_states < 1:
        raise ValueError(f"max_states must be >= 1, got {max_states}")
    mask = response_mask.cpu().bool()
    ids = input_ids.cpu().long()
    if ids.dim() != 2 or mask.shape != (ids.shape[0], ids.shape[1] - prompt_len):
        raise ValueError("input_ids must be [B, P + R] and response_mask [B, R]")
    # a state is (prompt, response tokens before t): keyed by the prompt's id, t and two independent
    # 64-bit polynomial hashes of the response prefix (wrap-around arithmetic; a collision of both needs
    # ~2^-64 luck), computed for every position at once instead of comparing prefixes
    _, prompt_id = torch.unique(ids[:, :prompt_len], dim=0, return_inverse=True)
    resp = ids[:, prompt_len:] + 1
    n_rows, n_cols = resp.shape
    hashes = torch.zeros(2, n_rows, n_cols, dtype=torch.long)
    h = torch.zeros(2, n_rows, dtype=torch.long)
    mult = torch.tensor([[1_000_003], [998_244_353]], dtype=torch.long)
    for t in range(n_cols):
        hashes[:, :, t] = h
        h = h * mult + resp[:, t]
    pos = mask.nonzero()  # [N_all, 2], row-major
    r, t = pos[:, 0], pos[:, 1]
    keys = torch.stack([prompt_id[r], t, hashes[0, r, t], hashes[1, r, t]], 1)
    _, sid = torch.unique(keys, dim=0, return_inverse=True)  # state id of every position
    n_all, n_ids = len(sid), int(sid.max()) + 1 if len(sid) else 0
    first = torch.full((n_ids,), n_all, dtype=torch.long).scatter_reduce(
        0, sid, torch.arange(n_all), "amin")  # first position (batch order) of each state
    if n_ids > max_states:  # the first max_states states met walking the positions in a seeded order
        order = torch.randperm(n_all, generator=generator)
        met = torch.full((n_ids,), n_all, dtype=torch.long).scatter_reduce(
            0, sid[order], torch.arange(n_all), "amin")
        chosen = torch.zeros(n_ids, dtype=torch.bool)
        chosen[met.argsort()[:max_states]] = True
    else:
        chosen = torch.ones(n_ids, dtype=torch.bool)
    kept = chosen.nonzero().flatten()
    kept = kept[first[kept].argsort()]  # states numbered in batch order of their first position
    number = torch.full((n_ids,), -1, dtype=torch.long)
    number[kept] = torch.arange(len(kept))
    at = number[sid]
    sample_pos, state_index = pos[at >= 0], at[at >= 0]
    state_of = torch.full(mask.shape, -1, dtype=torch.long)
    state_of[sample_pos[:, 0], sample_pos[:, 1]] = state_index
    reps = pos[first[kept]].reshape(-1, 2)
    return {"rows": sample_pos[:, 0], "cols": sample_pos[:, 1], "state_index": state_index,
            "state_rows": reps[:, 0], "state_cols": reps[:, 1], "state_of": state_of}


@torch.no_grad()
def state_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int,
                 state_rows: torch.Tensor, state_cols: torch.Tensor, *, micro_batch: int = 16,
                 autocast=None, temperature: float = 1.0) -> torch.Tensor:
    """Full-vocabulary logits ``[S, V]`` (float32, CPU, no grad) of the sampling policy, ``z / T``, at
    response positions ``(state_rows[i], state_cols[i])`` of rows ``[B, P + R]``
    (:func:`llm_rl.forward.response_logits` in micro-batches of ``micro_batch`` distinct rows; no
    autocast unless ``autocast`` is given: the probe runs in the weights' precision)."""
    def per_rows(ids, am):
        with autocast or torch.autocast(ids.device.type, enabled=False):
            return response_logits(model, ids, am, prompt_len)

    return gather_states(per_rows, input_ids, attention_mask, prompt_len, state_rows, state_cols,
                         micro_batch=micro_batch, temperature=temperature)


class StepProbe:
    """One diagnosed optimizer step, captured around it.

    Without decomposition (``decompose=False``, e.g. the TRL callback): the probe-state logits are taken
    at construction (before the step) and :meth:`finish` takes them again after it. With decomposition
    (the trainer): the caller runs the mini-batch's gradient accumulation inside :meth:`capture` (loss
    gradients at the probed logits, :class:`llm_rl.decomposition.LogitGradCapture`), calls
    :meth:`before_step` after all-reduce and clipping, right before ``optimizer.step()`` (on every rank:
    it all-reduces the captured gradients), then :meth:`finish` (main rank).

    Args:
      model: the policy; input_ids ``[b, P + R]``, attention_mask ``[b, P + R]``, response_mask ``[b, R]``,
      advantages ``[b, R]`` and groups ``[b]`` (prompt id of each row) of the mini-batch; prompt_len: P;
      max_states / generator: the probe set (:func:`probe_states`); autocast: context of the logits
      passes (default none: the weights' precision); weights: ``[b, R]`` aggregation weight of each token
      in the mini-batch loss (default 1); temperature: the rollout temperature; decompose: see above;
      dist: the trainer's DistInfo (decomposition only).
    """

    def __init__(self, model, input_ids, attention_mask, response_mask, prompt_len, advantages, groups, *,
                 max_states: int, generator: torch.Generator, autocast=None, weights=None,
                 temperature: float = 1.0, decompose: bool = False, dist=None):
        t0 = time.perf_counter()
        self.p = probe_states(input_ids, response_mask, prompt_len, max_states=max_states,
                              generator=generator)
        self.inputs = (input_ids, attention_mask, prompt_len)
        self.autocast, self.temperature = autocast, temperature
        rows, cols = self.p["rows"], self.p["cols"]
        self.tokens = input_ids.cpu()[rows, prompt_len + cols]
        self.adv = advantages.detach().cpu()[rows, cols]
        self.weights = (torch.ones_like(self.adv) if weights is None
                        else weights.detach().cpu().to(self.adv.dtype)[rows, cols])
        self.groups = groups.cpu()[rows]
        self.dist, self.lin, self.terms, self.grad_entropy = dist, None, None, None
        self.grads = (dec.LogitGradCapture(model, self.p["state_of"], len(self.p["state_rows"]))
                      if decompose else None)
        self.z_old = None if decompose else self._logits(model)
        self.seconds = time.perf_counter() - t0

    def _logits(self, model):
        return state_logits(model, *self.inputs, self.p["state_rows"], self.p["state_cols"],
                            autocast=self.autocast, temperature=self.temperature)

    def capture(self):
        """Context manager around the mini-batch's gradient accumulation (a no-op without decomposition);
        inside it, call :meth:`set_rows` before each micro-batch's loss."""
        return self.grads.active() if self.grads is not None else nullcontext()

    def set_rows(self, rows: torch.Tensor) -> None:
        """Mini-batch-local row indices ``[b]`` of the coming micro-batch."""
        if self.grads is not None:
            self.grads.set_rows(rows)

    def before_step(self, model, optimizer, clip_coef: float) -> None:
        """At θ_before, after all-reduce and clipping: all-reduce the captured loss gradients (every rank),
        then on the main rank the step's affine form and the per-state own / cross / history terms."""
        if self.grads is None:
            return
        t0 = time.perf_counter()
        u = self.grads.u
        if u is None:  # no probed position reached this rank's backward
            u = torch.zeros(len(self.p["state_rows"]), model.get_output_embeddings().weight.shape[0])
        if self.dist is not None and self.dist.enabled:
            dev = next(model.parameters()).device
            u = all_reduce_sum_(u.to(dev), self.dist).cpu()
        if self.dist is None or self.dist.is_main:
            params = list(model.parameters())
            self.lin = dec.linearise_step(optimizer, params, clip_coef)
            self.z_old, self.terms, self.grad_entropy = dec.per_state_terms(
                model, *self.inputs, self.p["state_rows"], self.p["state_cols"], u * self.temperature,
                self.lin, temperature=self.temperature)
        self.seconds += time.perf_counter() - t0

    def finish(self, model, run_dir=None, step: int = 0) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        """Diagnose the step just taken (call right after ``optimizer.step()``); with ``run_dir``, also
        save the per-state arrays as step ``step``. The summary includes ``time/diagnose_s``, the wall
        time of everything the probe did."""
        t0 = time.perf_counter()
        if self.z_old is None:
            raise ValueError("StepProbe.finish before before_step: no logits were taken before the step")
        decomposition, step_size = None, None
        if self.terms is not None:
            params = list(model.parameters())
            if self.grad_entropy is not None:
                lin = {"lin": dec.linearised_from_gradients(self.grad_entropy, self.lin, params)}
            else:
                lin = {"dz_lin": dec.linearised_change(model, self.lin, *self.inputs, self.p["state_rows"],
                                                       self.p["state_cols"], temperature=self.temperature)}
            decomposition = {**self.terms, **lin, "recon_err": dec.reconstruction_error(self.lin, params)}
            step_size = self.lin.step_size
        summary, per_state = diagnose_step(self.z_old, self._logits(model), self.tokens, self.adv,
                                           self.p["state_index"], self.groups, weights=self.weights,
                                           decomposition=decomposition, step_size=step_size)
        if run_dir is not None:
            save_per_state(run_dir, step, per_state)
        summary["time/diagnose_s"] = self.seconds + time.perf_counter() - t0
        return summary, per_state


def _median_rel_err(obs, pred) -> float:
    keep = obs != 0
    return float(((obs - pred).abs()[keep] / obs.abs()[keep]).median()) if keep.any() else float("nan")


def top_percent_means(cov: torch.Tensor, percents=TOP_PERCENTS) -> dict[float, float]:
    """Mean of the largest ``p``% of ``cov`` (at least one value) for each p — the paper's Table 1."""
    if cov.dim() != 1 or cov.numel() == 0:
        raise ValueError("cov must be a non-empty 1-D tensor")
    srt = torch.sort(cov.double(), descending=True).values
    return {p: float(srt[: max(1, math.floor(srt.numel() * p / 100))].mean()) for p in percents}


def _vocab_pass(logits_old, logits_new, chunk):
    f64 = torch.float64
    parts_old, parts_new = [], []
    for a in range(0, logits_old.shape[0], chunk):
        zo, zn = logits_old[a:a + chunk].to(f64), logits_new[a:a + chunk].to(f64)
        parts_old.append(vocab_stats(zo, zn - zo, chunk_rows=chunk))
        parts_new.append(vocab_stats(zn, chunk_rows=chunk))
    cat = lambda parts: {k: torch.cat([p[k] for p in parts]).double() for k in parts[0]}  # noqa: E731
    return cat(parts_old), cat(parts_new)


def _decomposition_summary(obs, per_state, decomposition) -> dict[str, float]:
    """``diag/*`` of the own / cross / history / linearised terms (see :data:`SUMMARY_KEYS`)."""
    own, grad, hist = (decomposition[k].double() for k in ("own", "grad", "hist"))
    o = obs.numpy()
    cross = grad - own
    lin = per_state["dH_lin"]
    per_state.update(dH_own=own, dH_cross=cross, dH_hist=hist)
    total = float((own.abs() + cross.abs() + hist.abs()).sum())
    share = (lambda x: float(x.abs().sum()) / total) if total > 0 else (lambda x: float("nan"))
    lin_abs = float(lin.abs().sum())
    return {
        "diag/dH_lin_sum": float(lin.sum()), "diag/dH_own_sum": float(own.sum()),
        "diag/dH_cross_sum": float(cross.sum()), "diag/dH_hist_sum": float(hist.sum()),
        "diag/share_own": share(own), "diag/share_cross": share(cross), "diag/share_hist": share(hist),
        "diag/recon_err": float(decomposition["recon_err"]),
        "diag/sum_gap": abs(float((own + cross + hist).sum() - lin.sum())) / lin_abs if lin_abs > 0
        else float("nan"),
        "diag/r2_lin": r2(o, lin.numpy()), "diag/r2_own": r2(o, own.numpy()),
        "diag/sign_acc_lin": sign_accuracy(o, lin.numpy()),
        "diag/sign_acc_own": sign_accuracy(o, own.numpy()),
    }


def diagnose_step(
    logits_old: torch.Tensor,
    logits_new: torch.Tensor,
    tokens: torch.Tensor,
    advantages: torch.Tensor,
    state_index: torch.Tensor,
    groups: torch.Tensor,
    *,
    weights: torch.Tensor | None = None,
    decomposition: dict | None = None,
    step_size: float | None = None,
    chunk_rows: int | None = None,
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Diagnose one optimizer step on ``S`` unique probe states visited by ``N`` samples.

    Args:
      logits_old, logits_new: ``[S, V]`` logits of each unique state before / after the step.
      tokens: ``[N]`` int, the token sampled at each sample's state.
      advantages: ``[N]`` float, the advantage of each sample.
      state_index: ``[N]`` int in [0, S): which unique state each sample was taken at (samples that share
        a prefix, e.g. the first token of every response to one prompt, share a state).
      groups: ``[N]`` int prompt/group id of each sample, for the within/between covariance split.
      weights: ``[N]`` aggregation weight w_i of each sample in the loss (default 1).
      decomposition: optional per-state ``own, grad, hist`` ``[S]`` (reverse mode), the linearised change
        as ``lin`` ``[S]`` (ΔH_lin) or ``dz_lin`` ``[S, V]`` (J_s Δθ), and ``recon_err``
        (:mod:`llm_rl.decomposition`).
      step_size: η of the Theorem-1 prediction when the optimizer has one (plain SGD); None: fitted, η >= 0.
      chunk_rows: rows per chunk of the vocabulary pass.
    Returns:
      (summary ``{diag/*: float}``, per-state ``{name: [S] tensor}``: ``entropy, dH_obs, dH_first,
      dH_second, dH_thm1, dH_thm2`` and, with ``decomposition``, ``dH_lin, dH_own, dH_cross, dH_hist``).
    """
    if logits_old.shape != logits_new.shape or logits_old.dim() != 2:
        raise ValueError("logits_old and logits_new must share one [S, V] shape")
    n = tokens.shape[0]
    weights = torch.ones(n, dtype=torch.float64) if weights is None else weights
    for name, t in (("advantages", advantages), ("state_index", state_index), ("groups", groups),
                    ("weights", weights)):
        if t.shape != (n,):
            raise ValueError(f"{name} must have shape [{n}] like tokens, got {tuple(t.shape)}")
    n_states = logits_old.shape[0]
    if n_states == 0 or n == 0:
        raise ValueError("nothing to diagnose: no probe states / samples")
    if state_index.min() < 0 or state_index.max() >= n_states:
        raise ValueError(f"state_index must lie in [0, {n_states})")
    if step_size is not None and not step_size > 0:
        raise ValueError(f"step_size must be > 0 or None, got {step_size!r}")
    # float64 reductions (ΔH of one small step is ~1e-6, below float32 rounding of H itself), in row
    # chunks so that at most a chunk of float64 [rows, V] copies exists at once
    chunk = chunk_rows or default_chunk_rows(logits_old.shape[-1], logits_old.device)
    st_old, st_new = _vocab_pass(logits_old, logits_new, chunk)
    h = st_old["entropy"]
    obs = st_new["entropy"] - h
    first, second = st_old["first_order"], st_old["second_order"]

    # per-sample Theorem-1 discriminator S_a − E_π S (E_π S = Σ π²(ℓ + H)) and Theorem-2's ℓ_a + H
    idx = state_index.long()
    z_tok = logits_old[idx].gather(-1, tokens.long()[:, None]).squeeze(-1)  # logit of each sampled token
    logp_tok = z_tok.double() - st_old["log_z"][idx]
    e_s = st_old["sum_p2_logp"] + h * st_old["sum_p2"]
    adv, w = advantages.double(), weights.double()
    per1 = -w * adv * (logp_tok.exp() * (logp_tok + h[idx]) - e_s[idx])
    per2 = -w * adv * (logp_tok + h[idx])
    unit1 = torch.zeros(n_states, dtype=torch.float64).index_add_(0, idx, per1)
    unit2 = torch.zeros(n_states, dtype=torch.float64).index_add_(0, idx, per2)
    o, u1, u2 = obs.numpy(), unit1.numpy(), unit2.numpy()
    eta1 = float(step_size) if step_size is not None else nonneg_scale(o, u1)  # η >= 0
    eta2 = nonneg_scale(o, u2)
    thm1, thm2 = eta1 * unit1, eta2 * unit2

    # batch covariances over the probe tokens (Eq. 10, Theorem-1 proxy) and their within/between split
    mask = torch.ones(1, n, dtype=torch.bool)
    cov10 = token_covariance(logp_tok[None], adv[None], mask)[0]
    cov_thm1 = token_covariance(logp_tok[None], (logp_tok.exp() * adv)[None], mask)[0]
    split = covariance_decomposition(logp_tok, adv, groups.long()) if n > 1 else None

    var_first = ((first - first.mean()) ** 2).sum()
    per_state = {"entropy": h, "dH_obs": obs, "dH_first": first, "dH_second": second,
                 "dH_thm1": thm1, "dH_thm2": thm2}
    summary = {
        "diag/states": float(n_states),
        "diag/samples": float(n),
        "diag/dH_obs_sum": float(obs.sum()),
        "diag/dH_first_sum": float(first.sum()),
        "diag/dH_second_sum": float(second.sum()),
        "diag/r2_first": r2(o, first.numpy()),
        "diag/r2_second": r2(o, second.numpy()),
        "diag/slope_first": float(((first - first.mean()) * (obs - obs.mean())).sum() / var_first)
        if var_first > 0 else float("nan"),
        "diag/sign_acc_first": sign_accuracy(o, first.numpy()),
        "diag/sign_acc_second": sign_accuracy(o, second.numpy()),
        "diag/rel_err_first": _median_rel_err(obs, first),
        "diag/rel_err_second": _median_rel_err(obs, second),
        "diag/eta_thm1": eta1, "diag/eta_thm2": eta2,
        "diag/eta_thm1_from_lr": float(step_size is not None),
        "diag/r2_thm1": r2(o, thm1.numpy()), "diag/r2_thm2": r2(o, thm2.numpy()),
        "diag/corr_thm1": pearson(o, u1), "diag/corr_thm2": pearson(o, u2),
        "diag/sign_acc_thm1": sign_accuracy(o, u1), "diag/sign_acc_thm2": sign_accuracy(o, u2),
        "diag/cov_eq10": float(cov10.mean()),
        "diag/cov_thm1": float(cov_thm1.mean()),
        "diag/cov_within": float(split["within"]) if split else float("nan"),
        "diag/cov_between": float(split["between"]) if split else float("nan"),
    }
    for p, v in top_percent_means(cov10).items():
        summary[f"diag/cov_top_{p:g}pct"] = v
    if decomposition is not None:
        if "lin" in decomposition:
            per_state["dH_lin"] = decomposition["lin"].double()
        else:  # −Cov_π(ℓ, Δz_lin), row by row
            logp = logits_old.double() - st_old["log_z"][:, None]
            dz = decomposition["dz_lin"].double()
            per_state["dH_lin"] = -((logp.exp() * (logp + h[:, None])) * dz).sum(-1)
        summary.update(_decomposition_summary(obs, per_state, decomposition))
    return summary, per_state
