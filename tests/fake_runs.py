"""Synthetic run directories for tests and demos (no training): LLM-style ``metrics.jsonl`` +
``config.json`` that follow the paper's law exactly, and tiny seeded simulator runs.

The LLM fixture's entropy decays as H(t) = H_end + (H0 − H_end)·exp(−t/τ) and its validation accuracy is
R = −a·exp(H) + b (Cui et al. 2025, Eq. 6) plus optional seeded noise (``val/acc_t1`` 0.05 lower);
its covariance is
−ΔH/η, so Cov and −ΔH agree exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rundir.files import atomic_write_json


def write_llm_run(out, *, objective: str = "grpo", seed: int = 0, steps: int = 60, val_every: int = 3,
                  a: float = 0.3, b: float = 0.9, h0: float = 1.0, h_end: float = 0.1, tau: float = 10.0,
                  noise: float = 0.0, size_name: str | None = None, size: int | None = None,
                  params: dict | None = None, entropy_coef: float = 0.0, ref_kl_coef: float = 0.0,
                  resp_len: float = 5.0, tags: dict | None = None, diagnose_every: int = 0) -> Path:
    """Write a hand-made LLM run directory and return it. With ``diagnose_every`` > 0, every such step
    also carries real :func:`llm_rl.diagnostics.diagnose_step` output on seeded random logits."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.arange(steps + 1)
    H = h_end + (h0 - h_end) * np.exp(-t / tau)
    cfg = {"steps": steps, "seed": seed, "model": "", "data": {"task": "arithmetic"},
           "objective": {"name": objective, "params": params or {}, "entropy_coef": entropy_coef,
                         "ref_kl_coef": ref_kl_coef}}
    atomic_write_json(out / "config.json", {"config": cfg, "environment": {}})
    lines = []
    for s in range(steps + 1):
        rec = {"step": int(s)}
        if s < steps:
            rec.update({"entropy/train": float(H[s]), "cov/batch_mean": float((H[s] - H[s + 1]) / 0.1),
                        "rollout/response_len": resp_len + 0.01 * s, "reward/raw_mean": 0.2 + 0.005 * s})
        if diagnose_every and s < steps and s % diagnose_every == 0:
            rec.update(_diagnosed(out, s, rng))
        if s % val_every == 0 or s == steps:
            rec["val/acc"] = float(-a * np.exp(H[s]) + b + noise * rng.standard_normal())
            rec["val/acc_t1"] = rec["val/acc"] - 0.05
        lines.append(json.dumps(rec))
    (out / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    spec_tags = dict(tags or {})
    if size_name:
        spec_tags["size_name"] = size_name
    if size:
        spec_tags["size"] = size
    if spec_tags:
        atomic_write_json(out / "spec.json", {"tags": spec_tags})
    return out


TERMS = ("own", "cross", "history")
"""decomposition terms of /tmp/iface12.md, keyed as in ``summarize_run(...)["decomposition"]``"""
ARRAYS = {"own": "dH_own", "cross": "dH_cross", "history": "dH_hist"}


def fake_states(rng, states: int = 24, vocab: int = 7, mode: str = "own") -> dict[str, np.ndarray]:
    """Per-state arrays of one synthetic diagnosed update, following the decomposition interface: exact
    ``dH_obs`` and Lemma 1 / second order of seeded random logits and a small logit step; ``dH_own``,
    ``dH_cross``, ``dH_hist`` (summing to ``dH_lin``) split ``dH_first`` with the own-state term dominant
    (``mode="own"``) or the cross-state term dominant and the own term unrelated (``mode="cross"``);
    ``dH_thm1`` / ``dH_thm2`` follow the own term. ``dH_tab`` is kept for readers of old run folders."""
    import torch

    from theory import entropy_step_report

    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    z = torch.randn(states, vocab, generator=g, dtype=torch.float64) * 2
    rep = entropy_step_report(z, 0.01 * torch.randn(states, vocab, generator=g, dtype=torch.float64))
    obs, first = rep["exact"].numpy(), rep["first_order"].numpy()
    noise = lambda scale: scale * np.abs(first).mean() * rng.standard_normal(states)  # noqa: E731
    if mode == "own":
        own, cross = 0.85 * first + noise(0.05), 0.1 * first + noise(0.05)
    elif mode == "cross":
        own, cross = noise(0.1), first.copy()
    else:
        raise ValueError(f"mode must be 'own' or 'cross', got {mode!r}")
    hist = first - own - cross + noise(0.01)
    thm = own * 1.1 + noise(0.02)
    return {"entropy": rep["entropy"].numpy(), "dH_obs": obs, "dH_first": first,
            "dH_second": rep["second_order"].numpy(), "dH_lin": own + cross + hist, "dH_own": own,
            "dH_cross": cross, "dH_hist": hist, "dH_thm1": thm, "dH_thm2": 0.5 * thm, "dH_tab": thm,
            "tab_unit": thm}


def _diagnosed(out: Path, step: int, rng, states: int = 24) -> dict:
    """``diag/*`` keys of one synthetic diagnosed update (the per-state file is written too)."""
    from theory.agreement import r2, sign_accuracy
    from rundir.diagnostics_files import save_per_state

    s = fake_states(rng, states)
    save_per_state(out, step, s)
    obs, first = s["dH_obs"], s["dH_first"]
    cov = np.sort(rng.standard_normal(4 * states) ** 3)[::-1]
    summary = {"diag/states": float(states), "diag/r2_first": r2(obs, first),
               "diag/r2_second": r2(obs, s["dH_second"]), "diag/sign_acc_first": sign_accuracy(obs, first),
               "diag/rel_err_first": float(np.median(np.abs(obs - first) / np.abs(obs))),
               "diag/rel_err_second": float(np.median(np.abs(obs - s["dH_second"]) / np.abs(obs))),
               "diag/eta_eff": 1.0, "diag/r2_tab": r2(obs, s["dH_tab"]), "diag/corr_tab": 0.9,
               "diag/sign_acc_tab": sign_accuracy(obs, s["dH_tab"])}
    for p in (0.02, 0.2, 2.0, 20.0, 50.0, 100.0):
        summary[f"diag/cov_top_{p:g}pct"] = float(cov[: max(1, int(cov.size * p / 100))].mean())
    return summary


def decomposition(per_step: list[dict[str, np.ndarray]], *, flip: str = "", shuffle: str = "",
                  seed: int = 0, eta_source: str = "fitted per step, eta >= 0") -> dict:
    """``summarize_run(...)["decomposition"]`` of /tmp/iface12.md computed from per-state arrays, with the
    term or prediction named by ``flip`` ("own", "theorem", "linearised", ...) sign-flipped or by
    ``shuffle`` permuted across states before scoring (for tests that a wrong input fails the rows)."""
    from theory.agreement import agreement

    rng = np.random.default_rng(seed)
    cat = {k: np.concatenate([s[k] for s in per_step]).astype(float) for k in per_step[0]}
    names = {**ARRAYS, "linearised": "dH_lin", "theorem": "dH_thm1", "theorem2": "dH_thm2"}
    pred = {}
    for name, key in names.items():
        x = cat[key]
        x = -x if flip == name else x
        pred[name] = rng.permutation(x) if shuffle == name else x
    total = sum(np.abs(cat[ARRAYS[t]]).sum() for t in TERMS)
    out: dict = {"steps": len(per_step), "states": int(cat["dH_obs"].size)}
    for name, x in pred.items():
        fit = name.startswith("theorem")
        a = agreement(cat["dH_obs"], x, fit_eta=fit and eta_source.startswith("fitted"), seed=seed)
        d = {"r2": a.r2, "r2_ci": list(a.r2_ci), "sign_acc": a.sign_acc, "sign_acc_ci": list(a.sign_acc_ci)}
        if name in TERMS:
            d["share"] = float(np.abs(cat[ARRAYS[name]]).sum() / total)
        if fit:
            d.update(rule=name.replace("theorem", "theorem1") if name == "theorem" else "theorem2",
                     eta_source=eta_source, corr=a.corr, corr_ci=list(a.corr_ci))
        out[name] = d
    return out


def write_sim_run(out, **config) -> Path:
    """Simulate a :class:`simulators.config.SimConfig` (keyword fields) and save it to ``out``."""
    from simulators.config import SimConfig
    from simulators.run import run_to_dir

    run_to_dir(SimConfig(**config), out)
    return Path(out)


def write_sim_lm(out, steps: int = 20, instances: int = 8, objective: str = "ppo_clip", **extra) -> Path:
    """A tiny tabular-LM GRPO run (vocab 3, horizon 2, G = 8, random initial logits)."""
    return write_sim_run(out, world="tabular_lm", rule="grpo", objective=objective, vocab=3, horizon=2,
                         samples=8, epochs=2, optimizer="adam", lr=0.05, steps=steps, instances=instances,
                         init="random", **extra)


def write_sim_pg(out, lr: float) -> Path:
    """A 1-step exact-PG bandit run with random initial logits at step size ``lr``."""
    return write_sim_run(out, world="bandit", rule="pg", n_actions=6, init="random", init_scale=1.5, lr=lr,
                         steps=1, instances=16)
