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


def _diagnosed(out: Path, step: int, rng, states: int = 24, vocab: int = 7, samples: int = 40) -> dict:
    """``diag/*`` keys of one synthetic diagnosed update (the per-state file is written too)."""
    import torch

    from llm_rl.diagnostics import diagnose_step
    from rundir.diagnostics_files import save_per_state

    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    z = torch.randn(states, vocab, generator=g, dtype=torch.float64) * 2
    z_new = z + 0.01 * torch.randn(states, vocab, generator=g, dtype=torch.float64)
    idx = torch.randint(states, (samples,), generator=g)
    summary, per_state = diagnose_step(z, z_new, torch.randint(vocab, (samples,), generator=g),
                                       torch.randn(samples, generator=g, dtype=torch.float64), idx, idx % 5)
    save_per_state(out, step, per_state)
    return summary


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
