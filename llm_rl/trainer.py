"""GRPO-family RL trainer for Hugging Face causal LMs (CPU or GPU, one process or data-parallel).

Launch::

    entropy-mech pretrain --task arithmetic                     # warm start, cached
    entropy-mech train --task arithmetic --objective grpo   --steps 60 --out runs/grpo
    entropy-mech train --task arithmetic --objective kl_cov --steps 60 --out runs/klcov
    entropy-mech train ... --out runs/grpo --resume             # continue a killed run exactly
    torchrun --nproc_per_node=2 -m cli.main train --task arithmetic --objective grpo --out runs/ddp

One rollout step = (1) sample ``group_size`` responses for each of ``prompts_per_step`` training prompts
at temperature 1 with a KV cache, dropping groups whose rewards are all equal and re-sampling up to
``max_sampling_rounds`` rounds (dynamic sampling); (2) re-score the batch with the current policy
(π_old log-probs, full-vocabulary entropy → ``entropy/train``); (3) group-normalised advantages
(GRPO, or Dr. GRPO without the std); (4) ``ppo_epochs`` × ``num_minibatches`` optimizer steps, each
accumulating gradients over micro-batches of ``micro_batch_size`` sequences, with the objective taken by
name from ``theory.objectives`` and the loss reduced by ``theory.aggregation.aggregate`` with whole
mini-batch denominators; (5) validation every ``val_every`` steps; (6) one JSONL metrics line and,
every ``checkpoint_every`` steps, an atomic checkpoint.

Where things are: this module holds the loop (:meth:`Trainer.train`), sampling (2) and scoring (3);
the update step (4) -- mini-batches, micro-batch losses, optimizer steps, diagnostics -- is
:class:`llm_rl.update.PolicyUpdate` in ``llm_rl/update.py``; the forward pass behind every scoring of
rollout rows is :func:`llm_rl.forward.response_logits`; every metric key, and how the update's metrics
are reduced, is in ``llm_rl/metrics.py``.

Exactly what is simplified relative to verl / the paper:

- data parallelism only (torchrun, see :mod:`llm_rl.distributed`; no tensor/sequence parallelism, no
  vLLM: sampling uses the training model itself, one response row per generator seeded by
  (seed, step, round, row) so that sharding does not change what is sampled);
- the reward is the task verifier's 0/1 outcome only (no format reward, no length penalty);
- Clip-Cov / KL-Cov selection is computed over the whole *mini-batch* (an extra no-grad forward per
  mini-batch, ``theory.objectives.compute_cov_stats``), not per micro-batch as in verl — the paper's
  batch-level definition; the covariance of ``cov/batch_mean`` uses π_old on the whole rollout batch;
- ``seq-mean-token-sum-norm`` (Dr. GRPO) divides by ``rows × max_new_tokens`` of the mini-batch;
- π_old is a fresh forward pass after sampling (as verl), not the sampler's own log-probs;
- the reference policy for ``ref_kl_coef > 0`` is a frozen copy of the starting model.
"""

from __future__ import annotations

import copy
import hashlib
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch

import theory
from theory.advantages import group_advantages, zero_variance_groups
from theory.objectives import get_objective, validate_objective_params
from rundir.files import save_run_config
from rundir.ownership import claim_run_dir

from .checkpoint import CHECKPOINT_NAME, load_checkpoint, restore_rng_state, save_checkpoint
from .config import ON_POLICY_KL_COV, TrainConfig
from .distributed import gather_objects, init_distributed
from .evaluate import evaluate
from .metrics import (COV_BATCH_MEAN, COV_RESPONSE, ENTROPY_TOKEN_MEAN, ENTROPY_TRAIN, OPTIM_UPDATES,
                      REWARD_MEAN, REWARD_RAW_MEAN,
                      ROLLOUT_GROUPS, ROLLOUT_GROUPS_DROPPED, ROLLOUT_RESPONSE_LEN, ROLLOUT_ROUNDS,
                      ROLLOUT_TOKENS, STEP, TIME_ROLLOUT, TIME_SCORE, TIME_STEP, TIME_UPDATE, TIME_VAL,
                      VAL_ACC, VAL_ACC_SAMPLED, VAL_ACC_T1, VAL_ENTROPY, VAL_RESPONSE_LEN, open_run_writer)
