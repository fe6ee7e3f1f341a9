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
AdamW with linear warm-up then cosine decay, fixed number of steps, no early stopping. On CUDA (``device``
``auto`` picks it when present) the forward pass runs under bf16 autocast with float32 master weights, as
the RL trainer (:func:`training_autocast`); the device is recorded in ``pretrain.json``, not in the key.

Cache: ``$ENTROPY_MECH_CACHE/pretrain/<task>-<sha256(config)[:12]>/`` (default cache root
``~/.cache/entropy-mechanism``) holds the ``save_pretrained`` model + tokenizer and ``pretrain.json`` with
the config and validation metrics. It is written into a temporary directory and renamed, so a killed
pretraining never leaves a half-written cache entry; a later call with the same config reuses it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from rundir.files import TEMP_SUFFIX, atomic_write_json, environment_info, sweep_stale_temps, temp_prefix

# PretrainConfig lives in the torch-free llm_rl.config (fast --help); imported here for callers of this module
from .config import CACHE_VERSION, PretrainConfig  # noqa: F401
from .evaluate import evaluate
from .model import build_default_policy, resolve_device, save_policy
from .rollout import encode_prompts, position_ids_from_mask
from .tasks import make_splits, make_task


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


def training_autocast(device: torch.device, bf16: bool | None = None):
    """The forward-pass context of the warm start: ``torch.autocast(device.type, dtype=bfloat16)`` when
    ``bf16`` (default: on CUDA only, as the RL trainer), else a no-op. The weights and AdamW state stay
    float32 (fp32 master weights); the loss is computed from ``logits.float()`` outside the context."""
    if not isinstance(device, torch.device):
        raise ValueError(f"device must be a torch.device, got {device!r}")
    if bf16 is None:
        bf16 = device.type == "cuda"
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def pretrain(config: PretrainConfig, out_dir: str | os.PathLike, *, progress: bool = True,
             device: str = "auto", bf16: bool | None = None) -> dict:
    """Run the warm start and save model + tokenizer + ``pretrain.json`` into ``out_dir``.

    Args:
      device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``; the model is initialised
        on CPU from ``config.seed`` and then moved, so its initial weights do not depend on the device.
      bf16: bf16 autocast of the forward pass (:func:`training_autocast`; default: on CUDA only).
    Returns:
      the validation metrics of :func:`llm_rl.evaluate.evaluate` plus ``wall_s`` and ``final_loss``.
    """
    from tqdm.auto import tqdm

    dev = resolve_device(device)
    task = make_task(config.task, **config.task_knobs)
    train, val = make_splits(task, config.n_train, config.n_val, config.split_seed)
    model, tok = build_default_policy(config.seed, **config.model_sizes)
    model.to(dev).train()
    autocast = training_autocast(dev, bf16)
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
        ids, amask, rmask, P = (t.to(dev) if torch.is_tensor(t) else t
                                for t in _encode_pairs(tok, [p.prompt for p in batch], responses))
        R = ids.shape[1] - P
        with autocast:  # bf16 matmuls on CUDA; the cross-entropy below runs in float32 outside it
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
                       "device": str(dev), "bf16_autocast": not isinstance(autocast, contextlib.nullcontext),
                       "environment": environment_info()})
    return metrics


def get_or_pretrain(config: PretrainConfig, *, force: bool = False, progress: bool = True,
                    device: str = "auto") -> tuple[Path, dict]:
    """Path of the cached warm start for ``config`` (pretraining it first, on ``device``, if absent or
    ``force``; the device is not part of the cache key: ``pretrain.json`` records where it ran).

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
        pretrain(config, tmp, progress=progress, device=device)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    info = json.loads((final / "pretrain.json").read_text())
    return final, {**info, "cached": False}
