"""Entropy-dynamics diagnostics of one optimizer step of a neural policy, state by state.

For a probe set of token states s (prefixes), with logits z_s before and z'_s after one optimizer step,
the sampled token a_s and its advantage A_s, this measures (Cui et al. 2025 §3; docs/theory.md §1.2-1.9):

==================  ==========================================================  ===================
per-state quantity  definition                                                  reference
==================  ==========================================================  ===================
``dH_obs``          H(z') − H(z), full vocabulary                               exact
``dH_first``        −Cov_π(log π, z' − z)                                       Lemma 1
``dH_second``       first − ½[Var_π δ + E_π((ℓ + H)(δ − E δ)²)]                 docs/theory.md §1.4
``tab_unit``        −Σ_{i at s} A_i (S_{a_i} − E_π S),  S_b = π_b(log π_b + H)  docs/theory.md §1.8
``dH_tab``          η_eff · tab_unit, η_eff fitted per step by least squares    tabular theory
==================  ==========================================================  ===================

``tab_unit`` is the tabular (no function approximation) first-order prediction at unit step size: it
ignores that a shared network moves states it did not sample. Every vocabulary reduction goes through
``theory.vocab_stats`` (one chunked pass; memory bounded by a chunk, not [states × V]).

Per-step summary keys (``diag/*`` in the metrics JSONL) are listed in :data:`SUMMARY_KEYS`.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from rundir.diagnostics_files import load_per_state, save_per_state
from rundir.records import read_records
from theory import covariance_decomposition, token_covariance
from theory.vocab_stats import default_chunk_rows, vocab_stats

from .forward import response_logits
from .metrics import DIAG_KEYS as SUMMARY_KEYS
from .metrics import TOP_PERCENTS


__all__ = ["SUMMARY_KEYS", "TOP_PERCENTS", "StepProbe", "diagnose_step", "probe_states", "r2_score",
           "state_logits",
           "summarize_run", "top_percent_means"]


def probe_states(input_ids: torch.Tensor, response_mask: torch.Tensor, prompt_len: int, *,
                 max_states: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The probe set of a batch of responses: every response token position (a seeded subsample of
    ``max_states`` positions when there are more), grouped into unique states by their prefix.

    Args:
      input_ids: ``[B, P + R]`` prompt (left-padded) + response ids; response_mask: ``[B, R]`` bool.
      prompt_len: P; max_states: cap on sampled positions; generator: CPU generator of the subsample.
    Returns:
      dict with ``rows, cols`` ``[N]`` (sample positions), ``state_index`` ``[N]`` (into the unique
      states) and ``state_rows, state_cols`` ``[S]`` (one representative position per state).
    """
    if max_states < 1:
        raise ValueError(f"max_states must be >= 1, got {max_states}")
    pos = response_mask.nonzero().cpu()  # [N, 2]
    if pos.shape[0] > max_states:
        keep = torch.randperm(pos.shape[0], generator=generator)[:max_states].sort().values
        pos = pos[keep]
    ids = input_ids.cpu()
    index, reps, state_index = {}, [], []
    for r, t in pos.tolist():
        key = (ids[r, : prompt_len + t].numpy().tobytes())  # the prefix is the state
        if key not in index:
            index[key] = len(reps)
            reps.append((r, t))
        state_index.append(index[key])
    reps_t = torch.tensor(reps, dtype=torch.long).reshape(-1, 2)
    return {"rows": pos[:, 0], "cols": pos[:, 1], "state_index": torch.tensor(state_index, dtype=torch.long),
            "state_rows": reps_t[:, 0], "state_cols": reps_t[:, 1]}


