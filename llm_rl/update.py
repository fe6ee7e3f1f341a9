"""The trainer's update step: ``ppo_epochs × num_minibatches`` optimizer steps on one scored rollout batch.

:meth:`PolicyUpdate.__call__` reads top to bottom; in call order::

    minibatches                 shuffled row blocks of the rollout batch, every epoch
    for each mini-batch:
      start_probe               (diagnosed steps, first mini-batch) the probe states and their samples
      accumulate_gradients      zero the gradients, then
        selection_stats           Clip-/KL-Cov token selection over the whole mini-batch (no-grad forward)
        micro_batch_loss          per micro-batch of this rank: objective + entropy bonus + reference KL,
                                  aggregated with whole-mini-batch denominators; backward (the probe
                                  captures the loss gradients at the probed logits)
      optimizer_step            SUM all-reduce of the gradients, clip, [probe.before_step: the step's
                                affine form and per-state own / cross / history terms], optimizer and
                                LR-schedule steps
      probe.finish              probe-state logits after the step, the linearised change -> ``diag/*``
    UpdateMetrics.result        metrics combined over micro-batches, steps and ranks (metrics.REDUCTIONS)

Every forward pass of the update scores the sampling policy softmax(z / T) at the rollout temperature T
(as the rollout's log π_old); the trainer keeps the policy in eval mode (no dropout) throughout.

Each mini-batch is split into per-rank contiguous blocks (the whole mini-batch when not distributed) and
each block into micro-batches of ``micro_batch_size`` rows. The loss of every micro-batch is divided by
the denominator of the *whole* mini-batch (``theory.aggregation.global_denominator``; Dr. GRPO's
``seq-mean-token-sum-norm`` by rows × ``max_new_tokens``), so the accumulated gradients, SUM-all-reduced
across ranks, are the gradient of the whole mini-batch's loss whatever the split.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

import theory
from theory.aggregation import aggregate, global_denominator
from theory.objectives import compute_cov_stats
from theory.regularizers import entropy_bonus, reference_kl

from .checkpoint import CHECKPOINT_NAME
from .diagnostics import StepProbe
from .distributed import DistInfo, all_reduce_grads_, all_reduce_sum_
from .forward import response_logits
from .metrics import LOSS_POLICY, LOSS_TOTAL, OPTIM_GRAD_NORM, OPTIM_LR, OPTIM_UPDATES, UpdateMetrics
from .rollout import Rollout, score, score_rows


class NonFiniteLossError(RuntimeError):
    """A log-probability, the loss or the gradient became NaN/inf: the run stops before the optimizer
    applies it, so the weights and the last checkpoint stay finite (the message names both)."""


#: what to change when the update diverges (named in every non-finite error)
NON_FINITE_ADVICE = ("lower the learning rate (--lr), keep gradient clipping on (--grad-clip > 0) or use "
                     "fewer/larger mini-batches (--num-minibatches)")


def non_finite_error(what: str, step: int, objective: str, out: Path) -> NonFiniteLossError:
    """The one message of every non-finite stop: what was non-finite, at which step, what was kept."""
    ck = out / CHECKPOINT_NAME
    where = f"the last good checkpoint {ck} is kept" if ck.exists() else "no checkpoint had been written yet"
    return NonFiniteLossError(f"non-finite {what} at step {step} (objective {objective}); the run stopped "
                              f"without applying this update; {where}. To continue: {NON_FINITE_ADVICE}")


@dataclass
class RolloutBatch:
    """A scored rollout batch: what the update step trains on (``B`` rows, ``R`` response columns).

    Attributes:
      ro: token ids, attention mask and response mask ``[B, R]`` (:class:`llm_rl.rollout.Rollout`).
      old_lp: ``[B, R]`` log π_old of the sampled tokens.
      adv: ``[B, R]`` advantage of each token (its response's group-normalised reward).
      ref_lp: ``[B, R]`` log π_ref of the sampled tokens, or ``None`` without a reference-KL term.
    """

    ro: Rollout
    old_lp: torch.Tensor
    adv: torch.Tensor
    ref_lp: torch.Tensor | None


def token_entropy(model, ro: Rollout, rows: torch.Tensor, autocast, temperature: float = 1.0) -> torch.Tensor:
    """Differentiable full-vocabulary entropy ``[b, R]`` of the sampling policy softmax(z / T) at the
    response positions of rows ``rows`` ``[b]`` of ``ro`` (the entropy bonus's input; a forward pass of
    its own)."""
    with autocast:
        logits = response_logits(model, ro.input_ids[rows], ro.attention_mask[rows], ro.prompt_len)
    return theory.entropy(logits.float() / temperature)


class PolicyUpdate:
    """The update step of :class:`llm_rl.trainer.Trainer` (see the module docstring); built once by the
    trainer, called once per rollout step. It holds references to the trainer's objects, which resuming
    from a checkpoint restores in place.

    Args:
      model, optimizer, scheduler: the policy, its optimizer and its learning-rate schedule.
      objective: the token-level objective (a ``theory.objectives`` function); objective_name: its name.
      selects: whether the objective selects tokens over the whole mini-batch (Clip-Cov, KL-Cov).
      config: the run's ``TrainConfig``.
      generators: the trainer's named generators (``shuffle``: mini-batch order; ``selection``: the
        objectives' random draws).
      dist, device, autocast: the trainer's data-parallel info, device and forward-pass context.
      max_new: the maximum response length (the ``seq-mean-token-sum-norm`` normaliser).
      out: the run directory (per-state diagnostics; named in the non-finite-loss error).
    """

    def __init__(self, *, model, optimizer, scheduler, objective, objective_name: str, selects: bool, config,
                 generators: dict[str, torch.Generator], dist: DistInfo, device, autocast, max_new: int,
                 out: Path):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.objective, self.objective_name, self.selects = objective, objective_name, selects
        self.cfg, self.gens, self.dist, self.device = config, generators, dist, device
        self.autocast, self.max_new, self.out = autocast, max_new, Path(out)

    def __call__(self, batch: RolloutBatch, *, step: int) -> dict:
        """Run the update step on ``batch`` at rollout step ``step``; returns its metrics."""
        metrics, diagnosed = UpdateMetrics(), {}
        for i, mini in enumerate(self.minibatches(batch.ro.response_mask.shape[0])):
            probe = self.start_probe(batch, mini, step) if i == 0 and self.diagnose_now(step) else None
            self.accumulate_gradients(batch, mini, metrics, step=step, probe=probe)
            self.optimizer_step(metrics, step=step, probe=probe)
            if probe is not None and self.dist.is_main:
                diagnosed, _ = probe.finish(self.model, self.out, step)
        return {**metrics.result(self.dist), **diagnosed}

    # ------------------------------------------------------------------------------------------------
    # mini-batches
    # ------------------------------------------------------------------------------------------------

    def minibatches(self, n_rows: int) -> list[torch.Tensor]:
        """Row indices (on the device) of every mini-batch, in order: for each of ``ppo_epochs`` epochs a
        fresh shuffle of the ``n_rows`` rows, split into ``num_minibatches`` blocks (fewer when there are
        fewer rows)."""
        o = self.cfg.optim
        out = []
        for _ in range(o.ppo_epochs):
            perm = torch.randperm(n_rows, generator=self.gens["shuffle"])
            out += [mini.to(self.device) for mini in torch.tensor_split(perm, min(o.num_minibatches, n_rows))]
        return out

    # ------------------------------------------------------------------------------------------------
    # loss: gradients of one mini-batch, accumulated over micro-batches
    # ------------------------------------------------------------------------------------------------

    def accumulate_gradients(self, batch: RolloutBatch, mini: torch.Tensor, metrics: UpdateMetrics, *,
                             step: int, probe: StepProbe | None = None) -> None:
        """Zero the gradients, then loss and backward over this rank's micro-batches of mini-batch ``mini``
        ``[m]`` (row indices), with the denominator and token selection of the whole mini-batch (and, with
        ``probe``, the loss gradients at its probed logits captured).

        Raises:
          NonFiniteLossError: on every rank, if any rank met a non-finite log-probability or loss (its
            remaining micro-batches are skipped; no optimizer step is taken).
        """
        o = self.cfg.optim
        mask = batch.ro.response_mask
        denom = self.denominator(mask[mini])
        stats = self.selection_stats(batch, mini, step=step)
        a, b = self.dist.block(len(mini))
        mine = mini[a:b]
        bad = torch.zeros((), device=self.device)
        self.optimizer.zero_grad(set_to_none=True)
        with probe.capture() if probe is not None else nullcontext():
            for s in range(0, len(mine), o.micro_batch_size):
                rows = mine[s:s + o.micro_batch_size]
                rows_stats = None if stats is None else stats.rows(slice(a + s, a + s + len(rows)))
                if probe is not None:
                    probe.set_rows(torch.arange(a + s, a + s + len(rows)))
                out = self.micro_batch_loss(batch, rows, denom, rows_stats)
                if out is None:
                    bad.fill_(1.0)
                    break
                loss, met = out
                loss.backward()
                metrics.add_micro_batch(met, tokens=float(mask[rows].sum()))
        if bool(all_reduce_sum_(bad, self.dist) > 0):
            raise non_finite_error("log-probabilities or loss", step, self.objective_name, self.out)

    def denominator(self, mask: torch.Tensor) -> dict:
        """The aggregation denominator of a whole mini-batch with response mask ``mask`` ``[m, R]``
        (``theory.aggregation.global_denominator``; ``seq-mean-token-sum-norm`` by m × max_new_tokens)."""
        return global_denominator(mask, self.cfg.objective.agg_mode,
                                  norm_constant=float(mask.shape[0] * self.max_new))

    def selection_stats(self, batch: RolloutBatch, mini: torch.Tensor, *, step: int):
        """Clip-/KL-Cov token selection over the whole mini-batch ``mini`` (``theory.objectives.
        compute_cov_stats`` on current log-probs from a no-grad forward, all-gathered across ranks);
        ``None`` for objectives that select nothing."""
        if not self.selects:
            return None
        cur = score_rows(self.model, batch.ro, mini, micro_batch_size=self.cfg.optim.micro_batch_size,
                         autocast=self.autocast, dist=self.dist, device=self.device,
                         temperature=self.cfg.rollout.temperature)
        if not bool(torch.isfinite(cur[batch.ro.response_mask[mini]]).all()):  # same on every rank (gathered)
            raise non_finite_error("log-probabilities", step, self.objective_name, self.out)
        return compute_cov_stats(cur, batch.old_lp[mini], batch.adv[mini], batch.ro.response_mask[mini],
                                 objective=self.objective_name, generator=self.gens["selection"],
                                 **self.cfg.objective.params)

    def micro_batch_loss(self, batch: RolloutBatch, rows: torch.Tensor, denom: dict, stats):
        """Loss of micro-batch ``rows`` ``[b]``: the objective's token loss matrix ``[b, R]`` plus the
        entropy-bonus and reference-KL matrices, aggregated (``agg_mode``) with the mini-batch
        denominator ``denom``; ``stats``: the micro-batch's rows of the mini-batch selection.

        Returns:
          ``(loss, metrics)``: the differentiable total loss and the micro-batch's metrics (``loss/policy``,
          the objective's alone, and ``loss/total`` included), or ``None`` if a log-probability or the
          loss is non-finite.
        """
        oc, ro = self.cfg.objective, batch.ro
        mm = ro.response_mask[rows]
        with self.autocast:
            lp = score(self.model, ro.input_ids[rows], ro.attention_mask[rows], ro.prompt_len,
                       temperature=self.cfg.rollout.temperature).float()
        if not bool(torch.isfinite(lp[mm]).all()):
            return None
        loss_mat, met = self.objective(lp, batch.old_lp[rows], batch.adv[rows], mm, **oc.params,
                                       generator=self.gens["selection"], stats=stats)
        total_mat = loss_mat
        if oc.entropy_coef:
            entropy = token_entropy(self.model, ro, rows, self.autocast, self.cfg.rollout.temperature)
            e_mat, e_met = entropy_bonus(entropy, mm, coef=oc.entropy_coef)
            total_mat, met = total_mat + e_mat, {**met, **e_met}
        if batch.ref_lp is not None:
            k_mat, k_met = reference_kl(lp, batch.ref_lp[rows], mm, coef=oc.ref_kl_coef,
                                        estimator=oc.ref_kl_estimator)
            total_mat, met = total_mat + k_mat, {**met, **k_met}
        policy_loss = aggregate(loss_mat, mm, oc.agg_mode, **denom)
        loss = aggregate(total_mat, mm, oc.agg_mode, **denom)
        if not bool(torch.isfinite(loss)):
            return None
        return loss, {**met, LOSS_POLICY: policy_loss.detach(), LOSS_TOTAL: loss.detach()}

    # ------------------------------------------------------------------------------------------------
    # update: one optimizer step
    # ------------------------------------------------------------------------------------------------

    def optimizer_step(self, metrics: UpdateMetrics, *, step: int, probe: StepProbe | None = None) -> None:
        """SUM all-reduce of the accumulated gradients across ranks, clip their global norm to
        ``grad_clip`` (none when 0), [``probe.before_step``], then one optimizer step and one
        learning-rate-schedule step.

        Raises:
          NonFiniteLossError: the global gradient norm is NaN/inf (after the all-reduce it is the same on
            every rank, so every rank raises); nothing is applied.
        """
        o = self.cfg.optim
        all_reduce_grads_(self.model.parameters(), self.dist)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                                   o.grad_clip if o.grad_clip > 0 else float("inf"))
        if not bool(torch.isfinite(grad_norm)):
            self.optimizer.zero_grad(set_to_none=True)
            raise non_finite_error("gradient (global norm)", step, self.objective_name, self.out)
        if probe is not None:  # torch's clipping factor: min(1, max_norm / (norm + 1e-6))
            clip = min(1.0, o.grad_clip / (float(grad_norm) + 1e-6)) if o.grad_clip > 0 else 1.0
            probe.before_step(self.model, self.optimizer, clip)
        self.optimizer.step()
        self.scheduler.step()
        metrics.add_optimizer_step({OPTIM_GRAD_NORM: float(grad_norm), OPTIM_UPDATES: 1,
                                    OPTIM_LR: self.scheduler.get_last_lr()[0]})

    # ------------------------------------------------------------------------------------------------
    # diagnostics: entropy dynamics of the first optimizer step of every diagnose_every-th rollout step
    # ------------------------------------------------------------------------------------------------

    def diagnose_now(self, step: int) -> bool:
        """Whether rollout step ``step`` is diagnosed (``diagnose_every`` > 0 divides it)."""
        return bool(self.cfg.diagnose_every) and step % self.cfg.diagnose_every == 0

    def start_probe(self, batch: RolloutBatch, mini: torch.Tensor, step: int) -> StepProbe | None:
        """The probe of mini-batch ``mini``'s optimizer step (on every rank, which all-reduce its captured
        loss gradients; only the main rank diagnoses), or ``None`` without response tokens. The probe set
        is seeded by (seed, step); each token's aggregation weight is read off the mini-batch's
        aggregation itself (the gradient of ``aggregate`` with respect to the token losses)."""
        ro = batch.ro
        mask = ro.response_mask[mini]
        if not bool(mask.any()):
            return None
        unit = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device, requires_grad=True)
        agg = aggregate(unit, mask, self.cfg.objective.agg_mode, **self.denominator(mask))
        (weights,) = torch.autograd.grad(agg, unit)
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_033 + step)
        groups = mini.cpu() // self.cfg.rollout.group_size  # rows are stored group by group
        return StepProbe(self.model, ro.input_ids[mini], ro.attention_mask[mini], mask, ro.prompt_len,
                         batch.adv[mini], groups, max_states=self.cfg.diagnose_max_states, generator=gen,
                         weights=weights, temperature=self.cfg.rollout.temperature, decompose=True,
                         dist=self.dist)
