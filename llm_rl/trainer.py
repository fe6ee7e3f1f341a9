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
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch

import theory
from theory.aggregation import aggregate
from theory.objectives import compute_cov_stats, entropy_bonus, get_objective, reference_kl
from rundir.files import save_run_config

from .advantages import group_advantages, zero_variance_groups
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .diagnostics import StepProbe
from .distributed import all_reduce_grads_, all_reduce_sum_, gather_objects, init_distributed
from .evaluate import evaluate
from .metrics import MetricsWriter
from .objective_choice import (OBJECTIVE_ALIASES, SELECTION_OBJECTIVES, check_objective_params,
                               resolve_objective_name)
from .model import load_policy, resolve_device
from .rollout import Rollout, concat_rollouts, generate, score, sequence_entropy
from .tasks import make_splits, make_task
from .tokenizer import warn_unknown_characters


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the run stops and the last checkpoint (written before it) is kept."""


class Trainer:
    """Holds model, optimizer, data cursor and RNGs; :meth:`train` runs the loop (see module docstring).

    Args:
      config: the run configuration (``config.model`` must name a model directory).
      out_dir: run directory (config.json, metrics.jsonl, checkpoint.pt, final model in ``model/``).
      resume: continue from ``out_dir/checkpoint.pt`` (the config must be the saved one).
      progress: show a tqdm progress bar.
    """

    def __init__(self, config: TrainConfig, out_dir, *, resume: bool = False, progress: bool = True):
        if not isinstance(config, TrainConfig):
            raise ValueError("config must be a TrainConfig")
        if not config.model:
            raise ValueError("config.model must name a model directory (see llm_rl.pretrain.get_or_pretrain)")
        self.cfg, self.out = config, Path(out_dir)
        self.progress = progress
        self.objective_name = resolve_objective_name(config.objective.name)
        self.objective = get_objective(self.objective_name)
        self.dist = init_distributed(config.device)
        self.device = resolve_device(config.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        self.model, self.tok = load_policy(config.model, device=self.device)
        self.model.train()
        self.ref_model = None
        if config.objective.ref_kl_coef > 0:
            self.ref_model = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.task = make_task(config.data.task, **config.data.task_knobs)
        self.train_set, self.val_set = make_splits(self.task, config.data.n_train, config.data.n_val,
                                                   config.data.split_seed)
        warn_unknown_characters(self.tok, [p.prompt for p in self.train_set + self.val_set])
        self.max_new = config.rollout.max_new_tokens or self.task.max_response_chars
        o = config.optim
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
        check_objective_params(self.objective_name, self.objective, config.objective.params)
        if (self.objective_name == "kl_cov" and o.ppo_epochs == 1 and o.num_minibatches == 1):
            warnings.warn("kl_cov with ppo_epochs=1 and num_minibatches=1 runs fully on-policy, where its "
                          "KL penalty is exactly zero: it reduces to unclipped vanilla policy gradient",
                          stacklevel=2)
        self.writer = None
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            self.writer = MetricsWriter(self.out / "metrics.jsonl",
                                        self.out / "tensorboard" if config.tensorboard else None)
        if resume:
            self._restore()
        elif self.writer is not None:
            self.writer.truncate_from(0)
        if self.dist.is_main:
            save_run_config(self.out, {**config.to_dict(), "objective_resolved": self.objective_name,
                                       "world_size": self.dist.world})
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda"
                         else nullcontext())

    # ------------------------------------------------------------------------------------------------
    # setup helpers
    # ------------------------------------------------------------------------------------------------

    def _restore(self):
        ck = load_checkpoint(self.out)
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        from .checkpoint import restore_rng_state

        restore_rng_state(ck["rng"], self.gens)
        self.step, self.cursor = ck["step"], dict(ck["cursor"])
        if self.writer is not None:
            self.writer.truncate_from(self.step)

    def _save(self):
        if not self.dist.is_main:
            return
        save_checkpoint(self.out, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                        generators=self.gens, step=self.step, cursor=self.cursor)

    def _next_prompts(self, n: int):
        """``n`` training problems from a seeded shuffled order, advancing the (checkpointed) cursor."""
        out = []
        while len(out) < n:
            perm = torch.randperm(len(self.train_set),
                                  generator=torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.cursor["epoch"]))
            take = perm[self.cursor["pos"]:self.cursor["pos"] + n - len(out)].tolist()
            out += [self.train_set[i] for i in take]
            self.cursor["pos"] += len(take)
            if self.cursor["pos"] >= len(self.train_set):
                self.cursor = {"epoch": self.cursor["epoch"] + 1, "pos": 0}
        return out

    def _score_sharded(self, model, ro, rows=None, *, with_entropy=False):
        """:meth:`_score_batch` with the rows split over ranks and the results all-gathered."""
        rows = torch.arange(ro.input_ids.shape[0]) if rows is None else rows.cpu()
        if not self.dist.enabled:
            return self._score_batch(model, ro, rows, with_entropy=with_entropy)
        a, b = self.dist.block(len(rows))
        res = self._score_batch(model, ro, rows[a:b], with_entropy=with_entropy) if b > a else None
        if res is not None:
            res = tuple(t.cpu() for t in res) if with_entropy else res.cpu()
        parts = [p for p in gather_objects(res, self.dist) if p is not None]
        if with_entropy:
            return tuple(torch.cat([p[i] for p in parts]).to(self.device) for i in range(2))
        return torch.cat(parts).to(self.device)

    def _score_batch(self, model, ro, rows=None, *, with_entropy=False):
        """``score`` in micro-batches (no grad) over rows ``rows`` of rollout ``ro``."""
        rows = torch.arange(ro.input_ids.shape[0]) if rows is None else rows
        lps, ents = [], []
        mb = self.cfg.optim.micro_batch_size
        with torch.no_grad(), self.autocast:
            for s in range(0, len(rows), mb):
                r = rows[s:s + mb].to(ro.input_ids.device)
                res = score(model, ro.input_ids[r], ro.attention_mask[r], ro.prompt_len, with_entropy=with_entropy)
                lps.append((res[0] if with_entropy else res).float())
                if with_entropy:
                    ents.append(res[1].float())
        return (torch.cat(lps), torch.cat(ents)) if with_entropy else torch.cat(lps)

    # ------------------------------------------------------------------------------------------------
    # one rollout step
    # ------------------------------------------------------------------------------------------------

    def _row_seeds(self, round_: int, rows: range) -> list[int]:
        """Sampling seed of each global rollout row: a hash of (seed, step, round, row)."""
        import hashlib

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
                          temperature=rc.temperature, row_seeds=self._row_seeds(round_, range(g0 * n, g1 * n)))
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
        rc, n = self.cfg.rollout, self.cfg.rollout.group_size
        kept, problems, raw_rewards, kept_rewards, dropped, rounds, n_tok = [], [], [], [], 0, 0, 0
        while rounds < rc.max_sampling_rounds and len(problems) < rc.prompts_per_step:
            rounds += 1
            batch = self._next_prompts(rc.prompts_per_step - len(problems))
            parts, rewards = self._sample_groups(batch, rounds)
            raw_rewards.append(rewards)
            n_tok += sum(int(r.response_mask.sum()) for r, _ in parts)
            flat = zero_variance_groups(rewards, n) if rc.dynamic_sampling else torch.zeros(len(batch), dtype=torch.bool)
            dropped += int(flat.sum())
            keep_rows = {g * n + j for g in range(len(batch)) if not flat[g] for j in range(n)}
            kept_rewards.append(rewards[sorted(keep_rows)])  # concat order: global row order per round
            for ro, off in parts:
                kept.append((ro, [i for i in range(ro.input_ids.shape[0]) if off + i in keep_rows]))
            problems += [batch[g] for g in range(len(batch)) if not flat[g]]
            if not rc.dynamic_sampling:
                break
        kept = [(ro, rows) for ro, rows in kept if rows]
        info = {"rollout/rounds": rounds, "rollout/tokens": n_tok, "rollout/groups": len(problems),
                "rollout/groups_dropped": dropped,
                "reward/raw_mean": float(torch.cat(raw_rewards).mean())}
        if not problems:
            return None, None, info
        return concat_rollouts(kept, self.tok.pad_token_id), torch.cat(kept_rewards), info

    def _update(self, ro, old_lp, adv, ref_lp):
        """ppo_epochs × num_minibatches optimizer steps on the rollout batch; returns metric means.

        Each mini-batch is split into per-rank contiguous blocks (the whole mini-batch when not
        distributed), each block into micro-batches; gradients accumulate with whole-mini-batch
        denominators and are SUM-all-reduced across ranks before clipping."""
        o, oc = self.cfg.optim, self.cfg.objective
        B, R = ro.response_mask.shape
        mask = ro.response_mask
        tok_sums, tok_w, step_sums, grad_norms, n_updates = {}, {}, {}, [], 0
        diagnosed, diagnose_now = {}, bool(self.cfg.diagnose_every) and self.step % self.cfg.diagnose_every == 0
        for _ in range(o.ppo_epochs):
            perm = torch.randperm(B, generator=self.gens["shuffle"])
            for mini in torch.tensor_split(perm, min(o.num_minibatches, B)):
                mini = mini.to(self.device)
                m_mask = mask[mini]
                # whole-mini-batch denominators and (for Clip-/KL-Cov) the token selection
                if oc.agg_mode == "token-mean":
                    denom = {"global_token_count": m_mask.sum()}
                elif oc.agg_mode == "seq-mean-token-sum-norm":
                    denom = {"norm_constant": float(len(mini) * self.max_new)}
                else:
                    denom = {"global_seq_count": m_mask.any(-1).sum()}
                stats = None
                if self.objective_name in SELECTION_OBJECTIVES:
                    cur = self._score_sharded(self.model, ro, mini)
                    stats = compute_cov_stats(cur, old_lp[mini], adv[mini], m_mask, objective=self.objective_name,
                                              generator=self.gens["selection"], **oc.params)
                a, b = self.dist.block(len(mini))
                mine = mini[a:b]
                bad = torch.zeros((), device=self.device)
                self.optimizer.zero_grad(set_to_none=True)
                for s in range(0, len(mine), o.micro_batch_size):
                    rows = mine[s:s + o.micro_batch_size]
                    mm = mask[rows]
                    with self.autocast:
                        lp = score(self.model, ro.input_ids[rows], ro.attention_mask[rows], ro.prompt_len).float()
                    if not bool(torch.isfinite(lp[mm]).all()):
                        bad.fill_(1.0)
                        break
                    loss_mat, met = self.objective(
                        lp, old_lp[rows], adv[rows], mm, **oc.params, generator=self.gens["selection"],
                        stats=None if stats is None else stats.rows(slice(a + s, a + s + len(rows))))
                    total_mat = loss_mat
                    if oc.entropy_coef:
                        e_mat, e_met = entropy_bonus(self._entropy_with_grad(ro, rows), mm, coef=oc.entropy_coef)
                        total_mat, met = total_mat + e_mat, {**met, **e_met}
                    if self.ref_model is not None:
                        k_mat, k_met = reference_kl(lp, ref_lp[rows], mm, coef=oc.ref_kl_coef,
                                                    estimator=oc.ref_kl_estimator)
                        total_mat, met = total_mat + k_mat, {**met, **k_met}
                    policy_loss = aggregate(loss_mat, mm, oc.agg_mode, **denom)
                    loss = aggregate(total_mat, mm, oc.agg_mode, **denom)
                    if not bool(torch.isfinite(loss)):
                        bad.fill_(1.0)
                        break
                    loss.backward()
                    # losses and counts add up over micro-batches (and ranks); rates are token-weighted
                    w = float(mm.sum())
                    for k, v in {**met, "loss/policy": policy_loss.detach(), "loss/total": loss.detach()}.items():
                        if k.startswith("loss/") or k.endswith("_count") or k == "objective/num_tokens":
                            step_sums[k] = step_sums.get(k, 0.0) + float(v)
                        else:
                            tok_sums[k] = tok_sums.get(k, 0.0) + float(v) * w
                            tok_w[k] = tok_w.get(k, 0.0) + w
                if bool(all_reduce_sum_(bad, self.dist) > 0):
                    self._non_finite("log-probabilities or loss")
                all_reduce_grads_(self.model.parameters(), self.dist)
                gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                                    o.grad_clip if o.grad_clip > 0 else float("inf"))
                grad_norms.append(float(gn))
                probe = self._probe(ro, mini, adv) if diagnose_now and n_updates == 0 else None
                self.optimizer.step()
                if probe is not None:
                    diagnosed, _ = probe.finish(self.model, self.out, self.step)
                self.scheduler.step()
                n_updates += 1
        m_ts, m_tw, m_ss = {}, {}, {}
        for ts, tw, ss in gather_objects((tok_sums, tok_w, step_sums), self.dist):
            for k, v in ss.items():
                m_ss[k] = m_ss.get(k, 0.0) + v
            for k, v in ts.items():
                m_ts[k], m_tw[k] = m_ts.get(k, 0.0) + v, m_tw.get(k, 0.0) + tw[k]
        out = {k: v / max(n_updates, 1) for k, v in m_ss.items()}  # per optimizer step
        out.update({k: m_ts[k] / max(m_tw[k], 1e-12) for k in m_ts})
        out.update({"optim/updates": n_updates, "optim/lr": self.scheduler.get_last_lr()[0],
                    "optim/grad_norm": sum(grad_norms) / max(len(grad_norms), 1)})
        return {**out, **diagnosed}

    def _probe(self, ro, mini, adv):
        """Probe states of mini-batch ``mini`` before its step (main rank; subsample seeded by seed, step)."""
        if not self.dist.is_main or not bool(ro.response_mask[mini].any()):
            return None
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_033 + self.step)
        groups = mini.cpu() // self.cfg.rollout.group_size  # rows are stored group by group
        return StepProbe(self.model, ro.input_ids[mini], ro.attention_mask[mini], ro.response_mask[mini],
                         ro.prompt_len, adv[mini], groups, max_states=self.cfg.diagnose_max_states,
                         generator=gen, autocast=self.autocast)

    def _non_finite(self, what: str):
        ck = self.out / "checkpoint.pt"
        where = f"the last good checkpoint is {ck}" if ck.exists() else "no checkpoint had been written yet"
        raise NonFiniteLossError(f"non-finite {what} at step {self.step} (objective {self.objective_name}); "
                                 f"the run stopped without applying this update; {where}")

    def _entropy_with_grad(self, ro, rows):
        """Differentiable per-token entropy ``[b, R]`` (only used when ``entropy_coef != 0``)."""
        R = ro.response_mask.shape[1]
        with self.autocast:
            out = self.model(input_ids=ro.input_ids[rows], attention_mask=ro.attention_mask[rows],
                             position_ids=(ro.attention_mask[rows].cumsum(-1) - 1).clamp_min(0),
                             logits_to_keep=R + 1)
        return theory.entropy(out.logits[:, :-1].float())

    def _validate(self):
        c = self.cfg
        v = evaluate(self.model, self.tok, self.task, self.val_set, n_samples=c.val_samples,
                     temperature=c.val_temperature, max_new_tokens=self.max_new, seed=c.seed + 12345)
        return {"val/acc": v["acc_greedy"], "val/acc_sampled": v["acc_sampled"], "val/acc_t1": v["acc_t1"],
                "val/entropy": v["entropy"], "val/response_len": v["response_len"]}

    # ------------------------------------------------------------------------------------------------
    # the loop
    # ------------------------------------------------------------------------------------------------

    def train(self) -> list[dict]:
        """Run from ``self.step`` to ``config.steps``; returns the metric records written by this call."""
        from tqdm.auto import tqdm

        c, n = self.cfg, self.cfg.rollout.group_size
        records = []
        bar = tqdm(range(self.step, c.steps), initial=self.step, total=c.steps,
                   desc=f"train {self.objective_name}", disable=not (self.progress and self.dist.is_main))
        for _ in bar:
            t_step = time.time()
            rec = {"step": self.step}
            # ---------------------------------------------------------------- validation (policy before update)
            t0 = time.time()
            if self.step % c.val_every == 0 and self.dist.is_main:
                rec.update(self._validate())
            rec["time/val_s"] = time.time() - t0
            # ---------------------------------------------------------------- rollout
            t0 = time.time()
            ro, rewards, info = self._rollout()
            rec.update(info)
            rec["time/rollout_s"] = time.time() - t0
            if ro is not None:
                # ------------------------------------------------------------ score: π_old, entropy, reference
                t0 = time.time()
                old_lp, ent = self._score_sharded(self.model, ro, with_entropy=True)
                ref_lp = self._score_sharded(self.ref_model, ro) if self.ref_model is not None else None
                mask = ro.response_mask
                adv = group_advantages(rewards, n, c.objective.advantage).to(self.device)[:, None].repeat(1, mask.shape[1])
                rec["entropy/train"] = float(sequence_entropy(ent, mask))
                rec["entropy/token_mean"] = float((ent * mask).sum() / mask.sum().clamp_min(1))
                rec["cov/batch_mean"] = float(theory.token_covariance(old_lp, adv, mask).sum() / mask.sum().clamp_min(1))
                rec["reward/mean"] = float(rewards.mean())
                rec["rollout/response_len"] = float(mask.sum(-1).float().mean())
                rec["time/score_s"] = time.time() - t0
                # ------------------------------------------------------------ update
                t0 = time.time()
                rec.update(self._update(ro, old_lp, adv, ref_lp))
                rec["time/update_s"] = time.time() - t0
            # ---------------------------------------------------------------- log + checkpoint
            self.step += 1
            rec["time/step_s"] = time.time() - t_step
            if self.writer is not None:
                self.writer.write(rec)
            records.append(rec)
            bar.set_postfix(H=f"{rec.get('entropy/train', float('nan')):.3f}",
                            R=f"{rec.get('reward/mean', float('nan')):.2f}")
            if self.step % c.checkpoint_every == 0 or self.step == c.steps:
                self._save()
        if self.step == c.steps and self.dist.is_main:  # final policy: one extra line with step == steps
            final = {"step": c.steps, **self._validate()}
            self.writer.truncate_from(c.steps)
            self.writer.write(final)
            records.append(final)
            self.model.save_pretrained(self.out / "model")
            self.tok.save_pretrained(self.out / "model")
        if self.writer is not None:
            self.writer.close()
        return records


__all__ = ["NonFiniteLossError", "OBJECTIVE_ALIASES", "SELECTION_OBJECTIVES", "Trainer", "resolve_objective_name"]