@torch.no_grad()
def state_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int,
                 state_rows: torch.Tensor, state_cols: torch.Tensor, *, micro_batch: int = 16,
                 autocast=None) -> torch.Tensor:
    """Full-vocabulary logits ``[S, V]`` (float32, CPU, no grad) at response positions
    ``(state_rows[i], state_cols[i])`` of rows ``[B, P + R]`` (:func:`llm_rl.forward.response_logits`
    in micro-batches of ``micro_batch`` distinct rows, under ``autocast`` when given)."""
    rows = torch.unique(state_rows)
    out = None
    for s in range(0, len(rows), micro_batch):
        rb = rows[s:s + micro_batch].to(input_ids.device)
        with autocast or nullcontext():
            logits = response_logits(model, input_ids[rb], attention_mask[rb], prompt_len)  # [b, R, V]
        if out is None:
            out = torch.empty(len(state_rows), logits.shape[-1], dtype=torch.float32)
        for j, r in enumerate(rb.tolist()):
            sel = (state_rows == r).nonzero().flatten()
            out[sel] = logits[j, state_cols[sel].to(logits.device)].float().cpu()
    return out


class StepProbe:
    """Logits of a mini-batch's probe states captured before one optimizer step; :meth:`finish`
    captures them again after the step and runs :func:`diagnose_step`.

    Args:
      model: the policy; input_ids ``[b, P + R]``, attention_mask ``[b, P + R]``, response_mask ``[b, R]``,
      advantages ``[b, R]`` and groups ``[b]`` (prompt id of each row) of the mini-batch; prompt_len: P;
      max_states / generator: probe subsample (see :func:`probe_states`); autocast: the trainer's context.
    """

    def __init__(self, model, input_ids, attention_mask, response_mask, prompt_len, advantages, groups, *,
                 max_states: int, generator: torch.Generator, autocast=None):
        t0 = time.perf_counter()
        self.p = probe_states(input_ids, response_mask, prompt_len, max_states=max_states,
                              generator=generator)
        self.inputs, self.autocast = (input_ids, attention_mask, prompt_len), autocast
        self.z_old = self._logits(model)
        rows, cols = self.p["rows"], self.p["cols"]
        self.tokens = input_ids.cpu()[rows, prompt_len + cols]
        self.adv = advantages.detach().cpu()[rows, cols]
        self.groups = groups.cpu()[rows]
        self.seconds = time.perf_counter() - t0

    def _logits(self, model):
        return state_logits(model, *self.inputs, self.p["state_rows"], self.p["state_cols"],
                            autocast=self.autocast)

    def finish(self, model, run_dir=None, step: int = 0) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        """Diagnose the step just taken (call right after ``optimizer.step()``); with ``run_dir``, also
        save the per-state arrays as step ``step``. The summary includes ``time/diagnose_s``, the wall
        time of the probe before the step, this call and the save."""
        t0 = time.perf_counter()
        summary, per_state = diagnose_step(self.z_old, self._logits(model), self.tokens, self.adv,
                                           self.p["state_index"], self.groups)
        if run_dir is not None:
            save_per_state(run_dir, step, per_state)
        summary["time/diagnose_s"] = self.seconds + time.perf_counter() - t0
        return summary, per_state


def r2_score(obs, pred) -> float:
    """R² = 1 − Σ(obs − pred)² / Σ(obs − mean obs)² of a prediction taken as is (torch or numpy 1-D);
    NaN when obs is constant."""
    sst = ((obs - obs.mean()) ** 2).sum()
    return float(1 - ((obs - pred) ** 2).sum() / sst) if sst > 0 else float("nan")


def _sign_acc(obs, pred) -> float:
    return float((torch.sign(obs) == torch.sign(pred)).double().mean())


def _median_rel_err(obs, pred) -> float:
    keep = obs != 0
    return float(((obs - pred).abs()[keep] / obs.abs()[keep]).median()) if keep.any() else float("nan")


def top_percent_means(cov: torch.Tensor, percents=TOP_PERCENTS) -> dict[float, float]:
    """Mean of the largest ``p``% of ``cov`` (at least one value) for each p — the paper's Table 1."""
    if cov.dim() != 1 or cov.numel() == 0:
        raise ValueError("cov must be a non-empty 1-D tensor")
    srt = torch.sort(cov.double(), descending=True).values
    return {p: float(srt[: max(1, math.floor(srt.numel() * p / 100))].mean()) for p in percents}


