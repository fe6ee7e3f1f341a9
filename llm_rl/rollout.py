"""Sampling responses from a causal LM with a KV cache, and re-scoring them (log-probs, entropy).

Generation is an explicit loop (not ``model.generate``) so that every random draw goes through the
caller's ``torch.Generator`` and no logits processor (top-k, repetition penalty, ...) silently changes the
sampling distribution: at temperature 1 the tokens are exact samples of the policy. Prompts are left-padded;
position ids are ``cumsum(attention_mask) - 1`` both here and in :func:`score` (whose forward pass is
:func:`llm_rl.forward.response_logits`), so a re-scoring forward pass sees exactly the positions seen
during generation. :func:`score_rows` re-scores rows of a rollout in micro-batches, sharded over
data-parallel ranks.

Prompts are built as TRL and verl build them: a chat prompt (:class:`llm_rl.tasks.base.ChatPrompt`) is
rendered by the tokenizer's chat template when it has one (no ``bos`` added: the template decides);
every other prompt is ``bos + prompt``. Generation stops at every stop id (:func:`stop_token_ids`):
the tokenizer's ``eos_token_id`` and every id of the model's ``generation_config.eos_token_id``.

Layout of a :class:`Rollout` (B sequences, P prompt columns, R response columns)::

    input_ids      [B, P + R]  <pad>..<bos> prompt | response tokens, then <pad> after the stop token
    attention_mask [B, P + R]  0 on left padding, 1 elsewhere
    response_mask  [B, R]      1 on generated tokens up to and including the stop token (<eos>)
"""

from __future__ import annotations

import inspect
from contextlib import nullcontext
from dataclasses import dataclass

import torch

import theory

from .distributed import DistInfo, gather_objects
from .forward import position_ids_from_mask, response_logits
from .tasks.base import chat_template_text


@dataclass
class Rollout:
    """A batch of prompts with sampled responses (see module docstring for shapes)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor
    prompt_len: int
    texts: list[str]

    @property
    def response_ids(self) -> torch.Tensor:
        """``[B, R]`` response token ids."""
        return self.input_ids[:, self.prompt_len:]


def encode_prompts(tokenizer, prompts: list[str], device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ``(input_ids, attention_mask)`` ``[B, P]``: each prompt's text tokenized without added
    special tokens, the text being the chat template's rendering of a chat prompt
    (:func:`llm_rl.tasks.base.chat_template_text`) and ``bos + prompt`` otherwise."""
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError("prompts must be a non-empty list of strings")
    bos = tokenizer.bos_token or ""
    texts = []
    for p in prompts:
        rendered = chat_template_text(tokenizer, p)
        texts.append(bos + p if rendered is None else rendered)
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]  # one batched call
    P = max(len(x) for x in ids)
    pad = tokenizer.pad_token_id
    input_ids = torch.full((len(ids), P), pad, dtype=torch.long)
    mask = torch.zeros((len(ids), P), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, P - len(x):] = torch.tensor(x, dtype=torch.long)
        mask[i, P - len(x):] = 1
    return input_ids.to(device), mask.to(device)


_U64 = 1 << 64
_GOLDEN, _MIX1, _MIX2 = (c - _U64 for c in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB))
# (splitmix64 constants as int64: the same bits, so wrapping int64 arithmetic reproduces the uint64 one)


def _as_int64(x: int) -> int:
    """The int64 value with the same low 64 bits as the Python int ``x``."""
    x %= _U64
    return x - _U64 if x >= 1 << 63 else x


