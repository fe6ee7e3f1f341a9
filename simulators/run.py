"""Run a simulator end to end, and save / load run directories.

    run = simulate(SimConfig(world="bandit", rule="pg", steps=200, instances=32))
    save_run(run, "runs/bandit-pg");  run = load_run("runs/bandit-pg")

A run directory holds ``config.json`` (resolved :class:`SimConfig` + environment, ``rundir.files``),
``arrays.npz`` (per-step arrays, keys of :mod:`simulators.recorder` stacked to ``[steps, B, ...]``, plus
``final_entropy`` ``[B, S]``, ``final_agg_entropy`` / ``final_reward`` / ``optimal_reward`` ``[B]`` and, if
requested, ``logits``
``[steps + 1, B, S, n]``) and ``summary.json``. Every file is written atomically.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from rundir.files import atomic_write_bytes, atomic_write_json, load_npz, read_json, save_run_config
from rundir.ownership import claim_run_dir
from theory import entropy

from .config import SimConfig
from .recorder import record_step
from .rules import make_rule
from .worlds import make_world


@dataclass
class Run:
    """A finished run: its config, per-step arrays (numpy) and summary (plain JSON values)."""

    config: SimConfig
    arrays: dict[str, np.ndarray]
    summary: dict


def initial_logits(
    config: SimConfig, n_states: int, n_actions: int, generator: torch.Generator
) -> torch.Tensor:
    """``[B, S, n]`` zeros (``uniform``) or N(0, init_scale²) draws (``random``, from the run's generator)."""
    shape = (config.batch, n_states, n_actions)
    dtype = getattr(torch, config.dtype)
    if config.init == "uniform":
        return torch.zeros(shape, dtype=dtype, device=config.device)
    z = torch.randn(shape, generator=generator, dtype=torch.float64) * config.init_scale
    return z.to(dtype=dtype, device=config.device)


def simulate(config: SimConfig, progress: bool = False) -> Run:
    """Advance all B = instances·seeds runs of ``config`` for ``config.steps`` steps, recording each step.

    Randomness comes only from one CPU ``torch.Generator`` seeded with ``config.seed`` (worlds, initial
    logits, samples) plus, for ``grpo``, one on the device seeded with ``seed + 1`` (objective draws), so a
    CPU run is bit-for-bit reproducible. The step loop never synchronises with the host.

    Args:
      config: the run's :class:`SimConfig`; progress: show a tqdm bar.
    Returns:
      a :class:`Run` (not yet saved; see :func:`save_run`).
    """
    if not isinstance(config, SimConfig):
        raise ValueError(f"config must be a SimConfig, got {type(config).__name__}")
    generator = torch.Generator().manual_seed(config.seed)
    world = make_world(config, generator)
    logits = initial_logits(config, world.n_states, world.n_actions, generator)
    rule = make_rule(config, world, logits, generator)
    history: dict[str, list[torch.Tensor]] = {}
    trajectory = [logits] if config.record_logits else None
    for _ in tqdm(
        range(config.steps), disable=not progress, desc=f"{config.world}/{config.rule}", leave=False
    ):
        ex = world.exact(logits)
        result = rule.step(logits, ex)
        for key, value in record_step(logits, result, ex, config.lr).items():
            history.setdefault(key, []).append(value.detach())
        logits = result.logits.detach()
        if trajectory is not None:
            trajectory.append(logits)
    arrays = {key: torch.stack(values).cpu().numpy() for key, values in history.items()}
    final = world.exact(logits)
    final_entropy = entropy(logits)
    arrays["final_entropy"] = final_entropy.cpu().numpy()
    arrays["final_agg_entropy"] = (final.agg_weight * final_entropy).sum(-1).cpu().numpy()
    arrays["final_reward"] = final.reward.cpu().numpy()
    arrays["optimal_reward"] = world.optimal_reward().cpu().numpy()
    if trajectory is not None:
        arrays["logits"] = torch.stack(trajectory).cpu().numpy()
    return Run(config=config, arrays=arrays, summary=summarize(arrays, config))


def relative_errors(
    arrays: dict[str, np.ndarray],
    key: str = "dH_first",
    floor: float | None = None,
    with_weights: bool = False,
):
    """|observed − prediction| / |observed| over every (step, run, state) with |observed| > ``floor``
    (default 1e-12 in float64, 1e-6 in float32), flattened; with ``with_weights`` also the matching
    ``state_weight`` entries (the state's share of the visits)."""
    obs, pred = arrays["dH_obs"], arrays[key]
    if floor is None:
        floor = 1e-12 if obs.dtype == np.float64 else 1e-6
    keep = np.abs(obs) > floor
    err = np.abs(obs[keep] - pred[keep]) / np.abs(obs[keep])
    return (err, arrays["state_weight"][keep]) if with_weights else err


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """Smallest v with Σ_{values <= v} weights >= ½ Σ weights (NaN when empty or weightless)."""
    if values.size == 0 or not weights.sum() > 0:
        return math.nan
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, 0.5 * cum[-1])])


