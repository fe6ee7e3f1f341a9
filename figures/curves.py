"""One view of any run directory, simulator or LLM: the per-step series every figure draws from.

A simulator run (``simulators.run.save_run``: ``config.json`` + ``arrays.npz``) and an LLM run
(``entropy-mech train``: ``config.json`` + ``metrics.jsonl``, keys of ``llm_rl.metrics``) both load into
a :class:`Curves`:

==============  =========================================  =========================================
field           LLM run                                    simulator run (mean over the B runs)
==============  =========================================  =========================================
step            0..steps-1 (rollout steps)                 0..steps-1
entropy         ``entropy/train`` (paper Eq. 5, nats)      ``agg_entropy``
cov             ``cov/batch_mean`` (paper Eq. 10)          ``cov_eq10`` (NaN for exact rules)
cov_response    ``cov/response_eq8`` (Eqs. 8-9), or None   ``cov_eq8`` (None for exact rules)
dH              H[t+1] − H[t] of ``entropy/train``         ``agg_dH_obs`` (exact change of step t)
resp_len        ``rollout/response_len``                   NaN
val_step/acc    steps with ``val/acc`` (greedy accuracy)   every step, exact expected reward
reward          ``reward/raw_mean`` (all sampled answers)  same as val_acc
==============  =========================================  =========================================

``meta`` holds what labels a run: objective, its hyperparameters, seed, entropy/ref-KL coefficients and
the model's non-embedding parameter count; ``spec.json`` written by :mod:`reproduce.experiments` next to
the run (tags such as ``size``) overrides the values derived from the config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rundir.files import load_npz
from rundir.records import read_records


@dataclass
class Curves:
    """Per-step series of one run (see the module table); arrays are float64 numpy."""

    path: Path
    kind: str
    """``"llm"`` or ``"sim"``"""
    config: dict
    meta: dict
    step: np.ndarray
    entropy: np.ndarray
    cov: np.ndarray
    dH: np.ndarray
    resp_len: np.ndarray
    val_step: np.ndarray
    val_acc: np.ndarray
    reward: np.ndarray | None = None
    """training reward per step (NaN where not logged)"""
    cov_response: np.ndarray | None = None
    """response-level covariance of paper Eqs. 8-9 per step (LLM: ``cov/response_eq8``; simulator: mean
    of ``cov_eq8`` over the runs); None when the run does not record it"""
    arrays: dict = field(default_factory=dict, repr=False)
    """simulator runs: the raw ``arrays.npz`` content (empty for LLM runs)"""
    tokens: float = float("nan")
    """median response tokens per policy update, the pool a Clip-Cov / KL-Cov fraction is taken of (LLM:
    ``objective/num_tokens``; simulator: G x horizon per prompt); NaN when not logged"""

    @property
    def label(self) -> str:
        """Short legend label: size (or simulator world), objective, hyperparameters and seed."""
        m = self.meta
        prefix = f"sim-{m.get('world')}" if self.kind == "sim" else m.get("size_name", "")
        parts = [prefix, m["objective"]] if prefix else [m["objective"]]
        parts += [f"{k}={v}" for k, v in sorted(m.get("params", {}).items())]
        if m.get("entropy_coef"):
            parts.append(f"ent={m['entropy_coef']}")
        if m.get("ref_kl_coef"):
            parts.append(f"refkl={m['ref_kl_coef']}")
        return " ".join(parts) + f" s{m.get('seed', 0)}"


def kind_of(run_dir: str | Path) -> str:
    """``"sim"``, ``"llm"``; ValueError when the directory is neither."""
    p = Path(run_dir)
    if (p / "arrays.npz").is_file() and (p / "config.json").is_file():
        return "sim"
    if (p / "metrics.jsonl").is_file() and (p / "config.json").is_file():
        return "llm"
    raise ValueError(f"{p} is not a run directory (need config.json with arrays.npz or metrics.jsonl)")


def non_embedding_params(model_config: dict) -> int:
    """Non-embedding parameter count of a Qwen2-style ``config.json`` (attention + MLP + norms)."""
    h = int(model_config["hidden_size"])
    layers = int(model_config["num_hidden_layers"])
    heads = int(model_config["num_attention_heads"])
    kv = int(model_config.get("num_key_value_heads", heads))
    inter = int(model_config["intermediate_size"])
    kv_dim = h // heads * kv
    attn = h * h + 2 * h * kv_dim + h * h + h + 2 * kv_dim  # q, k, v, o weights + q/k/v biases
    return int(layers * (attn + 3 * h * inter + 2 * h) + h)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


COV_RESPONSE_KEY = "cov/response_eq8"
"""the LLM metrics key of the response-level covariance of paper Eqs. 8-9 (requested from the trainer:
``theory.covariance.response_covariance(log π_old of the response tokens, response mask, sequence
advantage, prompt id, "pg")["batch_mean"]`` on the rollout batch); absent in older runs"""


def _llm_meta(cfg: dict) -> dict:
    obj = cfg.get("objective", {})
    meta = {"objective": {"ppo_clip": "grpo"}.get(obj.get("name", "grpo"), obj.get("name", "grpo")),
            "params": dict(obj.get("params", {})), "seed": cfg.get("seed", 0),
            "entropy_coef": obj.get("entropy_coef", 0.0), "ref_kl_coef": obj.get("ref_kl_coef", 0.0),
            "task": cfg.get("data", {}).get("task", "")}
    model_cfg = Path(cfg.get("model", "")) / "config.json" if cfg.get("model") else None
    if model_cfg is not None and model_cfg.is_file():
        meta["size"] = non_embedding_params(json.loads(model_cfg.read_text()))
    return meta


def _load_llm(path: Path, cfg: dict, val_key: str = "val/acc") -> Curves:
    recs = read_records(path / "metrics.jsonl")
    if not recs:
        raise ValueError(f"{path}/metrics.jsonl is empty")
    train = [r for r in recs if r.get("entropy/train") is not None]

    def col(rows, key):
        return np.array([np.nan if r.get(key) is None else float(r[key]) for r in rows], dtype=np.float64)

    ent = col(train, "entropy/train")
    val = [r for r in recs if r.get(val_key) is not None]
    resp = col(train, COV_RESPONSE_KEY)
    tok = col(train, "objective/num_tokens")
    tok = tok[np.isfinite(tok)]
    return Curves(path=path, kind="llm", config=cfg, meta=_llm_meta(cfg),
                  step=col(train, "step"), entropy=ent, cov=col(train, "cov/batch_mean"),
                  dH=np.append(np.diff(ent), np.nan), resp_len=col(train, "rollout/response_len"),
                  val_step=col(val, "step"), val_acc=col(val, val_key), reward=col(train, "reward/raw_mean"),
                  cov_response=resp if np.isfinite(resp).any() else None,
                  tokens=float(np.median(tok)) if tok.size else float("nan"))


def _load_sim(path: Path, cfg: dict) -> Curves:
    arrays = load_npz(path / "arrays.npz")
    steps = np.arange(arrays["agg_entropy"].shape[0], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        cov = (np.nanmean(arrays["cov_eq10"], axis=1) if np.isfinite(arrays["cov_eq10"]).any()
               else np.full(steps.shape, np.nan))
    resp = None
    if "cov_eq8" in arrays and np.isfinite(arrays["cov_eq8"]).any():
        with np.errstate(invalid="ignore"):
            resp = np.nanmean(arrays["cov_eq8"], axis=1).astype(np.float64)
    meta = {"objective": cfg.get("objective", "ppo_clip") if cfg.get("rule") == "grpo" else cfg.get("rule"),
            "params": dict(cfg.get("objective_kwargs", {})), "seed": cfg.get("seed", 0),
            "world": cfg.get("world"), "rule": cfg.get("rule"), "lr": cfg.get("lr")}
    if meta["objective"] == "ppo_clip":
        meta["objective"] = "grpo"
    return Curves(path=path, kind="sim", config=cfg, meta=meta, step=steps,
                  entropy=arrays["agg_entropy"].mean(1).astype(np.float64), cov=cov.astype(np.float64),
                  dH=arrays["agg_dH_obs"].mean(1).astype(np.float64), resp_len=np.full(steps.shape, np.nan),
                  val_step=steps, val_acc=arrays["reward"].mean(1).astype(np.float64),
                  reward=arrays["reward"].mean(1).astype(np.float64), arrays=arrays, cov_response=resp,
                  tokens=float(cfg.get("samples", 0) * cfg.get("horizon", 0)) or float("nan"))


VAL_KEYS = ("val/acc", "val/acc_sampled", "val/acc_t1")
"""LLM accuracies R can be read from: greedy (paper's default), T=0.6 samples, T=1 samples"""


def load_curves(run_dir: str | Path, val_key: str = "val/acc") -> Curves:
    """Load one run directory (simulator or LLM) into :class:`Curves`; ``val_key`` picks the LLM
    accuracy (:data:`VAL_KEYS`; simulator runs always use the exact expected reward)."""
    if val_key not in VAL_KEYS:
        raise ValueError(f"unknown val_key {val_key!r}; choose one of: {', '.join(VAL_KEYS)}")
    path = Path(run_dir)
    kind = kind_of(path)
    cfg = _read_json(path / "config.json").get("config", {})
    curves = _load_llm(path, cfg, val_key) if kind == "llm" else _load_sim(path, cfg)
    curves.meta.update(_read_json(path / "spec.json").get("tags", {}))
    return curves


def load_many(run_dirs, val_key: str = "val/acc") -> list[Curves]:
    """:func:`load_curves` for each directory; ValueError when the list is empty."""
    dirs = list(run_dirs)
    if not dirs:
        raise ValueError("no run directories given")
    return [load_curves(d, val_key) for d in dirs]


def smooth(y: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average of odd ``width`` (shrinking at the ends, NaN-aware)."""
    y = np.asarray(y, dtype=np.float64)
    if width <= 1 or y.size == 0:
        return y.copy()
    half = width // 2
    out = np.empty_like(y)
    for i in range(y.size):
        w = y[max(0, i - half): i + half + 1]
        w = w[np.isfinite(w)]
        out[i] = w.mean() if w.size else np.nan
    return out


def law_points(c: Curves, width: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(H, R, step)`` at the validation steps: R = accuracy, H = training entropy smoothed over
    ``width`` steps around the step (the per-step batch entropy is noisy), as in paper Figs. 1, 3."""
    Hs = smooth(c.entropy, width)
    H = np.interp(c.val_step, c.step, Hs, left=np.nan, right=np.nan) if c.step.size else c.val_step * np.nan
    keep = np.isfinite(H) & np.isfinite(c.val_acc)
    return H[keep], c.val_acc[keep], c.val_step[keep]