def diagnose_step(
    logits_old: torch.Tensor,
    logits_new: torch.Tensor,
    tokens: torch.Tensor,
    advantages: torch.Tensor,
    state_index: torch.Tensor,
    groups: torch.Tensor,
    *,
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
      chunk_rows: rows per chunk of the vocabulary pass.
    Returns:
      (summary ``{diag/*: float}``, per-state ``{name: [S] tensor}`` with ``dH_obs, dH_first, dH_second,
      tab_unit, dH_tab, entropy``).
    """
    if logits_old.shape != logits_new.shape or logits_old.dim() != 2:
        raise ValueError("logits_old and logits_new must share one [S, V] shape")
    n = tokens.shape[0]
    for name, t in (("advantages", advantages), ("state_index", state_index), ("groups", groups)):
        if t.shape != (n,):
            raise ValueError(f"{name} must have shape [{n}] like tokens, got {tuple(t.shape)}")
    n_states = logits_old.shape[0]
    if n_states == 0 or n == 0:
        raise ValueError("nothing to diagnose: no probe states / samples")
    if n and (state_index.min() < 0 or state_index.max() >= n_states):
        raise ValueError(f"state_index must lie in [0, {n_states})")
    # float64 reductions (ΔH of one small step is ~1e-6, below float32 rounding of H itself), in row
    # chunks so that at most a chunk of float64 [rows, V] copies exists at once
    f64 = torch.float64
    chunk = chunk_rows or default_chunk_rows(logits_old.shape[-1], logits_old.device)
    parts_old, parts_new = [], []
    for a in range(0, n_states, chunk):
        zo, zn = logits_old[a:a + chunk].to(f64), logits_new[a:a + chunk].to(f64)
        parts_old.append(vocab_stats(zo, zn - zo, chunk_rows=chunk))
        parts_new.append(vocab_stats(zn, chunk_rows=chunk))
    st_old = {k: torch.cat([p[k] for p in parts_old]) for k in parts_old[0]}
    st_new = {k: torch.cat([p[k] for p in parts_new]) for k in parts_new[0]}
    h = st_old["entropy"].double()
    obs = st_new["entropy"].double() - h
    first, second = st_old["first_order"].double(), st_old["second_order"].double()

    # per-sample discriminator S_a − E_π S, with E_π S = Σ π²(ℓ + H) = sum_p2_logp + H·sum_p2
    idx = state_index.long()
    z_tok = logits_old[idx].gather(-1, tokens.long()[:, None]).squeeze(-1)  # logit of each sampled token
    logp_tok = z_tok.double() - st_old["log_z"].double()[idx]
    s_a = logp_tok.exp() * (logp_tok + h[idx])
    e_s = st_old["sum_p2_logp"].double() + h * st_old["sum_p2"].double()
    adv = advantages.double()
    per_sample = -adv * (s_a - e_s[idx])
    tab_unit = torch.zeros(n_states, dtype=torch.float64).index_add_(0, idx, per_sample)
    denom = (tab_unit**2).sum()
    eta_eff = float((obs * tab_unit).sum() / denom) if denom > 0 else float("nan")
    dh_tab = eta_eff * tab_unit

    # batch covariances over the probe tokens (Eq. 10, Theorem-1 proxy) and their within/between split
    mask = torch.ones(1, n, dtype=torch.bool)
    cov10 = token_covariance(logp_tok[None], adv[None], mask)[0]
    cov_thm1 = token_covariance(logp_tok[None], (logp_tok.exp() * adv)[None], mask)[0]
    split = covariance_decomposition(logp_tok, adv, groups.long()) if n > 1 else None

    var_first = ((first - first.mean()) ** 2).sum()
    summary = {
        "diag/states": float(n_states),
        "diag/dH_obs_sum": float(obs.sum()),
        "diag/dH_first_sum": float(first.sum()),
        "diag/dH_second_sum": float(second.sum()),
        "diag/dH_tab_sum": float(dh_tab.sum()),
        "diag/r2_first": r2_score(obs, first),
        "diag/r2_second": r2_score(obs, second),
        "diag/r2_tab": r2_score(obs, dh_tab),
        "diag/slope_first": float(((first - first.mean()) * (obs - obs.mean())).sum() / var_first)
        if var_first > 0 else float("nan"),
        "diag/corr_tab": float(torch.corrcoef(torch.stack([obs, tab_unit]))[0, 1])
        if n_states > 1 else float("nan"),
        "diag/eta_eff": eta_eff,
        "diag/sign_acc_first": _sign_acc(obs, first),
        "diag/sign_acc_second": _sign_acc(obs, second),
        "diag/sign_acc_tab": _sign_acc(obs, dh_tab),
        "diag/rel_err_first": _median_rel_err(obs, first),
        "diag/rel_err_second": _median_rel_err(obs, second),
        "diag/cov_eq10": float(cov10.mean()) if n else float("nan"),
        "diag/cov_thm1": float(cov_thm1.mean()) if n else float("nan"),
        "diag/cov_within": float(split["within"]) if split else float("nan"),
        "diag/cov_between": float(split["between"]) if split else float("nan"),
    }
    if n:
        for p, v in top_percent_means(cov10).items():
            summary[f"diag/cov_top_{p:g}pct"] = v
    per_state = {"entropy": h, "dH_obs": obs, "dH_first": first, "dH_second": second,
                 "tab_unit": tab_unit, "dH_tab": dh_tab}
    return summary, per_state


# ----------------------------------------------------------------------------------------------------
# run-directory storage and the per-run summary (`entropy-mech diagnose RUN_DIR`)
# ----------------------------------------------------------------------------------------------------

def summarize_run(run_dir) -> dict[str, float]:
    """Per-run summary over every diagnosed step: medians of the per-step ``diag/*`` values, pooled
    R² of the Lemma-1 / second-order / tabular predictions over all stored states (dominated by the
    largest updates, e.g. Adam's first step, where the second-order term matters most), and the η_eff
    trend."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise ValueError(f"{run_dir} has no metrics.jsonl: not a run directory of `entropy-mech train`")
    rows = [r for r in read_records(path) if "diag/states" in r]
    if not rows:
        raise ValueError(f"{run_dir} has no diagnosed steps: train with --diagnose-every K")

    def med(key):
        vals = np.array([r[key] for r in rows if key in r and r[key] is not None], dtype=float)
        vals = vals[np.isfinite(vals)]
        return float(np.median(vals)) if vals.size else float("nan")

    eta = np.array([r.get("diag/eta_eff", np.nan) for r in rows], dtype=float)
    out = {
        "diagnosed_steps": float(len(rows)),
        "median_rel_err_first": med("diag/rel_err_first"),
        "median_rel_err_second": med("diag/rel_err_second"),
        "median_r2_first": med("diag/r2_first"),
        "median_r2_second": med("diag/r2_second"),
        "median_r2_tab": med("diag/r2_tab"),
        "median_corr_tab": med("diag/corr_tab"),
        "median_sign_acc_first": med("diag/sign_acc_first"),
        "median_sign_acc_tab": med("diag/sign_acc_tab"),
        "eta_eff_first": float(eta[0]),
        "eta_eff_last": float(eta[-1]),
    }
    states = load_per_state(run_dir)
    if states:
        obs = np.concatenate([s["dH_obs"] for s in states.values()]).astype(float)
        for name in ("dH_first", "dH_second", "dH_tab"):
            pred = np.concatenate([s[name] for s in states.values()]).astype(float)
            out[f"pooled_r2_{name[3:]}"] = r2_score(obs, pred)
    return out