def summarize(arrays: dict[str, np.ndarray], config: SimConfig) -> dict:
    """Headline numbers of a run (means over the B runs): final reward and gap, aggregated entropy at
    start and end, and how well each order predicts ΔH: median relative error over all per-state entries
    (``median_rel_err_*``), the same weighted by each state's share of the visits (``wmedian_rel_err_*``,
    what matters where most states are rarely reached, as in the tabular LM), and over the aggregated
    series (``agg_median_rel_err_*``)."""

    def med(x):
        return float(np.median(x)) if x.size else math.nan

    agg_obs = arrays["agg_dH_obs"]
    agg_keep = np.abs(agg_obs) > (1e-12 if agg_obs.dtype == np.float64 else 1e-6)
    out = {
        "world": config.world,
        "rule": config.rule,
        "steps": config.steps,
        "batch": config.batch,
        "final_reward_mean": float(arrays["final_reward"].mean()),
        "optimal_reward_mean": float(arrays["optimal_reward"].mean()),
        "final_gap_mean": float((arrays["optimal_reward"] - arrays["final_reward"]).mean()),
        "initial_entropy_mean": float(arrays["agg_entropy"][0].mean()),
        "final_entropy_mean": float(arrays["final_agg_entropy"].mean()),
        "median_rel_err_first": med(relative_errors(arrays, "dH_first")),
        "median_rel_err_second": med(relative_errors(arrays, "dH_second")),
        "wmedian_rel_err_first": weighted_median(*relative_errors(arrays, "dH_first", with_weights=True)),
        "wmedian_rel_err_second": weighted_median(*relative_errors(arrays, "dH_second", with_weights=True)),
        "median_rel_err_thm1": med(relative_errors(arrays, "dH_thm1")),
        "median_rel_err_thm2": med(relative_errors(arrays, "dH_thm2")),
        "agg_median_rel_err_first": med(
            np.abs(agg_obs - arrays["agg_dH_first"])[agg_keep] / np.abs(agg_obs[agg_keep])
        ),
        "agg_median_rel_err_second": med(
            np.abs(agg_obs - arrays["agg_dH_second"])[agg_keep] / np.abs(agg_obs[agg_keep])
        ),
        "first_order_sign_agreement": float(
            np.mean(np.sign(arrays["dH_first"]) == np.sign(arrays["dH_obs"]))
        ),
    }
    if np.isfinite(arrays["cov_eq10"]).any():
        out["cov_eq10_mean"] = float(np.nanmean(arrays["cov_eq10"]))
        out["sampled_reward_mean"] = float(np.nanmean(arrays["sampled_reward"]))
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def save_run(run: Run, out_dir: str | Path) -> Path:
    """Write ``config.json``, ``arrays.npz`` and ``summary.json`` (atomically) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_run_config(out, run.config.to_dict())
    buf = io.BytesIO()
    np.savez_compressed(buf, **run.arrays)
    atomic_write_bytes(out / "arrays.npz", buf.getvalue())
    atomic_write_json(out / "summary.json", run.summary)
    return out


def load_run(run_dir: str | Path) -> Run:
    """Read a directory written by :func:`save_run` back into a :class:`Run`.

    Raises:
      ValueError: a file is missing.
    """
    path = Path(run_dir)
    missing = [n for n in ("config.json", "arrays.npz", "summary.json") if not (path / n).is_file()]
    if missing:
        raise ValueError(f"{path} is not a simulator run directory (missing {', '.join(missing)})")
    config = SimConfig.from_dict(read_json(path / "config.json")["config"])
    return Run(config=config, arrays=load_npz(path / "arrays.npz"), summary=read_json(path / "summary.json"))


def run_to_dir(config: SimConfig, out_dir: str | Path, progress: bool = False, *,
               overwrite: bool = False) -> Run:
    """:func:`simulate` then :func:`save_run`, owning ``out_dir`` meanwhile (:mod:`rundir.ownership`): a
    folder that already holds a run is refused before simulating unless ``overwrite`` (which clears it)."""
    with claim_run_dir(out_dir, overwrite=overwrite, what="simulator run", resumable=False):
        run = simulate(config, progress=progress)
        save_run(run, out_dir)
    return run
