"""Supervised warm start of the default model, cached by config hash.

The RL experiments need a *starting policy that is uncertain*: if it always answered correctly (or never),
every GRPO group would have zero reward variance and nothing would be learned. So the warm start trains
on a mixture: for each training prompt, with probability ``misconception_frac`` the answer of a solver
with a systematic, learnable misconception (arithmetic: forgotten carries, see the task module; where it
gives the right answer anyway, the correct solution), with probability ``wrong_frac`` a plausible wrong
one (one random slip), otherwise the correct scratchpad solution. A model that fits this mixture puts
mass on all of them: sampled accuracy well inside (0, 1), non-trivial token entropy where slips and
misconceptions diverge, and — since the misconception outweighs the correct answer where it applies — a
*greedy* answer that is wrong on those problems, as for a base model whose top answer is often wrong.
Defaults per task: ``Task.warm_start_mix``.

Simplifications: plain next-token cross-entropy on response tokens only (prompt tokens are context),
AdamW with linear warm-up then cosine decay, fixed number of steps, no early stopping.

Cache: ``$ENTROPY_MECH_CACHE/pretrain/<task>-<sha256(config)[:12]>/`` (default cache root
``~/.cache/entropy-mechanism``) holds the ``save_pretrained`` model + tokenizer and ``pretrain.json`` with
the config and validation metrics. It is written into a temporary directory and renamed, so a killed
pretraining never leaves a half-written cache entry; a later call with the same config reuses it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from rundir.files import TEMP_SUFFIX, atomic_write_json, environment_info, sweep_stale_temps, temp_prefix

from .evaluate import evaluate
from .model import build_default_policy, check_model_sizes, save_policy
from .rollout import encode_prompts, position_ids_from_mask
from .tasks import TASKS, make_splits, make_task

CACHE_VERSION = 1  # bump when the pretraining recipe changes in a way the config does not capture


@dataclass
class PretrainConfig:
    """Everything that determines the warm-started model (its hash is the cache key)."""

    task: str = "arithmetic"
    """task name (see llm_rl.tasks.TASKS)"""
    task_knobs: dict = field(default_factory=dict)
    """difficulty knobs passed to the task constructor"""
    split_seed: int = 0
    """seed of the fixed train/validation splits (shared with RL runs)"""
    n_train: int = 4000
    """number of training prompts"""
    n_val: int = 256
    """number of validation prompts"""
    wrong_frac: float | None = None
    """probability that a training example uses a plausible wrong solution (a random one-off slip);
    None: the task's default (``Task.warm_start_mix``)"""
    misconception_frac: float | None = None
    """probability that a training example uses the task's systematic misconception
    (``Task.misconceived_solution``, e.g. forgetting carries) where it changes the answer; above the
    correct share it makes the greedy answer wrong on those problems, which RL can then fix; None: the
    task's default (``Task.warm_start_mix``)"""
    steps: int = 3000
    """optimizer steps"""
    batch_size: int = 64
    """sequences per step"""
    lr: float = 3e-3
    """peak AdamW learning rate"""
    weight_decay: float = 0.01
    """AdamW weight decay"""
    warmup_steps: int = 100
    """linear warm-up steps before cosine decay to 10% of lr"""
    seed: int = 0
    """seed of model initialisation and example sampling"""
    model_sizes: dict = field(default_factory=dict)
    """overrides of llm_rl.model.default_model_config sizes (hidden_size, num_layers, ...)"""

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; choose one of: {', '.join(sorted(TASKS))}")
        task = make_task(self.task, **self.task_knobs)  # validates knobs
        if self.wrong_frac is None:
            self.wrong_frac = task.warm_start_mix[0]
        if self.misconception_frac is None:
            self.misconception_frac = task.warm_start_mix[1]
        for name in ("n_train", "n_val", "steps", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be a non-negative int, got {self.warmup_steps!r}")
        for name in ("wrong_frac", "misconception_frac"):
            if not isinstance(getattr(self, name), (int, float)) or not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be a fraction in [0, 1), got {getattr(self, name)!r}")
        if self.wrong_frac + self.misconception_frac >= 1.0:
            raise ValueError("wrong_frac + misconception_frac must be < 1 (some examples must be correct)")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ValueError("lr must be > 0 and weight_decay >= 0")
        check_model_sizes(self.model_sizes)

    def digest(self) -> str:
        """sha256 of the canonical JSON of this config (plus the recipe version and the content hash of
        every file named by a ``*_path`` task knob, so an edited prompt file is never served stale)."""
        files = {k: hashlib.sha256(Path(v).read_bytes()).hexdigest()
                 for k, v in sorted(self.task_knobs.items())
                 if k.endswith("_path") and isinstance(v, str) and Path(v).is_file()}
        blob = json.dumps({"v": CACHE_VERSION, **dataclasses.asdict(self),
                           **({"files": files} if files else {})},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


def cache_root() -> Path:
    """``$ENTROPY_MECH_CACHE`` or ``~/.cache/entropy-mechanism``."""
    return Path(os.environ.get("ENTROPY_MECH_CACHE") or Path.home() / ".cache" / "entropy-mechanism")


def cache_path(config: PretrainConfig) -> Path:
    """Directory of the cached warm start for ``config``."""
    return cache_root() / "pretrain" / f"{config.task}-{config.digest()[:12]}"


def _encode_pairs(tokenizer, prompts, responses):
    """Left-padded ``bos+prompt+response+eos`` ids, mask and a loss mask on response+eos tokens."""
    ids, amask = encode_prompts(tokenizer, prompts)
    resp = [tokenizer(r, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for r in responses]
    R = max(len(r) for r in resp)
    r_ids = torch.full((len(resp), R), tokenizer.pad_token_id, dtype=torch.long)
    r_mask = torch.zeros((len(resp), R), dtype=torch.long)
    for i, r in enumerate(resp):
        r_ids[i, :len(r)] = torch.tensor(r)
        r_mask[i, :len(r)] = 1
    return torch.cat([ids, r_ids], 1), torch.cat([amask, torch.ones_like(r_ids)], 1), r_mask, ids.shape[1]


def _training_response(task, problem, rng: random.Random, config: PretrainConfig) -> str:
    """Misconceived (where it applies) with prob. ``misconception_frac``, one-slip wrong with prob.
    ``wrong_frac``, else correct."""
    r = rng.random()
    if r < config.misconception_frac:
        misconceived = task.misconceived_solution(problem)
        if misconceived is not None:
            return misconceived
    elif r < config.misconception_frac + config.wrong_frac:
        return task.wrong_solution(problem, rng)
    return task.solution(problem, rng)


def pretrain(config: PretrainConfig, out_dir: str | os.PathLike, *, progress: bool = True) -> dict:
    """Run the warm start and save model + tokenizer + ``pretrain.json`` into ``out_dir``.

    Returns:
      the validation metrics of :func:`llm_rl.evaluate.evaluate` plus ``wall_s`` and ``final_loss``.
    """
    from tqdm.auto import tqdm

    task = make_task(config.task, **config.task_knobs)
    train, val = make_splits(task, config.n_train, config.n_val, config.split_seed)
    model, tok = build_default_policy(config.seed, **config.model_sizes)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                            betas=(0.9, 0.95))

    def lr_at(step):
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        frac = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    rng = random.Random(f"pretrain/{config.seed}")
    t0, loss_ema = time.time(), None
    bar = tqdm(range(config.steps), desc=f"pretrain {config.task}", disable=not progress)
    for _ in bar:
        batch = [train[rng.randrange(len(train))] for _ in range(config.batch_size)]
        responses = [_training_response(task, p, rng, config) for p in batch]
        ids, amask, rmask, P = _encode_pairs(tok, [p.prompt for p in batch], responses)
        R = ids.shape[1] - P
        logits = model(input_ids=ids, attention_mask=amask, position_ids=position_ids_from_mask(amask),
                       logits_to_keep=R + 1).logits[:, :-1]  # [B, R, V]
        nll = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), ids[:, P:].reshape(-1),
                              reduction="none").reshape(rmask.shape)
        loss = (nll * rmask).sum() / rmask.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        lv = float(loss.detach())
        loss_ema = lv if loss_ema is None else 0.98 * loss_ema + 0.02 * lv
        bar.set_postfix(loss=f"{loss_ema:.3f}")
    metrics = evaluate(model, tok, task, val, seed=config.seed)
    metrics.update(wall_s=time.time() - t0, final_loss=loss_ema)
    save_policy(model, tok, out_dir)
    atomic_write_json(Path(out_dir) / "pretrain.json",
                      {"config": config, "digest": config.digest(), "val": metrics,
                       "environment": environment_info()})
    return metrics


def get_or_pretrain(config: PretrainConfig, *, force: bool = False,
                    progress: bool = True) -> tuple[Path, dict]:
    """Path of the cached warm start for ``config`` (pretraining it first if absent or ``force``).

    Returns:
      ``(model_dir, info)`` where ``info`` is the content of ``pretrain.json`` plus ``cached`` (bool).
    """
    final = cache_path(config)
    if (final / "pretrain.json").is_file() and not force:
        info = json.loads((final / "pretrain.json").read_text())
        return final, {**info, "cached": True}
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(final.parent)  # warm starts killed mid-way (their finally never ran)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(final), suffix=TEMP_SUFFIX, dir=final.parent))
    try:
        pretrain(config, tmp, progress=progress)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    info = json.loads((final / "pretrain.json").read_text())
    return final, {**info, "cached": False}