def _shr(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 (``>>`` is arithmetic on negative values)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def _mix64(z: torch.Tensor) -> torch.Tensor:
    """splitmix64's output function on int64 tensors (products wrap modulo 2^64)."""
    z = (z ^ _shr(z, 30)) * _MIX1
    z = (z ^ _shr(z, 27)) * _MIX2
    return z ^ _shr(z, 31)


def row_keys(seeds: list[int], device=None) -> torch.Tensor:
    """``[B]`` int64 stream keys of per-row seeds (for :func:`row_uniforms`)."""
    return _mix64(torch.tensor([_as_int64(int(s)) for s in seeds], dtype=torch.long, device=device))


def row_uniforms(keys: torch.Tensor, t: int) -> torch.Tensor:
    """``[B]`` float64 uniforms in [0, 1): draw ``t`` (0, 1, ...) of row i's splitmix64 stream keyed
    ``keys[i]``, u = (mix64(key + (t + 1)·γ) >> 11) / 2^53. A counter-based generator: each row's draws
    depend only on its key and t, never on the other rows of the batch, and all rows draw in one op."""
    z = _mix64(keys + _as_int64((t + 1) * _GOLDEN))
    return _shr(z, 11).double() * 2.0**-53


def sample_inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``[B]`` token ids: the first index whose cumulative probability exceeds ``u · Σ probs`` (row-wise
    inverse CDF, equal in distribution to ``torch.multinomial(probs, 1)``); ``probs [B, V]``, ``u [B]``."""
    cdf = probs.double().cumsum(-1)
    tok = torch.searchsorted(cdf, (u.to(cdf.device) * cdf[:, -1]).unsqueeze(-1), right=True).squeeze(-1)
    return tok.clamp_max(probs.shape[-1] - 1)


def _cache_kwarg(model) -> str:
    """transformers >= 5.x names the KV-cache argument ``cache``; older versions ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _cache_of(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def stop_token_ids(model, tokenizer) -> list[int]:
    """Sorted ids that end a response: ``tokenizer.eos_token_id`` plus every id of the model's
    ``generation_config.eos_token_id`` (an int or a list; instruct models list several, e.g. Qwen's
    ``<|im_end|>`` and ``<|endoftext|>``). Empty when neither is set (responses then run to the cap).

    Raises:
      ValueError: a stop id that is not an int in ``[0, vocabulary size)``.
    """
    ids = [getattr(tokenizer, "eos_token_id", None)]
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids += list(gen_eos) if isinstance(gen_eos, (list, tuple)) else [gen_eos]
    out = set()
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    vocab = head.weight.shape[0] if getattr(head, "weight", None) is not None else None
    for i in ids:
        if i is None:
            continue
        if isinstance(i, bool) or not isinstance(i, int) or i < 0 or (vocab is not None and i >= vocab):
            raise ValueError(f"stop token id {i!r} (tokenizer eos / generation_config.eos_token_id) is not "
                             f"a token id of this model (vocabulary size {vocab})")
        out.add(i)
    return sorted(out)


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], *, max_new_tokens: int, temperature: float = 1.0,
             greedy: bool = False, generator: torch.Generator | None = None,
             row_seeds: list[int] | None = None, stop_ids: list[int] | None = None) -> Rollout:
    """Sample one response per prompt with a KV cache (repeat prompts for groups).

    Each step samples ``y_t ~ softmax(z_t / temperature)`` with ``generator`` (or takes the argmax when
    ``greedy``); a sequence stops after emitting any of ``stop_ids`` (default :func:`stop_token_ids`: the
    tokenizer's eos and every generation-config eos), which is kept in the response mask but not in the
    decoded text; all stop after ``max_new_tokens``. With
    ``row_seeds`` (one int per prompt) row i draws from its own counter-based stream keyed by
    ``row_seeds[i]`` (:func:`row_uniforms`, :func:`sample_inverse_cdf`), so its tokens do not depend on
    which other rows share the batch (data-parallel sharding) and all rows still sample in one op.
    """
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
    if not greedy and not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    device = next(model.parameters()).device
    if row_seeds is not None and len(row_seeds) != len(prompts):
        raise ValueError(f"row_seeds has {len(row_seeds)} entries for {len(prompts)} prompts")
    if stop_ids is not None and not all(isinstance(i, int) and not isinstance(i, bool) for i in stop_ids):
        raise ValueError(f"stop_ids must be a list of ints, got {stop_ids!r}")
    keys = None if row_seeds is None else row_keys(row_seeds, device)
    input_ids, attn = encode_prompts(tokenizer, prompts, device)
    B, P = input_ids.shape
    pad = tokenizer.pad_token_id
    stops = torch.tensor(stop_token_ids(model, tokenizer) if stop_ids is None else list(stop_ids),
                         dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    out = model(input_ids=input_ids, attention_mask=attn, position_ids=position_ids_from_mask(attn),
                use_cache=True, logits_to_keep=1)
    past = _cache_of(out)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    new_tokens, resp_mask = [], []
    for t in range(max_new_tokens):
        logits = out.logits[:, -1].float()  # [B, V]
        if greedy:
            tok = logits.argmax(-1)
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            if keys is None:
                tok = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            else:
                tok = sample_inverse_cdf(probs, row_uniforms(keys, t))
        tok = torch.where(done, torch.full_like(tok, pad), tok)
        resp_mask.append(~done)
        new_tokens.append(tok)
        done = done | torch.isin(tok, stops)
        if bool(done.all()):
            break
        attn = torch.cat([attn, torch.ones((B, 1), dtype=attn.dtype, device=device)], dim=1)
        pos = position_ids_from_mask(attn)[:, -1:]
        out = model(input_ids=tok[:, None], attention_mask=attn, position_ids=pos, use_cache=True,
                    **{_cache_kwarg(model): past})
        past = _cache_of(out)
    model.train(was_training)
    response = torch.stack(new_tokens, dim=1)  # [B, R]
    response_mask = torch.stack(resp_mask, dim=1)  # [B, R]
    full_ids = torch.cat([input_ids, response], dim=1)
    full_attn = torch.cat([attn[:, :P], torch.ones_like(response)], dim=1)
    # the stop token (the last masked one, if any) is not part of the text, special token or not
    texts = tokenizer.batch_decode(response.masked_fill(~response_mask | torch.isin(response, stops), pad),
                                   skip_special_tokens=True)
    return Rollout(full_ids, full_attn, response_mask, P, texts)


def score(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int, *,
          temperature: float = 1.0, with_entropy: bool = False, chunk_rows: int = 4096):
    """Log-probabilities of the response tokens (and optionally their full-vocabulary entropy).

    Runs the model on ``[B, P + R]`` keeping only the logits that predict response tokens
    (:func:`llm_rl.forward.response_logits`), then works through them ``chunk_rows`` rows at a time so
    no float32 ``[B·R, V]`` copy is made at once (the model's own logits tensor is the only full-size one).

    Returns:
      ``log_prob [B, R]`` (differentiable, of ``softmax(z / temperature)``), and if ``with_entropy``
      also ``entropy [B, R]`` (no grad; ``theory.entropy`` per token, nats).
    """
    logits = response_logits(model, input_ids, attention_mask, prompt_len)  # [B, R, V]
    targets = input_ids[:, prompt_len:]  # [B, R]
    B, R, V = logits.shape
    flat, flat_t = logits.reshape(B * R, V), targets.reshape(B * R)
    lps, ents = [], []
    for s in range(0, B * R, chunk_rows):
        z = flat[s:s + chunk_rows].float()
        if temperature != 1.0:
            z = z / temperature
        lps.append(z.gather(-1, flat_t[s:s + chunk_rows, None]).squeeze(-1) - torch.logsumexp(z, dim=-1))
        if with_entropy:
            with torch.no_grad():
                ents.append(theory.entropy(z.detach()))
    log_prob = torch.cat(lps).reshape(B, R)
    if not with_entropy:
        return log_prob
    return log_prob, torch.cat(ents).reshape(B, R)


def score_rows(model, ro: "Rollout", rows: torch.Tensor | None = None, *, micro_batch_size: int,
               autocast=None, dist: DistInfo | None = None, device=None, with_entropy: bool = False,
               temperature: float = 1.0):
    """:func:`score` (no grad, float32) of rows ``rows`` of rollout ``ro`` in micro-batches of
    ``micro_batch_size`` rows, each data-parallel rank scoring its contiguous block of ``rows`` and the
    blocks all-gathered (on ``device``) so that every rank holds the result for all of ``rows``.

    Args:
      model: the policy to score with; ro: the rollout; rows: ``[n]`` row indices (default: all rows).
      autocast: context manager entered around each forward pass (the trainer's; default none).
      dist: this process's :class:`~llm_rl.distributed.DistInfo` (default: a single process).
      device: where the gathered result goes when distributed.
      temperature: score softmax(z / T), the rollout's sampling policy (:func:`score`).
    Returns:
      ``log_prob [n, R]``, and with ``with_entropy`` the pair ``(log_prob, entropy)``.
    """
    rows = torch.arange(ro.input_ids.shape[0]) if rows is None else rows
    if dist is None or not dist.enabled:
        return _score_block(model, ro, rows, micro_batch_size, autocast, with_entropy, temperature)
    rows = rows.cpu()
    a, b = dist.block(len(rows))
    res = (_score_block(model, ro, rows[a:b], micro_batch_size, autocast, with_entropy, temperature)
           if b > a else None)
    if res is not None:
        res = tuple(t.cpu() for t in res) if with_entropy else res.cpu()
    parts = [p for p in gather_objects(res, dist) if p is not None]
    if with_entropy:
        return tuple(torch.cat([p[i] for p in parts]).to(device) for i in range(2))
    return torch.cat(parts).to(device)


def _score_block(model, ro: "Rollout", rows: torch.Tensor, micro_batch_size: int, autocast,
                 with_entropy: bool, temperature: float = 1.0):
    """:func:`score_rows` on one process."""
    lps, ents = [], []
    with torch.no_grad(), autocast or nullcontext():
        for s in range(0, len(rows), micro_batch_size):
            r = rows[s:s + micro_batch_size].to(ro.input_ids.device)
            res = score(model, ro.input_ids[r], ro.attention_mask[r], ro.prompt_len,
                        with_entropy=with_entropy, temperature=temperature)
            lps.append((res[0] if with_entropy else res).float())
            if with_entropy:
                ents.append(res[1].float())
    return (torch.cat(lps), torch.cat(ents)) if with_entropy else torch.cat(lps)


def response_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean per response ``[B]``, 0 for an empty response."""
    m = mask.to(x.dtype)
    return (x * m).sum(-1) / m.sum(-1).clamp_min(1)


def sequence_entropy(entropy: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The paper's training entropy H: masked mean of per-token entropy within each response, then mean
    over responses (Cui et al. 2025 §2: H = −(1/|B|) Σ_x (1/|y|) Σ_t E_{π}[log π(·|x, y<t)]). Scalar."""
    return response_mean(entropy, mask).mean()


def concat_rollouts(parts: list[tuple["Rollout", list[int]]], pad_id: int) -> "Rollout":
    """Rows ``rows`` of each rollout, re-padded into one batch (prompts left, responses right).

    Args:
      parts: ``[(rollout, row_indices), ...]`` (rollouts may differ in P and R).
      pad_id: the pad token id.
    """
    prompts, responses, texts = [], [], []
    for ro, rows in parts:
        for i in rows:
            pm = ro.attention_mask[i, :ro.prompt_len].bool()
            prompts.append(ro.input_ids[i, :ro.prompt_len][pm])
            responses.append(ro.response_ids[i][ro.response_mask[i]])
            texts.append(ro.texts[i])
    if not prompts:
        raise ValueError("concat_rollouts needs at least one row")
    P = max(len(p) for p in prompts)
    R = max(max(len(r) for r in responses), 1)
    B = len(prompts)
    device = prompts[0].device
    ids = torch.full((B, P + R), pad_id, dtype=torch.long, device=device)
    attn = torch.zeros((B, P + R), dtype=torch.long, device=device)
    rmask = torch.zeros((B, R), dtype=torch.bool, device=device)
    for b, (p, r) in enumerate(zip(prompts, responses)):
        ids[b, P - len(p):P] = p
        attn[b, P - len(p):] = 1
        ids[b, P:P + len(r)] = r
        rmask[b, :len(r)] = True
    return Rollout(ids, attn, rmask, P, texts)
