"""Validation of a policy on a task's held-out split.

Reports (see :mod:`llm_rl.metrics` for the key names):

- ``acc_greedy``: accuracy of the argmax (greedy) response;
- ``acc_sampled``: mean accuracy over ``n_samples`` responses per prompt at ``temperature`` (0.6 default);
- ``acc_t1`` and ``entropy``: accuracy and the paper's entropy H of responses sampled at temperature 1
  (full-vocabulary token entropy, masked mean per response, then mean over responses).

Prompts and stopping are those of training (:func:`llm_rl.rollout.generate`): chat prompts through the
tokenizer's chat template, responses ending at any stop id of :func:`llm_rl.rollout.stop_token_ids`.
With a task whose reward is not 0/1 (a prompt-file task's ``reward_fn``), the accuracies are mean rewards.
"""

from __future__ import annotations

import torch

from .rollout import generate, score, sequence_entropy
from .tasks.base import Problem, Task


@torch.no_grad()
def evaluate(model, tokenizer, task: Task, problems: list[Problem], *, n_samples: int = 4,
             temperature: float = 0.6, batch_size: int = 256, max_new_tokens: int | None = None,
             seed: int = 0) -> dict[str, float]:
    """Greedy / sampled accuracy and T=1 entropy on ``problems`` (deterministic given ``seed``).

    Returns:
      dict with ``acc_greedy``, ``acc_sampled``, ``acc_t1``, ``entropy`` (nats), ``response_len`` (mean
      tokens of the T=1 responses), ``n`` (number of problems).
    """
    if not problems:
        raise ValueError("problems must be non-empty")
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    max_new = max_new_tokens or task.max_response_chars
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    was_training = model.training
    model.eval()
    sums = {"acc_greedy": 0.0, "acc_sampled": 0.0, "acc_t1": 0.0, "entropy": 0.0, "response_len": 0.0}
    for s in range(0, len(problems), batch_size):
        chunk = problems[s:s + batch_size]
        prompts = [p.prompt for p in chunk]
        greedy = generate(model, tokenizer, prompts, max_new_tokens=max_new, greedy=True)
        sums["acc_greedy"] += sum(task.verify(p, t) for p, t in zip(chunk, greedy.texts))
        rep = [p for p in chunk for _ in range(n_samples)]
        sampled = generate(model, tokenizer, [p.prompt for p in rep], max_new_tokens=max_new,
                           temperature=temperature, generator=gen)
        sums["acc_sampled"] += sum(task.verify(p, t) for p, t in zip(rep, sampled.texts)) / n_samples
        t1 = generate(model, tokenizer, prompts, max_new_tokens=max_new, temperature=1.0, generator=gen)
        sums["acc_t1"] += sum(task.verify(p, t) for p, t in zip(chunk, t1.texts))
        _, ent = score(model, t1.input_ids, t1.attention_mask, t1.prompt_len, with_entropy=True)
        sums["entropy"] += float(sequence_entropy(ent, t1.response_mask)) * len(chunk)
        sums["response_len"] += float(t1.response_mask.sum())
    model.train(was_training)
    out = {k: v / len(problems) for k, v in sums.items()}
    out["n"] = float(len(problems))
    return out