from .objective_choice import OBJECTIVE_ALIASES, SELECTION_OBJECTIVES, resolve_objective_name
from .model import checkpoint_dtype, load_policy, resolve_device, save_policy
from .rollout import Rollout, concat_rollouts, generate, score_rows, sequence_entropy
from .tasks import make_splits, make_task
from .tokenizer import warn_unknown_characters
from .resume import NoUpdatesError, check_resumable
from .update import NON_FINITE_ADVICE, NonFiniteLossError, PolicyUpdate, RolloutBatch


class Trainer:
    """Holds model, optimizer, data cursor and RNGs; :meth:`train` runs the loop (see module docstring).

    Args:
      config: the run configuration (``config.model`` must name a model directory).
      out_dir: run directory (config.json, metrics.jsonl, checkpoint.pt, final model in ``model/``,
        saved in the dtype of ``config.model``'s checkpoint; training uses float32 weights).
      resume: continue the run saved in ``out_dir`` from its ``checkpoint.pt``; ``config`` must equal the
        saved one (a difference is a :class:`rundir.ownership.RunDirError` naming each setting) except
        ``steps`` when ``extend`` is set.
      overwrite: ``out_dir`` holds a run that is to be deleted first (without it, and without ``resume``,
        a folder holding a run is an error: a run folder is owned by one run).
      extend: with ``resume``, allow a larger ``steps`` than the saved run's (continue a finished run).
      progress: show a tqdm progress bar.

    The main process holds ``out_dir/.lock`` from construction to the end of :meth:`train` (or
    :meth:`close`): a second live writer in the same folder fails at once.
    """

    # ------------------------------------------------------------------------------------------------
    # setup: model, reference, data, optimizer, RNGs, run directory, the update step
    # ------------------------------------------------------------------------------------------------

    def __init__(self, config: TrainConfig, out_dir, *, resume: bool = False, overwrite: bool = False,
                 extend: bool = False, progress: bool = True):
        if not isinstance(config, TrainConfig):
            raise ValueError("config must be a TrainConfig")
        if not config.model:
            raise ValueError("config.model must name a model directory (see llm_rl.pretrain.get_or_pretrain)")
        self.cfg, self.out = config, Path(out_dir).resolve()
        self.progress = progress
        self.lock = None
        self.objective_name = resolve_objective_name(config.objective.name)
        self.objective = get_objective(self.objective_name)
        self.dist = init_distributed(config.device)
        # bad data, then a refused run folder, fail before any model is loaded
        self.task = make_task(config.data.task, **config.data.task_knobs)
        self.train_set, self.val_set = make_splits(self.task, config.data.n_train, config.data.n_val,
                                                   config.data.split_seed)
        if self.dist.is_main:
            self.lock = claim_run_dir(self.out, resume=resume, overwrite=overwrite, what="training run")
            if resume:
                check_resumable(self.out, config, extend=extend)
        self.device = resolve_device(config.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        # float32 master weights for training; the final model is saved in the checkpoint's own dtype
        self.model, self.tok = load_policy(config.model, device=self.device, dtype=torch.float32)
        self.save_dtype = checkpoint_dtype(config.model)
        self.model.eval()  # RL without dropout: sampling, scoring and the update see one policy
        self.ref_model = None
        if config.objective.ref_kl_coef > 0:
            self.ref_model = copy.deepcopy(self.model).eval().requires_grad_(False)
        warn_unknown_characters(self.tok, [p.prompt for p in self.train_set + self.val_set])
        self.max_new = config.rollout.max_new_tokens or self.task.max_response_chars
        o = config.optim
        if o.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=o.lr, momentum=o.momentum,
                                             weight_decay=o.weight_decay)
        else:
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=o.lr, betas=o.betas,
                                               weight_decay=o.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / o.warmup_steps) if o.warmup_steps else 1.0)
        # every random draw of the loop comes from one of these (all checkpointed) or, for rollouts, from
        # per-row generators seeded by (seed, step, round, row) -- see _row_seeds
        self.gens = {
            "shuffle": torch.Generator().manual_seed(config.seed + 1),
            "selection": torch.Generator(device=self.device).manual_seed(config.seed + 2),
        }
        self.step, self.cursor = 0, {"epoch": 0, "pos": 0}
        validate_objective_params(self.objective_name, config.objective.params)
        if (self.objective_name == "kl_cov" and o.ppo_epochs == 1 and o.num_minibatches == 1):
            how = "set optim.num_minibatches or optim.ppo_epochs above 1"
            warnings.warn(ON_POLICY_KL_COV.format(how=how), UserWarning, stacklevel=2)
        self.writer = None
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            self.writer = open_run_writer(self.out, config, resume=resume, run_info={  # + report_to backends
                "objective_resolved": self.objective_name, "world_size": self.dist.world})
        if resume:
            self._restore()
        elif self.writer is not None:
            self.writer.truncate_from(0)
        if self.dist.is_main:
            save_run_config(self.out, {**config.to_dict(), "objective_resolved": self.objective_name,
                                       "world_size": self.dist.world})
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda"
                         else nullcontext())
        self.update = PolicyUpdate(model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                                   objective=self.objective, objective_name=self.objective_name,
                                   selects=self.objective_name in SELECTION_OBJECTIVES, config=config,
                                   generators=self.gens, dist=self.dist, device=self.device,
                                   autocast=self.autocast, max_new=self.max_new, out=self.out)

    def close(self) -> None:
        """Release the run folder (done by :meth:`train` when it returns or raises)."""
        if self.lock is not None:
            self.lock.release()

    def _restore(self):
        ck = load_checkpoint(self.out)
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        restore_rng_state(ck["rng"], self.gens)
        self.step, self.cursor = ck["step"], dict(ck["cursor"])
        if self.writer is not None:
            self.writer.truncate_from(self.step)

    def _check_weights_finite(self, what: str) -> None:
        """Never write non-finite weights: raise before a checkpoint or the final model is saved."""
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            raise NonFiniteLossError(f"the weights are non-finite after step {self.step - 1}; {what} was not "
                                     f"written and the last good checkpoint ({self.out / CHECKPOINT_NAME}) "
                                     "is "
                                     f"kept. To continue: {NON_FINITE_ADVICE}")

    def _save(self):
        if not self.dist.is_main:
            return
        self._check_weights_finite("the checkpoint")
        save_checkpoint(self.out, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                        generators=self.gens, step=self.step, cursor=self.cursor)

    # ------------------------------------------------------------------------------------------------
    # rollout: prompts, sampling with dynamic sampling, scoring
    # ------------------------------------------------------------------------------------------------

    def _next_prompts(self, n: int):
        """``n`` training problems from a seeded shuffled order, advancing the (checkpointed) cursor."""
        out = []
        while len(out) < n:
            order = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.cursor["epoch"])
            perm = torch.randperm(len(self.train_set), generator=order)
            take = perm[self.cursor["pos"]:self.cursor["pos"] + n - len(out)].tolist()
            out += [self.train_set[i] for i in take]
            self.cursor["pos"] += len(take)
            if self.cursor["pos"] >= len(self.train_set):
                self.cursor = {"epoch": self.cursor["epoch"] + 1, "pos": 0}
        return out

    def _row_seeds(self, round_: int, rows: range) -> list[int]:
        """Sampling seed of each global rollout row: a hash of (seed, step, round, row)."""

        def h(i):
            key = f"{self.cfg.seed}/{self.step}/{round_}/{i}".encode()
            return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & (2**63 - 1)

        return [h(i) for i in rows]

    def _sample_groups(self, batch, round_: int):
        """Sample the groups of ``batch`` (this rank's block of them) and all-gather them.

        Returns ``[(rollout, global_row_offset)]`` in rank order and the global ``[G * n]`` rewards."""
        n, rc = self.cfg.rollout.group_size, self.cfg.rollout
        g0, g1 = self.dist.block(len(batch))
        part = None
        if g1 > g0:
            reps = [p for p in batch[g0:g1] for _ in range(n)]
            ro = generate(self.model, self.tok, [p.prompt for p in reps], max_new_tokens=self.max_new,
                          temperature=rc.temperature,
                          row_seeds=self._row_seeds(round_, range(g0 * n, g1 * n)))
            rewards = torch.tensor([self.task.verify(p, t) for p, t in zip(reps, ro.texts)])
            part = (ro, rewards)
            if self.dist.enabled:
                part = (Rollout(ro.input_ids.cpu(), ro.attention_mask.cpu(), ro.response_mask.cpu(),
                                ro.prompt_len, ro.texts), rewards)
        parts = [p for p in gather_objects(part, self.dist) if p is not None]
        if self.dist.enabled:
            parts = [(Rollout(r.input_ids.to(self.device), r.attention_mask.to(self.device),
                              r.response_mask.to(self.device), r.prompt_len, r.texts), w) for r, w in parts]
        offsets, off = [], 0
        for r, _ in parts:
            offsets.append(off)
            off += r.input_ids.shape[0]
        return [(r, o) for (r, _), o in zip(parts, offsets)], torch.cat([w for _, w in parts])

    def _rollout(self):
        """One rollout batch: sample groups round by round, dropping zero-variance groups (dynamic sampling).

        Returns ``(rollout, rewards [B], info)``, or ``(None, None, info)`` when every group was dropped."""
        rc, n = self.cfg.rollout, self.cfg.rollout.group_size
        kept, problems, raw_rewards, kept_rewards, dropped, rounds, n_tok = [], [], [], [], 0, 0, 0
        while rounds < rc.max_sampling_rounds and len(problems) < rc.prompts_per_step:
            rounds += 1
            batch = self._next_prompts(rc.prompts_per_step - len(problems))
            parts, rewards = self._sample_groups(batch, rounds)
            raw_rewards.append(rewards)
            n_tok += sum(int(r.response_mask.sum()) for r, _ in parts)
            flat = (zero_variance_groups(rewards, n) if rc.dynamic_sampling
                    else torch.zeros(len(batch), dtype=torch.bool))
            dropped += int(flat.sum())
            keep_rows = {g * n + j for g in range(len(batch)) if not flat[g] for j in range(n)}
            kept_rewards.append(rewards[sorted(keep_rows)])  # concat order: global row order per round
            for ro, off in parts:
                kept.append((ro, [i for i in range(ro.input_ids.shape[0]) if off + i in keep_rows]))
            problems += [batch[g] for g in range(len(batch)) if not flat[g]]
            if not rc.dynamic_sampling:
                break
        kept = [(ro, rows) for ro, rows in kept if rows]
        info = {ROLLOUT_ROUNDS: rounds, ROLLOUT_TOKENS: n_tok, ROLLOUT_GROUPS: len(problems),
                ROLLOUT_GROUPS_DROPPED: dropped, REWARD_RAW_MEAN: float(torch.cat(raw_rewards).mean())}
        if not problems:
            return None, None, info
        return concat_rollouts(kept, self.tok.pad_token_id), torch.cat(kept_rewards), info

    def _score_rows(self, model, ro, rows=None, *, with_entropy=False):
        """``score_rows`` (no grad, float32, sharded over ranks) with the trainer's micro-batch size."""
        return score_rows(model, ro, rows, micro_batch_size=self.cfg.optim.micro_batch_size,
                          autocast=self.autocast, dist=self.dist, device=self.device,
                          with_entropy=with_entropy, temperature=self.cfg.rollout.temperature)

    # ------------------------------------------------------------------------------------------------
    # validation
    # ------------------------------------------------------------------------------------------------

    def _validate(self):
        c = self.cfg
        v = evaluate(self.model, self.tok, self.task, self.val_set, n_samples=c.val_samples,
                     temperature=c.val_temperature, max_new_tokens=self.max_new, seed=c.seed + 12345)
        return {VAL_ACC: v["acc_greedy"], VAL_ACC_SAMPLED: v["acc_sampled"], VAL_ACC_T1: v["acc_t1"],
                VAL_ENTROPY: v["entropy"], VAL_RESPONSE_LEN: v["response_len"]}

    # ------------------------------------------------------------------------------------------------
    # the loop: validate, rollout, score, update, log
    # ------------------------------------------------------------------------------------------------

    def train(self) -> list[dict]:
        """Run from ``self.step`` to ``config.steps``; returns the metric records written by this call.

        Raises:
          NonFiniteLossError: a log-probability, loss, gradient or weight became NaN/inf (nothing
            non-finite is applied or saved).
          NoUpdatesError: every rollout step of this call dropped all its groups, so the policy never
            changed (all rewards of every group equal).
        """
        try:
            return self._train()
        finally:
            if self.writer is not None:
                self.writer.close()
            self.close()

    def _train(self) -> list[dict]:
        from tqdm.auto import tqdm

        c, n = self.cfg, self.cfg.rollout.group_size
        records = []
        bar = tqdm(range(self.step, c.steps), initial=self.step, total=c.steps,
                   desc=f"train {self.objective_name}", disable=not (self.progress and self.dist.is_main))
        for _ in bar:
            t_step = time.time()
            rec = {STEP: self.step}
            # ------------------------------------------------------------ validation (policy before update)
            t0 = time.time()
            if self.step % c.val_every == 0 and self.dist.is_main:
                rec.update(self._validate())
            rec[TIME_VAL] = time.time() - t0
            # ---------------------------------------------------------------- rollout
            t0 = time.time()
            ro, rewards, info = self._rollout()
            rec.update(info)
            rec[TIME_ROLLOUT] = time.time() - t0
            if ro is not None:
                # -------------------------------------------------------- score: π_old, entropy, reference
                t0 = time.time()
                old_lp, ent = self._score_rows(self.model, ro, with_entropy=True)
                ref_lp = self._score_rows(self.ref_model, ro) if self.ref_model is not None else None
                mask = ro.response_mask
                adv = group_advantages(rewards, n, c.objective.advantage).to(self.device)
                adv = adv[:, None].repeat(1, mask.shape[1])  # [B] -> [B, R], per token
                rec[ENTROPY_TRAIN] = float(sequence_entropy(ent, mask))
                rec[ENTROPY_TOKEN_MEAN] = float((ent * mask).sum() / mask.sum().clamp_min(1))
                cov = theory.token_covariance(old_lp, adv, mask)
                rec[COV_BATCH_MEAN] = float(cov.sum() / mask.sum().clamp_min(1))
                nonempty = mask.any(-1)  # rows are stored group by group
                rec[COV_RESPONSE] = float(theory.response_covariance(
                    old_lp[nonempty], mask[nonempty], adv[nonempty, 0],
                    torch.arange(len(mask), device=mask.device)[nonempty] // n, "pg")["batch_mean"])
                rec[REWARD_MEAN] = float(rewards.mean())
                rec[ROLLOUT_RESPONSE_LEN] = float(mask.sum(-1).float().mean())
                rec[TIME_SCORE] = time.time() - t0
                # ------------------------------------------------------------ update: llm_rl/update.py
                t0 = time.time()
                rec.update(self.update(RolloutBatch(ro, old_lp, adv, ref_lp), step=self.step))
                rec[TIME_UPDATE] = time.time() - t0
            # ---------------------------------------------------------------- log + checkpoint
            self.step += 1
            rec[TIME_STEP] = time.time() - t_step
            if self.writer is not None:
                self.writer.write(rec)
            records.append(rec)
            if ENTROPY_TRAIN in rec:  # a step whose groups were all dropped has neither
                bar.set_postfix(H=f"{rec[ENTROPY_TRAIN]:.3f}", R=f"{rec[REWARD_MEAN]:.2f}")
            if self.step % c.checkpoint_every == 0 or self.step == c.steps:
                self._save()
        if records and not any(r.get(OPTIM_UPDATES) for r in records):
            raise NoUpdatesError(
                f"no optimizer update in {len(records)} rollout step(s): every group of every step had equal "
                f"rewards (all right or all wrong; {records[-1].get(ROLLOUT_GROUPS_DROPPED, 0)} group(s) "
                "dropped in the last step), so the policy never changed. Use a task the model solves "
                "sometimes, a larger --group-size or more --max-sampling-rounds")
        if self.step == c.steps and self.dist.is_main:  # final policy: one extra line with step == steps
            self._check_weights_finite("the final model")
            final = {STEP: c.steps, **self._validate()}
            self.writer.truncate_from(c.steps)
            self.writer.write(final)
            records.append(final)
            save_policy(self.model, self.tok, self.out / "model", dtype=self.save_dtype)
        return records


__all__ = ["NoUpdatesError", "NonFiniteLossError", "OBJECTIVE_ALIASES", "SELECTION_OBJECTIVES", "Trainer",
           "resolve_objective_name"]
